"""Reconstruct through the two workers, as the add-on does: the built-in CPU runtime's (ONNX Runtime) against
the PyTorch worker's, each a real process driven by the add-on's client, on the same inputs: a scan of a torus
for each shipped point-cloud model, a picture for the image models, and for the views model also front, side
and top pictures of a box (one object).

    python bench/runtime_worker.py [--resolution 128] [--repeat 3] [--threads N] [--models views-image ...]

Per shipped model and worker: seconds per reconstruct request, round trip (the fastest of --repeat, after one
warm-up that loads the model), the worker's own seconds per stage, faces; then the runtime's time as a ratio of
PyTorch's (the baseline) and the IoU of the two meshes. --threads N sets OMP_NUM_THREADS for both workers
(the runtime's ONNX Runtime picks its own count).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))  # this checkout's backend and add-on, whatever is installed
from extract import torus_scan  # noqa: E402
from hardware import describe  # noqa: E402

from backend.data.ortho_views import render_view  # noqa: E402
from backend.inputs.views import View  # noqa: E402
from backend.metrics import solid_iou  # noqa: E402
from backend.protocol import ReconstructRequest  # noqa: E402
from backend.surface.options import ExtractOptions  # noqa: E402
from occnet_blender.worker.client import BackendClient  # noqa: E402

MODELS = ("attention-pointcloud", "triplane-pointcloud", "onet-pointcloud", "onet-image", "views-image")


def inputs() -> dict[str, dict[str, np.ndarray]]:
    """The request's arrays per input: a scan in world units, a picture with a transparent background (seen from
    above, as an unturned image empty shows it), three 128 px pictures of a box."""
    yy, xx = np.mgrid[:96, :128]
    disc = ((yy - 48) ** 2 + (xx - 60) ** 2 < 900).astype(np.uint8)
    pixels = np.dstack([np.full((96, 128, 3), 180, np.uint8), 255 * disc])
    top = View.named("top", aspect=128 / 96)
    box = trimesh.creation.box((0.6, 0.3, 0.9))
    points, faces = trimesh.sample.sample_surface(box, 200_000, seed=0)
    pictures, views = [], []
    for name in ("front", "side", "top"):
        view = View.named(name)
        rgba, _ = render_view(points, box.face_normals[faces], view, 128)
        pictures.append((rgba * 255).round().astype(np.uint8))
        views.append([view.centre, view.right, view.up])
    return {
        "pointcloud": {"points": torus_scan(3000).astype(np.float32)},
        "image": {"pixels": pixels, "views": np.array([[top.centre, top.right, top.up]])},
        "3 views": {
            "pixels": pictures[0],
            "views": np.array(views),
            "more_pixels": np.concatenate([p.ravel() for p in pictures[1:]]),
            "more_shapes": np.array([p.shape for p in pictures[1:]]),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for both workers; 0 leaves it")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, help="the shipped models to time")
    args = parser.parse_args()
    env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}
    arrays = inputs()
    print(describe(torch.device("cpu")), f"(this process; OMP_NUM_THREADS {env.get('OMP_NUM_THREADS', 'unset')})")
    cases = [(m, m, "image" if m.endswith("-image") else "pointcloud") for m in args.models]
    if "views-image" in args.models:
        cases.append(("views-image, 3 views", "views-image", "3 views"))
    for label, model, kind in cases:
        request = ReconstructRequest(
            model=model, **arrays[kind], options=ExtractOptions(resolution=args.resolution, normals=False)
        )
        meshes, seconds = {}, {}
        for engine in ("runtime", "torch"):
            client = BackendClient(sys.executable, ROOT, device="cpu", extra_env=env, engine=engine)
            client.start()
            try:
                client.run(request, timeout=600)  # loads the model
                best, reply = float("inf"), None
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    reply = client.run(request, timeout=600)
                    best = min(best, time.perf_counter() - start)
            finally:
                client.close()
            stages = ", ".join(f"{k} {v:.2f}" for k, v in reply.stats["seconds"].items())
            print(f"{label} at {args.resolution}, {engine:7s}: {best:.2f} s ({stages}), {len(reply.faces)} faces")
            meshes[engine], seconds[engine] = reply, best
        a, b = meshes.values()
        same = solid_iou((a.vertices, a.faces), (b.vertices, b.faces), 200_000)
        ratio = seconds["runtime"] / seconds["torch"]
        print(f"{label} at {args.resolution}: runtime / torch time {ratio:.2f}, IoU runtime vs torch {same:.4f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
