"""Extraction on the built-in engine (finite-difference normals) against the PyTorch backend's (autograd
normals), on the same field, MISE grid and marching cubes; then that numpy marching cubes against scikit-image's.

    python bench/runtime_extract.py [--resolution 128] [--repeat 3]

Fields: an analytic torus (evaluation costs nothing: the extraction's own cost), and each shipped point-cloud
model on a scan of a torus (evaluation costs what it costs in use; both engines call the network through torch
here, so the difference is the extraction's). Per engine: seconds per stage (the fastest of --repeat runs),
points evaluated, faces, whether the mesh is closed; then the IoU between the two meshes and how far the
normals (finite differences against autograd) agree; last, marching cubes alone on the same grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's backend, whatever is installed
from extract import torus_scan  # noqa: E402
from hardware import describe  # noqa: E402

from backend.api import load_model  # noqa: E402
from backend.engines.torch_stages import TorchEvaluator, TorchStages  # noqa: E402
from backend.metrics import iou, mesh_contains  # noqa: E402
from backend.surface.field import Evaluator  # noqa: E402
from backend.surface.marching import marching_cubes  # noqa: E402
from backend.surface.mise import dense_grid  # noqa: E402
from backend.surface.options import ExtractOptions  # noqa: E402
from backend.surface.pipeline import Stages, extract_mesh  # noqa: E402

STAGES = ("evaluate", "mesh", "normals")


def analytic_torus(points):
    """Logits of a torus (radii 0.3, 0.12), from a numpy or a torch array."""
    lib = torch if isinstance(points, torch.Tensor) else np
    ring = lib.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2) - 0.3
    return -100.0 * (lib.sqrt(ring**2 + points[:, 2] ** 2) - 0.12)


def as_numpy(field):
    @torch.no_grad()
    def logits(points: np.ndarray) -> np.ndarray:
        return field(torch.from_numpy(points)).numpy()

    return logits


def best_of(repeat: int, run):
    results = [run() for _ in range(repeat)]
    return min(results, key=lambda r: r[2]), results[0]


def timed_run(evaluate, stages, options):
    start = time.perf_counter()
    mesh, stats = extract_mesh(evaluate, options, 0.5, stages=stages)
    return mesh, stats, time.perf_counter() - start


def compare(name: str, torch_field, numpy_field, resolution: int, repeat: int) -> None:
    options = ExtractOptions(resolution=resolution)
    rows = {}
    for engine, run in (
        (
            "pytorch",
            lambda: timed_run(TorchEvaluator(torch_field, torch.device("cpu"), 32_768), TorchStages(), options),
        ),
        ("built-in numpy", lambda: timed_run(Evaluator(numpy_field), Stages(), options)),
    ):
        run()  # warm-up
        (mesh, stats, total), _ = best_of(repeat, run)
        rows[engine] = mesh
        closed = mesh.to_trimesh().is_watertight
        print(
            f"{name:<22} {engine:<24}"
            + "".join(f"{stats.seconds.get(s, 0.0):>10.3f}" for s in STAGES)
            + f"{total:>10.3f} {stats.points_evaluated:>10,} {len(mesh.faces):>8,} {str(closed):>7}"
        )
    probe = np.random.default_rng(0).uniform(-0.55, 0.55, (200_000, 3))
    reference, mesh = rows.values()
    a, b = (mesh_contains(m.vertices, m.faces, probe) for m in (reference, mesh))
    nearest = cKDTree(reference.vertices).query(mesh.vertices)[1]  # vertices coincide: the same grid edges
    cosine = (reference.normals[nearest] * mesh.normals).sum(axis=1)
    print(
        f"{name:<22} IoU between the two meshes: {iou(a, b):.5f}; normals' cosine mean {cosine.mean():.4f}, "
        f"1st percentile {np.percentile(cosine, 1):.4f}"
    )


def marching_alone(resolution: int, repeat: int) -> None:
    from skimage.measure import marching_cubes as skimage_marching_cubes

    grid = dense_grid(Evaluator(analytic_torus), resolution)
    padded = np.pad(grid, 1, constant_values=-1e3)
    for engine, run in (
        ("scikit-image lewiner", lambda: skimage_marching_cubes(padded, 0.0, gradient_direction="ascent")[:2]),
        ("built-in numpy", lambda: marching_cubes(padded, 0.0)),
    ):
        seconds = []
        for _ in range(repeat + 1):
            start = time.perf_counter()
            vertices, faces = run()
            seconds.append(time.perf_counter() - start)
        print(f"marching cubes alone   {engine:<24}{min(seconds[1:]):>10.3f} s {len(faces):>8,} faces")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {describe(torch.device('cpu'))}, numpy {np.__version__}; resolution {args.resolution}, MISE from 32")
    print(
        f"{'field':<22} {'engine':<24}"
        + "".join(f"{s + ' s':>10}" for s in (*STAGES, "total"))
        + f" {'evaluated':>10} {'faces':>8} {'closed':>7}"
    )
    compare("analytic torus", analytic_torus, analytic_torus, args.resolution, args.repeat)
    for name in ("onet-pointcloud", "triplane-pointcloud"):
        model = load_model(name, torch.device("cpu"))
        field = model.field(model.encode(torus_scan(3000)))
        compare(name, field, as_numpy(field), args.resolution, args.repeat)
    marching_alone(args.resolution, args.repeat)


if __name__ == "__main__":
    main()
