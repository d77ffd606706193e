"""MISE against the dense grid, and the triplane model's stages against the global model's.

    python bench/extract.py [--model NAME_OR_PATH] [--device auto] [--resolutions 64 128 256]
    python bench/extract.py --only triplane [--points 3000 100000] [--stage-resolution 128]

mise: points evaluated and seconds per stage, dense grid against MISE. Without --model the paper-size
decoder (hidden 256, 5 blocks) is fitted for a few seconds to a torus, so the field has a realistic surface
and each evaluation costs what a real model costs.

triplane: seconds per stage of a whole reconstruction (encode, MISE evaluate, marching cubes, normals) from
torus scans of each size, for the local-feature model and, as the baseline, the global onet-pointcloud model
on the same cloud, on the CPU and on CUDA where there is one. Uses the shipped triplane model when it is there,
else a randomly initialised 'triplane-small' network (said so in the output).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardware import describe  # noqa: E402

from backend.api import Latent, Model, load_model  # noqa: E402
from backend.config import preset  # noqa: E402
from backend.device import (
    points_per_batch,  # noqa: E402
    resolve_device,  # noqa: E402
)
from backend.engines.pytorch import TorchEngine  # noqa: E402
from backend.engines.torch_stages import TorchEvaluator, TorchStages  # noqa: E402
from backend.models import build_model  # noqa: E402
from backend.models.decoder import OccupancyDecoder  # noqa: E402
from backend.registry import WEIGHTS_DIR  # noqa: E402
from backend.surface.options import ExtractOptions  # noqa: E402
from backend.surface.pipeline import extract_mesh  # noqa: E402

TRIPLANE = WEIGHTS_DIR / "triplane-pointcloud.safetensors"
BASELINE = "onet-pointcloud"
STAGES = ("encode", "evaluate", "mesh", "normals")


def torus_field(device: torch.device, steps: int = 150):
    config = preset("paper")
    decoder = OccupancyDecoder(config.c_dim, config.decoder_hidden, config.decoder_blocks).to(device)
    code = torch.randn(1, config.c_dim, device=device)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    for _ in range(steps):
        p = torch.rand(1, 4096, 3, device=device) * 1.1 - 0.55
        ring = torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - 0.3
        inside = (torch.sqrt(ring**2 + p[..., 2] ** 2) < 0.12).float()
        loss = F.binary_cross_entropy_with_logits(decoder(p, code), inside)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    decoder.eval()
    return lambda points: decoder(points[None], code)[0], "paper-size decoder fitted to a torus"


def model_field(name: str, device: torch.device):
    model = load_model(name, device)
    latent = Latent(np.zeros(model.config.latent_shape, np.float32), model.name)
    return model.field(latent), f"model {model.name} (zero latent)"


def run(field, device, resolution: int, use_mise: bool) -> tuple[int, dict[str, float], float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    options = ExtractOptions(resolution=resolution, threshold=0.5, use_mise=use_mise, normals=False)
    _, stats = extract_mesh(TorchEvaluator(field, device, points_per_batch(device)), options, 0.5, stages=TorchStages())
    if device.type == "cuda":
        torch.cuda.synchronize()
    return stats.points_evaluated, stats.seconds, time.perf_counter() - start


def torus_scan(count: int, seed: int = 0) -> np.ndarray:
    """`count` noisy points on a torus (radii 3 and 1) centred away from the origin: a scan in world units."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(0, 2 * np.pi, (2, count))
    ring = 3.0 + np.cos(v)
    points = np.stack([ring * np.cos(u), ring * np.sin(u), np.sin(v)], axis=1) + [10.0, -4.0, 2.0]
    return points + rng.normal(scale=0.01, size=points.shape)


def triplane_model(device: torch.device) -> tuple[Model, str]:
    if TRIPLANE.is_file():
        return load_model(TRIPLANE, device), f"shipped {TRIPLANE.name}"
    torch.manual_seed(0)
    network = build_model(preset("triplane-small")).to(device)
    note = (
        f"{TRIPLANE.name} is not there yet: a randomly initialised 'triplane-small' network stands in. Encoding "
        "costs the same whatever the weights; the later stages depend on the surface the weights make (its points "
        "evaluated and faces are listed), so rerun with the trained model for final numbers"
    )
    return Model(TorchEngine(network, "triplane-small (random init)", device)), note


