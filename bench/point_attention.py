"""The point-attention model, stage by stage, on both engines: seconds and peak memory per reconstruction of a
torus scan of 3,000, 100,000 and 1,000,000 points at resolution 128, the built-in CPU runtime against PyTorch on
the CPU (the baseline), each size and engine in a fresh process so its peak memory is its own.

    python bench/point_attention.py [--model NAME_OR_PATH] [--sizes 3000 100000 1000000] [--resolution 128]

Prints, per size and engine: seconds per stage (encode includes reading the cloud into the model's frame,
thinning and neighbour search), the total, the process's peak resident memory, the input summary; then the
runtime's total as a ratio of PyTorch's, and the IoU of the two meshes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from extract import torus_scan  # noqa: E402
from hardware import describe  # noqa: E402

from backend.metrics import solid_iou  # noqa: E402
from backend.registry import default_model  # noqa: E402


def run_one(model: str, engine: str, size: int, resolution: int, out: Path) -> None:
    """One reconstruction in this process; its mesh to `out`, its numbers as one JSON line on stdout."""
    cloud = torus_scan(size)
    start = time.perf_counter()
    from backend import load_model

    result = load_model(model, "cpu", engine=engine).reconstruct(cloud, resolution=resolution)
    mesh, stats = result.mesh, result.stats
    total = time.perf_counter() - start
    np.savez(out, vertices=mesh.vertices, faces=mesh.faces)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"total": total, "peak_mb": peak_mb, "seconds": stats["seconds"], "input": stats.get("input")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model("pointcloud"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 100_000, 1_000_000])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--engines", nargs="+", default=["runtime", "torch"], choices=["runtime", "torch"])
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--mesh", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.model, args.one[0], int(args.one[1]), args.resolution, args.mesh)
        return
    print(describe(torch.device("cpu")), f"; model {args.model}, resolution {args.resolution}")
    for size in args.sizes:
        totals, meshes = {}, {}
        for engine in args.engines:
            mesh = Path(f"/tmp/bench_point_attention_{engine}_{size}.npz")
            command = [sys.executable, __file__, "--model", str(args.model), "--resolution", str(args.resolution)]
            command += ["--one", engine, str(size), "--mesh", str(mesh)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            stages = ", ".join(f"{k} {v:.2f}" for k, v in row["seconds"].items())
            print(
                f"{size:>9,} points, {engine:7s}: {row['total']:.2f} s ({stages}), peak {row['peak_mb']:.0f} MB; "
                f"input {row['input']}"
            )
            totals[engine] = row["total"]
            with np.load(mesh) as data:
                meshes[engine] = (data["vertices"], data["faces"])
            mesh.unlink()
        if len(totals) == 2:
            same = solid_iou(meshes["runtime"], meshes["torch"], 200_000)
            ratio = totals["runtime"] / totals["torch"]
            print(f"{size:>9,} points: runtime / torch time {ratio:.2f}, IoU runtime vs torch {same:.4f}")


if __name__ == "__main__":
    main()
