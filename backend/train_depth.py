"""Training a views model's depth head (`backend.models.view_depth`):
`python -m backend train-depth --model RUN/best.safetensors --data DIR ... --out RUN2`.

The pixel-aligned network stays as trained (copied, frozen); the head learns the front and back depth at every
pixel of the training shapes' pictures (`backend.data.view_depths`): L1 within the silhouette, where a surface
sample fell. The pictures are drawn once (the views model's directions, colours and lights), then trained on for
--epochs, each picture flipped left to right half the time. Writes to the run folder best.safetensors (by the
validation shapes' IoU from one picture each), last.safetensors and log.csv.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .data.dataset import Shape, load_split
from .data.view_depths import depth_example
from .errors import OccNetError
from .metrics import iou
from .models import OccupancyNetwork, build_model
from .models.occnet import ViewLatent
from .outputs import atomic_write
from .registry import find_model
from .surface.silhouettes import first_sheets

RUN_FILES = ("last.safetensors", "best.safetensors", "log.csv")
VAL_POINTS = 20_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the views model (a name or a .safetensors file) to add a head to")
    p.add_argument("--data", required=True, nargs="+", help="data set folders (python -m backend data ...)")
    p.add_argument("--out", required=True, help="run folder for the checkpoints and the log")
    p.add_argument("--pictures", type=int, default=8, help="pictures drawn of each training shape")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--filters", type=int, default=16, help="the head's first-level filters (ModelConfig.depth_filters)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT")


def train_depth(args: argparse.Namespace) -> int:
    out = Path(args.out)
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if existing and not args.overwrite:
        raise OccNetError(f"{out} already holds a run ({', '.join(existing)}); pass --overwrite or another --out.")
    if args.pictures < 1 or args.epochs < 1 or args.batch < 1 or args.filters < 1:
        raise OccNetError("--pictures, --epochs, --batch and --filters must be at least 1.")
    if args.threads:
        torch.set_num_threads(args.threads)
    source = find_model(args.model)
    trained = load_checkpoint(source)
    if trained.config.architecture != "views":
        raise OccNetError(f"{source}: a {trained.config.architecture} model; a depth head is for a views model.")
    config = replace(trained.config, depth_filters=args.filters, evaluation={})
    config.training = {
        **trained.config.training,
        "depth": {
            "from": str(source),
            "data": [str(d) for d in args.data],
            "pictures": args.pictures,
            "epochs": args.epochs,
            "batch": args.batch,
            "lr": args.lr,
            "seed": args.seed,
        },
    }
    model = _with_head(trained, config)
    rng = np.random.default_rng(args.seed)
    train_shapes = [s for root in args.data for s in load_split(root, "train", config)]
    val_shapes = [s for root in args.data for s in load_split(root, "val", config)]
    images, depths = _pictures(train_shapes, args.pictures, config, rng)
    validation = [(shape, example) for shape in val_shapes if (example := _example(shape, config, rng)) is not None]
    out.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.depth.parameters(), lr=args.lr)
    best = -1.0
    began = time.monotonic()
    rows = []
    for epoch in range(1, args.epochs + 1):
        model.depth.train()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed + epoch))
        total = 0.0
        for start in tqdm(range(0, len(order), args.batch), desc=f"epoch {epoch}/{args.epochs}", leave=False):
            picked = order[start : start + args.batch]
            x, y = images[picked].float(), depths[picked].float()
            flip = torch.rand(len(picked)) < 0.5
            x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
            known = torch.isfinite(y) & (x[:, 3:4] >= 0.5)
            loss = (model.depth(x) - torch.nan_to_num(y)).abs()[known].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(picked)
        score = _validate(model, validation)
        rows.append(
            {
                "epoch": epoch,
                "loss": total / len(images),
                "val_iou": score,
                "seconds": round(time.monotonic() - began, 1),
            }
        )
        print(f"epoch {epoch}: depth L1 {total / len(images):.4f}, validation IoU {score:.3f}")
        save_checkpoint(model, out / "last.safetensors")
        if score > best:
            best = score
            save_checkpoint(model, out / "best.safetensors")
        with atomic_write(out / "log.csv") as partial, partial.open("w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"{out / 'best.safetensors'}: validation IoU {best:.3f} from one picture")
    return 0


def _with_head(trained: OccupancyNetwork, config) -> OccupancyNetwork:
    """A network of `config` (the trained one's with a depth head) holding the trained weights, all but the head
    frozen."""
    model = build_model(config)
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or any(not name.startswith("depth.") for name in missing):
        raise OccNetError("The views model's weights do not fit its own architecture with a depth head.")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("depth."))
    return model.eval()


def _example(shape: Shape, config, rng: np.random.Generator):
    return depth_example(shape.surface, shape.normals, config.image_size, config.mask_size, rng)


def _pictures(shapes: list[Shape], count: int, config, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pictures (P, 4, S, S) and their front and back depths (P, 2, S, S), float16."""
    images, depths = [], []
    for shape in tqdm(shapes, desc="pictures"):
        for _ in range(count):
            if (example := _example(shape, config, rng)) is not None:
                images.append(example[0].images[0])
                depths.append(example[1])
    if not images:
        raise OccNetError("No training shape gave a picture: the data sets hold no shape with any extent.")
    return (torch.from_numpy(np.stack(a).astype(np.float16)) for a in (images, depths))


@torch.no_grad()
def _validate(model: OccupancyNetwork, validation: list) -> float:
    """Mean IoU of the lone-picture result on each validation shape's uniform points."""
    model.eval()
    threshold = math.log(model.config.threshold / (1 - model.config.threshold))
    scores = []
    for shape, (prepared, _) in validation:
        images = torch.from_numpy(prepared.images)
        depths = model.depth(images).numpy()
        latent = ViewLatent(
            model.encoder(images)[None],
            torch.from_numpy(prepared.masks)[None],
            torch.from_numpy(first_sheets(prepared.masks, depths))[None],
            torch.from_numpy(prepared.affines)[None],
        )
        points = np.asarray(shape.points[: shape.n_uniform], np.float64)[:VAL_POINTS]
        canonical = (points - np.asarray(prepared.frame.center)) / prepared.frame.scale
        logits = model.decode(torch.from_numpy(canonical.astype(np.float32))[None], latent)[0].numpy()
        scores.append(iou(logits > threshold, shape.labels[: shape.n_uniform][:VAL_POINTS]))
    return float(np.mean(scores)) if scores else 0.0
