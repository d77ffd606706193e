"""Training an Occupancy Network on a stored data set: `python -m backend train --data DIR --out RUN`.

BCE on occupancy logits with Adam, as in the paper. Runs on the CPU, on one GPU, or unchanged under
`torchrun --nproc_per_node=K` (DistributedDataParallel). Writes to the run folder:
    last.safetensors, best.safetensors (by validation IoU), state.pt (optimizer, step: for --resume),
    log.csv (step, loss, learning rate, validation IoU, seconds)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pickle
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from tqdm import tqdm

from .checkpoint import load_checkpoint, read_config, save_checkpoint
from .config import PRESETS, ModelConfig, preset
from .data.dataset import Sampling, Shape, load_split, make_batch
from .device import resolve_device
from .errors import OccNetError
from .metrics import iou
from .models import OccupancyNetwork, build_model
from .outputs import atomic_write

THRESHOLDS = (0.2, 0.3, 0.4, 0.5)
VAL_POINTS = 20_000
MAX_NOISE = 0.1  # input noise (std, a share of the shape's size) beyond which no surface is left to learn
VAL_CLOUD = 3_000  # input points of validation clouds for models that take any number
RUN_FILES = ("last.safetensors", "best.safetensors", "state.pt", "log.csv", "config.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, nargs="+", help="data set folders (python -m backend data ...)")
    p.add_argument("--out", required=True, help="run folder for checkpoints and the log")
    p.add_argument("--input", choices=("pointcloud", "image", "voxels"), default="pointcloud")
    p.add_argument("--preset", choices=PRESETS, default="small", help="architecture and size (backend/config.py)")
    p.add_argument("--categories", nargs="*", help="train on these categories only")
    p.add_argument(
        "--balance-data", action="store_true", help="draw from each --data folder equally often, whatever its size"
    )
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=32, help="shapes per step (split across processes under torchrun)")
    p.add_argument("--queries", type=int, default=2048, help="query points per shape")
    p.add_argument("--uniform-fraction", type=float, default=0.5, help="share of query points uniform in the box")
    p.add_argument("--cloud-points", type=int, nargs=2, default=(300, 3000), metavar=("MIN", "MAX"))
    p.add_argument(
        "--noise", type=float, nargs=2, default=(0.005, 0.005), metavar=("MIN", "MAX"), help="std of the input noise"
    )
    p.add_argument("--partial", type=float, default=0.0, help="share of clouds seen from one to three sides only")
    p.add_argument("--outliers", type=float, default=0.0, help="share of clouds with one to five stray points")
    p.add_argument("--rotate", action="store_true", help="turn every shape at random and stretch it along its axes")
    p.add_argument("--normals", type=float, default=0.5, help="point attention: share of clouds given with normals")
    p.add_argument(
        "--init",
        help="start from this checkpoint's weights wherever names and shapes match (e.g. point attention from a "
        "trained triplane model); the rest start fresh",
    )
    p.add_argument(
        "--fresh-lr-scale",
        type=float,
        default=10.0,
        help="with --init: the parameters the checkpoint does not provide (a new layer) learn at this multiple of "
        "--lr, so they catch up with the trained ones within a short fine-tune",
    )
    p.add_argument("--stretch", type=float, default=0.25, help="with --rotate: per-axis scale in [1-S, 1+S]")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--max-minutes", type=float, help="stop (with checkpoints) after this much training time")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/state.pt")
    existing.add_argument("--overwrite", action="store_true", help="delete the run already in OUT and start afresh")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)


def train(args: argparse.Namespace) -> int:
    _check_arguments(args)
    try:
        config = preset(args.preset, args.input)
    except ValueError as exc:
        raise OccNetError(f"{exc}.") from exc
    out = Path(args.out)
    state_path = out / "state.pt"
    _check_run_folder(out, args, config)  # on every rank: one rank refusing alone would leave the others waiting
    rank, world = _init_distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if world > 1 and torch.cuda.is_available() else args.device
    )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
    if config.architecture == "global":
        config.n_points = args.cloud_points[0]
    config.training = {
        "data": [str(d) for d in args.data],
        "preset": args.preset,
        "steps": args.steps,
        "batch": args.batch,
        "queries": args.queries,
        "uniform_fraction": args.uniform_fraction,
        "cloud_points": list(args.cloud_points),
        "noise": list(args.noise),
        "partial": args.partial,
        "outliers": args.outliers,
        "rotate": args.rotate,
        "stretch": args.stretch if args.rotate else 0.0,
        "normals": args.normals if config.architecture == "attention" else 0.0,
        "init": args.init,
        "fresh_lr_scale": args.fresh_lr_scale if args.init else 1.0,
        "lr": args.lr,
        "schedule": args.schedule,
        "seed": args.seed,
        "balance_data": args.balance_data,
    }
    sampling = Sampling(
        args.queries,
        args.uniform_fraction,
        tuple(args.cloud_points),
        tuple(args.noise),
        args.partial,
        args.outliers,
        args.rotate,
        args.stretch,
        args.normals if config.architecture == "attention" else 0.0,
    )
    train_sets = [load_split(root, "train", config, args.categories) for root in args.data]
    train_set = [s for shapes in train_sets for s in shapes]
    val_set = [s for root in args.data for s in load_split(root, "val", config, args.categories)] if rank == 0 else []
    config.training["train_shapes"] = len(train_set)
    config.training["categories"] = sorted({s.category for s in train_set})

    torch.manual_seed(args.seed)
    model = build_model(config).to(device)
    resumed = load_checkpoint(out / "last.safetensors") if args.resume else None
    if resumed is not None:  # the optimizer's groups as the run began them
        config.training["init"] = resumed.config.training.get("init")
        config.training["fresh_lr_scale"] = resumed.config.training.get("fresh_lr_scale", 1.0)
    init, fresh_scale = config.training["init"], config.training["fresh_lr_scale"]
    if init and not Path(init).is_file():
        raise OccNetError(f"{init}: the --init checkpoint is not there; the run's new layers are told apart by it.")
    optimizer = torch.optim.Adam(parameter_groups(model, init, fresh_scale), lr=args.lr)
    start, best = 0, -1.0
    if resumed is not None:
        model.load_state_dict(resumed.state_dict())
        start, best = _restore_state(state_path, optimizer)
    elif init:
        initialise_from(model, Path(init))
    trained = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    rng = np.random.default_rng([args.seed, rank, start])
    per_rank = max(1, args.batch // world)
    log = _Log(out / "log.csv", resume_after=start if args.resume else None) if rank == 0 else None
    began = time.monotonic()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train", disable=rank != 0)
    step = start
    for step in bar:
        lr = _learning_rate(args, step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        model.train()
        shapes = _draw(train_sets if args.balance_data else [train_set], per_rank, rng)
        batch = make_batch(shapes, config, sampling, rng)
        logits = trained(*network_arguments(batch, device))
        loss = F.binary_cross_entropy_with_logits(logits, batch["labels"].to(device))
        if not torch.isfinite(loss):
            raise OccNetError(
                f"step {step + 1}: the loss is {loss.item()}: the training diverged. Lower --lr (it is {args.lr}); "
                "the checkpoints already written are kept, nothing of this step is."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        stop = args.max_minutes is not None and stop_everywhere(
            time.monotonic() - began > 60 * args.max_minutes, device
        )
        if rank == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", best_iou=f"{best:.3f}")
            row = {"step": done, "loss": loss.item(), "lr": lr, "seconds": round(time.monotonic() - began, 1)}
            if done % args.val_every == 0 or done == args.steps or stop:
                scores = validate(model, val_set, config, device)
                row.update({f"val_iou@{t}": s for t, s in scores.items()})
                threshold, score = max(scores.items(), key=lambda kv: kv[1])
                if score > best:
                    best = score
                    config.threshold = threshold
                    config.evaluation = {"val_iou": round(score, 4), "val_shapes": len(val_set), "step": done}
                    save_checkpoint(model, out / "best.safetensors")
            if done % args.checkpoint_every == 0 or done == args.steps or stop:
                save_checkpoint(model, out / "last.safetensors")
                save_training_state(state_path, {"step": done, "optimizer": optimizer.state_dict(), "best_iou": best})
            log.write(row)
        if stop:
            break
    if rank == 0:
        print(f"{out}: {step + 1} steps, best validation IoU {best:.4f} (best.safetensors)")
        (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    if world > 1:
        dist.destroy_process_group()
    return 0


@torch.no_grad()
def validate(model: OccupancyNetwork, shapes: list[Shape], config: ModelConfig, device: torch.device) -> dict:
    """Mean IoU over the validation shapes at each candidate threshold, on their uniform points."""
    model.eval()
    rng = np.random.default_rng(1234)
    cloud = config.n_points if config.architecture == "global" else VAL_CLOUD
    sampling = Sampling(queries=VAL_POINTS, uniform_fraction=1.0, cloud_points=(cloud, cloud))
    totals = dict.fromkeys(THRESHOLDS, 0.0)
    for shape in shapes:
        batch = make_batch([shape], config, sampling, rng)
        prob = torch.sigmoid(model(*network_arguments(batch, device)))[0].cpu().numpy()
        truth = batch["labels"][0].numpy() > 0.5
        for t in THRESHOLDS:
            totals[t] += iou(prob >= t, truth)
    return {t: total / max(1, len(shapes)) for t, total in totals.items()}


def network_arguments(batch: dict, device: torch.device) -> tuple:
    """The network's arguments from a batch, on the device: queries, inputs (a tensor, or point attention's dict
    of tensors) and, for point attention, the queries' neighbours at each level."""
    inputs = batch["inputs"]
    inputs = {k: v.to(device) for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.to(device)
    levels = batch.get("neighbours")
    neighbours = None if levels is None else [(i.to(device), e.to(device)) for i, e in levels]
    return batch["queries"].to(device), inputs, neighbours


def parameter_groups(model: OccupancyNetwork, init: str | None, fresh_scale: float) -> list[dict]:
    """The optimizer's groups: every parameter at the learning rate's own scale, except, with --init, those the
    checkpoint does not provide (a new layer on a trained model), at `fresh_scale` times it: Adam moves a weight
    about one learning rate a step, too little for a new layer to matter in a fine-tune of a few hundred steps."""
    parameters = dict(model.named_parameters())
    provided = set(parameters)
    if init and fresh_scale != 1.0:
        with safe_open(init, "pt") as source:
            provided = provided & set(source.keys())
    groups = [{"params": [p for n, p in parameters.items() if n in provided], "scale": 1.0}]
    fresh = [p for n, p in parameters.items() if n not in provided]
    return groups + ([{"params": fresh, "scale": fresh_scale}] if fresh else [])


def initialise_from(model: OccupancyNetwork, path: Path) -> None:
    """Copy the weights of another checkpoint wherever a tensor of the same name and shape exists; say how many.
    The file's tensors are read as they are (its architecture may be an older one of the same family). A weight
    whose inputs grew (a Linear reading one more level) keeps the old weights for its old inputs and zeros for the
    new ones, so the model starts out computing what the old one did."""
    try:
        source = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise OccNetError(f"{path}: cannot read its weights ({exc}); --init takes a .safetensors checkpoint.") from exc
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    for key, value in source.items():
        target = own.get(key)
        if target is not None and value.dim() == 2 and target.shape[0] == value.shape[0] > 0:
            if target.shape[1] > value.shape[1]:
                grown = torch.zeros_like(target)
                grown[:, : value.shape[1]] = value
                matched[key] = grown
    if not matched:
        raise OccNetError(f"{path}: none of its weights fit this model; choose a checkpoint of a related preset.")
    model.load_state_dict(matched, strict=False)
    print(f"{path}: {len(matched)} of the model's {len(own)} tensors start from it")


def stop_everywhere(local: bool, device: torch.device) -> bool:
    """Rank 0's decision on every rank: ranks that stopped by their own clocks would leave the others waiting
    in the next gradient all-reduce forever. Called by all ranks together (it is a collective)."""
    if not (dist.is_available() and dist.is_initialized()):
        return local
    flag = torch.tensor([int(local)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def save_training_state(path: Path, state: dict) -> None:
    """A crash mid-write keeps the old state."""
    with atomic_write(path) as partial:
        torch.save(state, partial)


def _restore_state(path: Path, optimizer: torch.optim.Optimizer) -> tuple[int, float]:
    """The step and best validation IoU saved with the optimizer; a damaged file is named, not a traceback."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), float(state["best_iou"])
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
        raise OccNetError(
            f"{path}: the training state is damaged ({type(exc).__name__}: {exc}). "
            "Restore it, or start the run again with --overwrite."
        ) from exc


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse settings that would fail deep inside the loop (a zero interval divides by zero)."""
    at_least_one = ("steps", "batch", "queries", "val_every", "checkpoint_every")
    for name in at_least_one:
        if getattr(args, name) < 1:
            raise OccNetError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}.")
    if args.threads is not None and args.threads < 1:
        raise OccNetError(f"--threads must be at least 1, not {args.threads}.")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise OccNetError(f"--max-minutes must be more than 0, not {args.max_minutes}.")
    low, high = args.cloud_points
    if not 1 <= low <= high:
        raise OccNetError(f"--cloud-points MIN MAX needs 1 <= MIN <= MAX, not {low} {high}.")
    if not 0 < args.lr < float("inf"):
        raise OccNetError(f"--lr must be a number more than 0, not {args.lr}.")
    low, high = args.noise
    if not 0 <= low <= high <= MAX_NOISE:
        raise OccNetError(
            f"--noise MIN MAX needs 0 <= MIN <= MAX <= {MAX_NOISE} (a share of the shape's size), not {low} {high}."
        )
    if not 0 <= args.stretch < 1:
        raise OccNetError(f"--stretch must lie in [0, 1) (each axis scaled by 1 - S to 1 + S), not {args.stretch}.")
    for name in ("uniform_fraction", "partial", "outliers", "normals"):
        if not 0 <= getattr(args, name) <= 1:
            raise OccNetError(f"--{name.replace('_', '-')} is a share between 0 and 1, not {getattr(args, name)}.")


def _check_run_folder(out: Path, args: argparse.Namespace, config: ModelConfig) -> None:
    """An existing run is continued (--resume, same preset and input) or replaced (--overwrite), never silently."""
    if out.exists() and not out.is_dir():
        raise OccNetError(f"--out {out}: is a file; give a folder for the run (it is made if missing).")
    if args.resume:
        for name in ("last.safetensors", "state.pt"):
            if not (out / name).is_file():
                raise OccNetError(f"{out / name}: nothing to resume. Start without --resume.")
        previous = read_config(out / "last.safetensors")
        if previous.input_kind != config.input_kind:
            raise OccNetError(
                f"{out} holds a run on {previous.input_kind} input, not {config.input_kind}; "
                f"resume it with --input {previous.input_kind}, or choose another --out."
            )
        was = previous.training.get("preset")
        if was != args.preset:
            raise OccNetError(
                f"{out} holds a run of preset {was}, not {args.preset}; resume it with --preset {was}, "
                "or choose another --out."
            )
        return
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        raise OccNetError(
            f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out."
        )


def _draw(sets: list[list[Shape]], count: int, rng: np.random.Generator) -> list[Shape]:
    """`count` shapes: each from a set chosen uniformly, then uniformly within it."""
    chosen = rng.integers(0, len(sets), count)
    return [sets[k][rng.integers(0, len(sets[k]))] for k in chosen]


def _learning_rate(args: argparse.Namespace, step: int) -> float:
    if args.schedule == "constant":
        return args.lr
    return 0.5 * args.lr * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return (dist.get_rank() if world > 1 else 0), world


class _Log:
    FIELDS = ["step", "loss", "lr", "seconds", *(f"val_iou@{t}" for t in THRESHOLDS)]

    def __init__(self, path: Path, resume_after: int | None) -> None:
        """A new log, or on resuming the old one without the steps after the saved state (they are trained again)."""
        self.path = path
        rows = []
        if resume_after is not None and path.exists():
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_after]
        with atomic_write(path) as partial, partial.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow(row)
