"""MISE against the dense grid: points evaluated and seconds per stage, with the paper-size decoder.

    python bench/extract.py [--model NAME_OR_PATH] [--device auto] [--resolutions 64 128 256]

Without --model the paper-size decoder (hidden 256, 5 blocks) is fitted for a few seconds to a
torus, so the field has a realistic surface and each evaluation costs what a real model costs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardware import describe  # noqa: E402

from backend.api import Latent, load_model  # noqa: E402
from backend.config import preset  # noqa: E402
from backend.device import resolve_device  # noqa: E402
from backend.extract import ExtractOptions, extract_mesh  # noqa: E402
from backend.models.decoder import OccupancyDecoder  # noqa: E402


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
    latent = Latent(torch.zeros(model.config.c_dim).numpy(), model.name)
    return model.field(latent), f"model {model.name} (zero latent)"


def run(field, device, resolution: int, use_mise: bool) -> tuple[int, dict[str, float], float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    options = ExtractOptions(resolution=resolution, threshold=0.5, use_mise=use_mise, normals=False)
    _, stats = extract_mesh(field, options, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return stats.points_evaluated, stats.seconds, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    args = parser.parse_args()
    device = resolve_device(args.device)
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


if __name__ == "__main__":
    main()
