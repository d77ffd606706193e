"""Adding a thickness head to a views model (`backend.models.thickness`):
`python -m backend train-thickness --model RUN/best.safetensors --data DIR ... --out RUN2`.

The pixel-aligned network stays as trained (copied, frozen). The head learns, from pictures of the training shapes
(`backend.data.thickness_examples`), to score each thickness scale as the IoU it would have given that shape:
cross-entropy towards softmax(IoU / SHARPNESS) over the scales, so near-best scales count too. The pictures are
drawn once (the views model's directions, colours and lights) and trained on for --epochs, each flipped left to
right half the time. Writes to the run folder best.safetensors (by the validation shapes' IoU from one picture
each), last.safetensors and log.csv.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig
from .data.dataset import Shape, load_split
from .data.thickness_examples import thickness_example
from .errors import OccNetError
from .inputs.views import PreparedViews
from .metrics import iou
from .models import OccupancyNetwork, build_model
from .models.occnet import ViewLatent
from .outputs import atomic_write
from .registry import find_model
from .surface.options import ExtractOptions
from .surface.silhouettes import first_sheets

RUN_FILES = ("last.safetensors", "best.safetensors", "log.csv")
SHARPNESS = 0.02  # IoU apart at which one scale's target weight is e times another's
VAL_POINTS = 20_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the views model (a name or a .safetensors file) to add a head to")
    p.add_argument("--data", required=True, nargs="+", help="data set folders (python -m backend data ...)")
    p.add_argument("--out", required=True, help="run folder for the checkpoints and the log")
    p.add_argument("--pictures", type=int, default=8, help="pictures drawn of each training shape")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=32, help="the head's width (ModelConfig.thickness_width)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT")


def train_thickness(args: argparse.Namespace) -> int:
    out = Path(args.out)
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if existing and not args.overwrite:
        raise OccNetError(f"{out} already holds a run ({', '.join(existing)}); pass --overwrite or another --out.")
    if min(args.pictures, args.epochs, args.batch, args.width) < 1:
        raise OccNetError("--pictures, --epochs, --batch and --width must be at least 1.")
    if args.threads:
        torch.set_num_threads(args.threads)
    source = find_model(args.model)
    trained = load_checkpoint(source)
    if trained.config.architecture != "views":
        raise OccNetError(f"{source}: a {trained.config.architecture} model; a thickness head is for a views model.")
    config = replace(trained.config, thickness_width=args.width, evaluation={})
    settings = {k: getattr(args, k) for k in ("pictures", "epochs", "batch", "lr", "seed")}
    config.training = {**trained.config.training, "thickness": {"from": str(source), "data": args.data, **settings}}
    model = _with_head(trained, config)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    pictures, targets = _pictures(_shapes(args.data, "train", config), args.pictures, config, rng)
    validation = [
        _Validation.of(model, shape, example[0])
        for shape in _shapes(args.data, "val", config)
        if (example := thickness_example(shape, config.image_size, config.mask_size, rng)) is not None
    ]
    out.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.thickness.parameters(), lr=args.lr, weight_decay=1e-4)
    weights = torch.softmax(targets / SHARPNESS, dim=1)
    best, rows, began = -1.0, [], time.monotonic()
    for epoch in range(1, args.epochs + 1):
        model.thickness.train()
        order = torch.randperm(len(pictures))
        total = 0.0
        for start in tqdm(range(0, len(order), args.batch), desc=f"epoch {epoch}/{args.epochs}", leave=False):
            picked = order[start : start + args.batch]
            x = pictures[picked].float()
            flip = torch.rand(len(picked)) < 0.5
            x[flip] = x[flip].flip(-1)  # a mirrored picture: the same thickness
            loss = -(weights[picked] * torch.log_softmax(model.thickness(x), dim=1)).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(picked)
        score = _validate(model, validation)
        rows.append({"epoch": epoch, "loss": total / len(pictures), "val_iou": score})
        rows[-1]["seconds"] = round(time.monotonic() - began, 1)
        print(f"epoch {epoch}: loss {total / len(pictures):.4f}, validation IoU {score:.3f} from one picture")
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


def _shapes(roots: list[str], split: str, config: ModelConfig) -> list[Shape]:
    return [shape for root in roots for shape in load_split(root, split, config)]


def _with_head(trained: OccupancyNetwork, config: ModelConfig) -> OccupancyNetwork:
    """A network of `config` (the trained one's with a thickness head) holding the trained weights, all but the
    head's frozen."""
    model = build_model(config)
    missing, unexpected = model.load_state_dict(trained.state_dict(), strict=False)
    if unexpected or any(not name.startswith("thickness.") for name in missing):
        raise OccNetError("The views model's weights do not fit its own architecture with a thickness head.")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("thickness."))
    return model.eval()


def _pictures(
    shapes: list[Shape], count: int, config: ModelConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training pictures (P, 4, S, S; float16) and each one's IoU at every thickness scale (P, T)."""
    pictures, targets = [], []
    for shape in tqdm(shapes, desc="pictures"):
        for _ in range(count):
            if (example := thickness_example(shape, config.image_size, config.mask_size, rng)) is not None:
                pictures.append(example[0].images[0].astype(np.float16))
                targets.append(example[1])
    if not pictures:
        raise OccNetError("No training shape gave a picture: the data sets hold no shape with any extent.")
    return torch.from_numpy(np.stack(pictures)), torch.from_numpy(np.stack(targets))


@dataclass
class _Validation:
    """One validation shape's picture and what stays fixed while the head learns: the frozen network's features,
    and the shape's uniform points in the picture's frame with their labels."""

    prepared: PreparedViews
    features: torch.Tensor
    points: torch.Tensor
    labels: np.ndarray

    @classmethod
    @torch.no_grad()
    def of(cls, model: OccupancyNetwork, shape: Shape, prepared: PreparedViews) -> _Validation:
        points = np.asarray(shape.points[: shape.n_uniform][:VAL_POINTS], np.float64)
        canonical = (points - np.asarray(prepared.frame.center)) / prepared.frame.scale
        return cls(
            prepared,
            model.encoder(torch.from_numpy(prepared.images))[None],
            torch.from_numpy(canonical.astype(np.float32))[None],
            shape.labels[: shape.n_uniform][:VAL_POINTS],
        )


@torch.no_grad()
def _validate(model: OccupancyNetwork, validation: list[_Validation]) -> float:
    """Mean IoU of the lone-picture result, as the model decodes it, on each validation shape's uniform points."""
    model.eval()
    threshold = ExtractOptions().threshold_logit(model.config.threshold)
    scores = []
    for shape in validation:
        prepared = shape.prepared
        thickness = model.thickness(torch.from_numpy(prepared.images)).numpy()
        latent = ViewLatent(
            shape.features,
            torch.from_numpy(prepared.masks)[None],
            torch.from_numpy(first_sheets(prepared.masks, thickness))[None],
            torch.from_numpy(prepared.affines)[None],
        )
        scores.append(iou(model.decode(shape.points, latent)[0].numpy() > threshold, shape.labels))
    return float(np.mean(scores)) if scores else 0.0