def reconstruct_seconds(model: Model, cloud: np.ndarray, resolution: int) -> tuple[dict[str, float], int, int]:
    device = model.engine.device
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = model.reconstruct(cloud, resolution=resolution, normals=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = {stage: result.stats["seconds"].get(stage, 0.0) for stage in STAGES}
    seconds["total"] = time.perf_counter() - start
    return seconds, result.stats["points_evaluated"], len(result.mesh.faces)


def triplane_stages(devices: list[torch.device], counts: list[int], resolution: int, repeat: int) -> None:
    columns = (*STAGES, "total")
    for device in devices:
        model, what = triplane_model(device)
        baseline = load_model(BASELINE, device) if BASELINE in _shipped() else None
        print(f"\n# triplane stages at resolution {resolution}; {describe(device)}")
        print(f"# {what}")
        if baseline is not None:
            size = f"{baseline.config.c_dim}-d code from {baseline.config.n_points} resampled points"
            print(f"# baseline: {BASELINE} ({size}); ratio = triplane / baseline, per stage")
        else:
            print(f"# no {BASELINE} in {WEIGHTS_DIR}: no baseline, no ratios")
        print(
            f"{'points':>8} {'model':<30}"
            + "".join(f"{c + ' s':>11}" for c in columns)
            + f" {'evaluated':>10} {'faces':>8}"
        )
        for candidate in (model, baseline):
            if candidate is not None:
                reconstruct_seconds(candidate, torus_scan(1000), 32)  # warm-up: kernels, allocator, caches
        for count in counts:
            cloud = torus_scan(count)
            rows = []
            for candidate in (model, baseline):
                if candidate is None:
                    continue
                runs = [reconstruct_seconds(candidate, cloud, resolution) for _ in range(repeat)]
                seconds = {c: min(run[0][c] for run in runs) for c in columns}  # the least disturbed run
                rows.append(seconds)
                print(
                    f"{count:>8,} {candidate.name:<30}"
                    + "".join(f"{seconds[c]:>11.3f}" for c in columns)
                    + f" {runs[0][1]:>10,} {runs[0][2]:>8,}"
                )
            if len(rows) == 2:
                ratio = "".join(f"{rows[0][c] / max(rows[1][c], 1e-9):>11.2f}" for c in columns)
                print(f"{count:>8,} {'ratio triplane / ' + BASELINE:<30}{ratio}")


def _shipped() -> set[str]:
    return {path.stem for path in WEIGHTS_DIR.glob("*.safetensors")}


def mise_table(args: argparse.Namespace, device: torch.device) -> None:
    field, what = model_field(args.model, device) if args.model else torus_field(device)
    print(f"# {what}; {describe(device)}")
    print(
        f"{'res':>4} {'method':>6} {'points':>12} {'evaluate s':>11} {'mesh s':>8} {'total s':>8} "
        f"{'points ratio':>13} {'time ratio':>11}"
    )
    run(field, device, 32, True)  # warm-up
    for resolution in args.resolutions:
        dense_points, dense_seconds, dense_total = run(field, device, resolution, False)
        mise_points, mise_seconds, mise_total = run(field, device, resolution, True)
        for method, points, seconds, total in (
            ("dense", dense_points, dense_seconds, dense_total),
            ("mise", mise_points, mise_seconds, mise_total),
        ):
            ratio = f"{points / dense_points:13.3f} {total / dense_total:11.3f}" if method == "mise" else ""
            print(
                f"{resolution:>4} {method:>6} {points:>12,} {seconds['evaluate']:>11.2f} {seconds['mesh']:>8.2f} "
                f"{total:>8.2f} {ratio}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="mise: a model's field (zero latent) instead of the fitted torus")
    parser.add_argument("--device", default="auto", help="mise: the device; triplane: 'auto' is the CPU and CUDA")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--only", choices=("mise", "triplane"), help="run one of the two benchmarks")
    parser.add_argument("--points", type=int, nargs="+", default=[3000, 100_000], help="triplane: cloud sizes")
    parser.add_argument("--stage-resolution", type=int, default=128, help="triplane: extraction resolution")
    parser.add_argument("--repeat", type=int, default=1, help="triplane: runs per row; the fastest is shown")
    args = parser.parse_args()
    if args.only != "triplane":
        mise_table(args, resolve_device(args.device))
    if args.only != "mise":
        if args.device == "auto":
            devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        else:
            devices = [resolve_device(args.device)]
        triplane_stages(devices, args.points, args.stage_resolution, args.repeat)


if __name__ == "__main__":
    main()
