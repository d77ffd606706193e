"""`python -m backend`: reconstruct, interpolate, list models, show versions. Exit status 0 only on success."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import __version__, evaluate, train, train_thickness
from .api import Latent, Model, interpolate, load_model
from .data.mesh_folder import prepare_mesh_folder
from .data.procedural import DEFAULT_COUNTS, generate
from .data.rooms import DEFAULT_COUNTS as ROOM_COUNTS
from .data.rooms import PART_RESOLUTION, generate_rooms
from .data.rooms import SURFACE as ROOM_SURFACE
from .data.shapes import CATEGORIES, GENERATORS
from .device import DEVICE_CHOICES, describe_devices, resolve_device
from .errors import InputError, ModelLoadError, OccNetError, OutputError
from .formats import input_kind
from .inputs import ImageInput, Observation, load_observation
from .inputs.views import View
from .outputs import check_output, final_name, terminate_as_interrupt
from .protocol import input_summary
from .registry import default_model, find_model, is_shipped, list_models, scan_models
from .serve import model_info
from .surface.mesh import check_mesh_suffix
from .surface.options import DEFAULT_RESOLUTION, MIN_PIECE, RESOLUTIONS, ExtractOptions


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        with terminate_as_interrupt():
            return args.run(args)
    except OccNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing more was written", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a file removed under us: the file stays as it was (atomic_write)
        where = f"{final_name(str(exc.filename))}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; no file was replaced.", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Occupancy Networks for meshes.")
    sub = parser.add_subparsers(title="commands")

    rec = sub.add_parser("reconstruct", help="reconstruct a mesh from a point cloud, mesh or image")
    rec.add_argument(
        "input",
        nargs="+",
        help="point cloud (.ply .xyz .npy .npz), mesh file, image (.png .jpg), or a saved latent (.npz from "
        "--save-latent: its mesh again at new settings, without the encoder); several images with --view: "
        "views of one object",
    )
    rec.add_argument(
        "--view",
        nargs="+",
        metavar="VIEW",
        help="images: the view each was drawn or rendered from, one per image: front, side (Blender's right view), "
        "top, back, left, bottom, or AZ,EL in degrees (e.g. 45,30). Pictures of one object are centred on it and "
        "drawn at one scale (a pixel is the same size in each); the first's longer side is one unit",
    )
    rec.add_argument("--out", required=True, help="output mesh (.obj .ply .stl .glb ...)")
    rec.add_argument("--save-latent", metavar="FILE.npz", help="also save the shape's latent code")
    _model_options(rec)
    rec.set_defaults(run=_reconstruct)

    interp = sub.add_parser("interpolate", help="meshes along the blend between two shapes")
    interp.add_argument("a", help="input or saved latent (.npz from --save-latent)")
    interp.add_argument("b", help="input or saved latent")
    interp.add_argument("--steps", type=int, default=5, help="number of meshes, endpoints included (>= 2)")
    interp.add_argument("--out", required=True, help="output folder")
    interp.add_argument("--format", default="obj", help="mesh format of the outputs")
    interp.add_argument("--method", choices=("linear", "spherical"), default="linear")
    _model_options(interp)
    interp.set_defaults(run=_interpolate)

    models = sub.add_parser("models", help="list the available models and their measured quality")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    models.set_defaults(run=_models)

    training = sub.add_parser("train", help="train a model on a data set (see backend/train.py)")
    train.add_arguments(training)
    training.set_defaults(run=train.train)

    thickness = sub.add_parser(
        "train-thickness",
        help="add a head that judges one picture's depth to a views model (backend/train_thickness.py)",
    )
    train_thickness.add_arguments(thickness)
    thickness.set_defaults(run=train_thickness.train_thickness)

    scoring = sub.add_parser("evaluate", help="IoU, Chamfer-L1, normal consistency, F-score on a held-out split")
    evaluate.add_arguments(scoring)
    scoring.set_defaults(run=evaluate.evaluate)

    data = sub.add_parser("data", help="make training data")
    data_sub = data.add_subparsers(title="sources")
    procedural = data_sub.add_parser("procedural", help="generate the procedural shape families")
    procedural.add_argument("--out", required=True, help="data set folder (resumes if it exists)")
    procedural.add_argument(
        "--categories",
        nargs="*",
        help=f"default: all of {', '.join(CATEGORIES)}; 'composition' gives random compositions of primitives",
    )
    for split, count in DEFAULT_COUNTS.items():
        procedural.add_argument(f"--{split}", type=int, default=count, help=f"shapes per category in {split}")
    procedural.add_argument("--views", type=int, default=4, help="rendered images per shape")
    procedural.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    procedural.set_defaults(run=_procedural)
    rooms = data_sub.add_parser("rooms", help="generate synthetic rooms: floor, walls, furniture, open at the top")
    rooms.add_argument("--out", required=True, help="data set folder; rooms go in OUT/room/ (resumes if it exists)")
    for split, count in ROOM_COUNTS.items():
        rooms.add_argument(f"--{split}", type=int, default=count, help=f"rooms in {split} (default: %(default)s)")
    rooms.add_argument("--surface", type=int, default=ROOM_SURFACE, help="surface samples per room (%(default)s)")
    rooms.add_argument(
        "--resolution", type=int, default=PART_RESOLUTION, help="marching cubes per part, for the surface samples"
    )
    rooms.add_argument("--views", type=int, default=0, help="rendered images per room")
    rooms.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    rooms.set_defaults(run=_rooms)
    meshes = data_sub.add_parser("meshes", help="preprocess a folder of your own meshes (sub-folders = categories)")
    meshes.add_argument("source", help="folder of meshes in any format trimesh reads")
    meshes.add_argument("--out", required=True, help="data set folder; already processed meshes are kept")
    meshes.set_defaults(run=_meshes)

    export = sub.add_parser("export-onnx", help="write the ONNX graphs the built-in CPU runtime runs")
    export.add_argument("models", nargs="*", help="model names or .safetensors paths (default: every shipped model)")
    export.add_argument("--out", help="folder for the graphs (default: beside each model, where the runtime looks)")
    export.add_argument("--overwrite", action="store_true", help="replace graphs that already exist")
    export.set_defaults(run=_export_onnx)

    info = sub.add_parser("info", help="versions and compute devices")
    info.set_defaults(run=_info)
    return parser


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name or .safetensors path (default: the shipped model for the input)")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, choices=RESOLUTIONS, help="grid resolution")
    p.add_argument("--threshold", type=float, help="occupancy threshold in (0, 1) (default: the model's)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--refine-steps", type=int, default=0, help="gradient-based mesh refinement steps")
    p.add_argument("--faces", type=int, default=0, help="simplify to at most this many faces (0: keep all)")
    p.add_argument("--no-normals", action="store_true", help="skip normals from the field's gradient")
    p.add_argument(
        "--no-snap", action="store_true", help="leave vertices where the field puts them, off a dense scan's points"
    )
    p.add_argument(
        "--min-piece",
        type=float,
        default=MIN_PIECE,
        metavar="SHARE",
        help=f"drop loose pieces with less surface than this share of the largest (default {MIN_PIECE}; 0 keeps all), "
        "unless 100 of a scan's points lie nearer them than any other surface",
    )


def _extract_options(args: argparse.Namespace) -> ExtractOptions:
    """The extraction settings, checked now so a bad one fails before the model loads (no threshold: the model's)."""
    return ExtractOptions(
        resolution=args.resolution,
        threshold=args.threshold,
        refine_steps=args.refine_steps,
        faces=args.faces,
        normals=not args.no_normals,
        min_piece=args.min_piece,
        snap=not args.no_snap,
    )


def _load_for(args: argparse.Namespace, *inputs: str, made_by: str | None = None) -> Model:
    """--model, else the model that made the saved latents, else the shipped default for the inputs' kind."""
    if args.model is None and made_by is not None:
        try:
            find_model(made_by)
        except ModelLoadError as exc:
            raise ModelLoadError(
                f"The saved latent was made by model '{made_by}', which is not installed here. Pass its "
                "checkpoint with --model FILE.safetensors, or add its folder to OCCNET_MODELS_PATH."
            ) from exc
        return load_model(made_by, args.device)
    name = args.model
    if name is None:
        kinds = {input_kind(path) for path in inputs}
        name = default_model(kinds.pop() if len(kinds) == 1 else "pointcloud")
    return load_model(name, args.device)


class _Bar:
    """tqdm on stderr, one bar per stage."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.stage = ""

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=f"{stage:>8}", unit="%", file=sys.stderr, leave=False)
        self.bar.n = round(100 * fraction)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _reconstruct(args: argparse.Namespace) -> int:
    out = _check_mesh_output(args.out, args.input)
    if args.save_latent:
        _check_latent_output(args.save_latent, [*args.input, out])
    options = _extract_options(args)
    first = args.input[0]
    saved = Latent.load(first) if len(args.input) == 1 and Latent.is_latent_file(first) else None
    observation = None if saved else _observation(args.input, args.view)
    model = _load_for(args, *args.input, made_by=saved.model if saved else None)
    bar = _Bar()
    try:
        if saved:  # a shape already reconstructed: its mesh again at these settings, no encoder run
            result = model.extract(saved, options, progress=bar)
        else:
            result = model.reconstruct(observation, options, progress=bar)
    finally:
        bar.close()
    result.mesh.save(out)
    if args.save_latent:
        result.latent.save(args.save_latent)
    stats = result.stats
    seconds = ", ".join(f"{k} {v:.2f}s" for k, v in stats["seconds"].items())
    print(
        f"{out}: {len(result.mesh.vertices)} vertices, {len(result.mesh.faces)} faces "
        f"({model.name} on {model.engine.device}, {stats['points_evaluated']} points evaluated; {seconds})"
        + (f"; {stats['pieces_dropped']} loose piece(s) dropped (--min-piece)" if stats.get("pieces_dropped") else "")
    )
    if read := input_summary(stats):
        print(f"{', '.join(args.input)}: {read}")
    return 0


def _observation(paths: list[str], views: list[str] | None) -> Observation:
    """One input file, or images with their views (`--view`): one object seen from each."""
    if views is None:
        if len(paths) > 1:
            raise InputError(
                f"{len(paths)} inputs given: reconstruct takes one, or several images of one object with their views "
                "(--view front side top)."
            )
        return load_observation(paths[0])
    if len(views) != len(paths):
        raise InputError(f"Give one --view per image: {len(paths)} image(s), {len(views)} view(s).")
    pictures = []
    for path in paths:
        observation = load_observation(path)
        if not isinstance(observation, ImageInput):
            raise InputError(f"{path}: --view is for images (reference pictures); this is a {observation.kind}.")
        pictures.append(observation.pixels)
    unit = 1.0 / max(pictures[0].shape[:2])  # the first picture's longer side is one unit, every pixel that size
    placed = []
    for pixels, name in zip(pictures, views, strict=True):
        h, w = pixels.shape[:2]
        view = View.named(name)
        axes = view.axes
        placed.append((pixels, View(view.centre, tuple(axes[0] * w * unit), tuple(axes[1] * h * unit))))
    (pixels, view), *more = placed
    return ImageInput(pixels, view, tuple(more))


def _interpolate(args: argparse.Namespace) -> int:
    if args.steps < 2:
        raise OccNetError("--steps must be at least 2 (the two endpoints).")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: is a file; interpolate writes a folder of meshes. Name a folder.")
    paths = [out_dir / f"blend_{i:03d}.{args.format.lstrip('.')}" for i in range(args.steps)]
    for path in paths:
        _check_mesh_output(path, [args.a, args.b])
    options = _extract_options(args)
    saved = {path: Latent.load(path) for path in (args.a, args.b) if Latent.is_latent_file(path)}
    made_by = {latent.model for latent in saved.values()}
    if len(made_by) > 1:
        raise InputError(
            f"{args.a} was made by model '{saved[args.a].model}' and {args.b} by model '{saved[args.b].model}'; "
            "a blend needs two shapes of one model. Reconstruct both with one --model."
        )
    model = _load_for(args, args.a, args.b, made_by=next(iter(made_by), None))
    a, b = (saved[p] if p in saved else model.encode(p) for p in (args.a, args.b))
    bar = _Bar()
    try:
        for path, t in zip(paths, np.linspace(0.0, 1.0, args.steps), strict=True):
            result = model.extract(interpolate(a, b, float(t), args.method), options, progress=bar)
            result.mesh.save(path)
            print(f"{path}: t={t:.3f}, {len(result.mesh.faces)} faces")
    finally:
        bar.close()
    return 0


def _check_mesh_output(path: str | Path, inputs: list[str | Path]) -> Path:
    """Before any work: a mesh format trimesh writes, a writable place, and none of the inputs."""
    check_output(path, inputs)
    check_mesh_suffix(path)
    return Path(path)


def _check_latent_output(path: str, inputs: list[str | Path]) -> None:
    check_output(path, inputs, "--save-latent")
    if Path(path).suffix.lower() != ".npz":
        raise OutputError(f"--save-latent {path}: latents are saved as .npz; name the file {Path(path).stem}.npz.")


def _models(args: argparse.Namespace) -> int:
    entries, broken = scan_models()
    if args.json:
        print(
            json.dumps(
                [{**dataclasses.asdict(model_info(e)), "path": str(e.path)} for e in entries]
                + [{"name": path.stem, "path": str(path), "broken": why} for path, why in broken],
                indent=2,
            )
        )
        return 0
    if not entries:
        print("No models found. Put .safetensors checkpoints in backend/weights/ or a folder on OCCNET_MODELS_PATH.")
    else:
        print(f"{'name':<24}{'input':<12}{'size':>9}{'threshold':>11}  evaluation")
    for e in entries:
        evaluation = "; ".join(_score_line(k, v) for k, v in e.config.evaluation.items())
        print(
            f"{e.name:<24}{e.config.input_kind:<12}{e.size_mb:>7.1f}MB{e.config.threshold:>11.2f}  "
            f"{evaluation or 'not evaluated'}"
        )
    for path, why in broken:
        print(f"{path.stem:<24}broken: {why}")
    return 0


BESIDE = ("poisson", "hull", "ellipsoid")  # baselines whose scores a labelled evaluation keeps beside the model's


def _score_line(key: str, value) -> str:
    """'val_iou 0.81', or for a labelled evaluation 'real_3000: IoU 0.801 (Poisson 0.790), Chamfer-L1 ..., F@1% ...'."""
    if not isinstance(value, dict):
        return f"{key} {value}"
    parts = []
    for metric, name in (("iou", "IoU"), ("chamfer_l1", "Chamfer-L1"), ("fscore", "F@1%")):
        if metric in value:
            beside = [f"{b.capitalize()} {value[f'{b}_{metric}']}" for b in BESIDE if f"{b}_{metric}" in value]
            parts.append(f"{name} {value[metric]}" + (f" ({', '.join(beside)})" if beside else ""))
    return f"{key}: {', '.join(parts)} on {value.get('shapes', '?')} shapes"


def _check_data_arguments(args: argparse.Namespace, splits: dict) -> dict[str, int]:
    """Before any work: the data set folder is a folder, the counts and workers make sense. The counts by split."""
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise OutputError(f"--out {args.out}: is a file; give a folder for the data set (it is made if missing).")
    counts = {split: getattr(args, split) for split in splits}
    if counts and (any(count < 0 for count in counts.values()) or not any(counts.values())):
        given = ", ".join(f"--{k} {v}" for k, v in counts.items())
        raise InputError(f"Shape counts must be 0 or more, and not all 0 ({given}).")
    if getattr(args, "workers", 1) < 1:
        raise InputError(f"--workers must be at least 1, not {args.workers}.")
    if getattr(args, "views", 0) < 0:
        raise InputError(f"--views must be 0 or more, not {args.views}.")
    return counts


def _procedural(args: argparse.Namespace) -> int:
    counts = _check_data_arguments(args, DEFAULT_COUNTS)
    if unknown := sorted(set(args.categories or ()) - set(GENERATORS)):
        raise InputError(f"Unknown categories {', '.join(unknown)}; choose from {', '.join(GENERATORS)}.")
    root = generate(args.out, args.categories, counts, views=args.views, workers=args.workers)
    print(f"{root}: procedural data set ready ({', '.join(f'{k} {v}' for k, v in counts.items())} per category)")
    return 0


def _rooms(args: argparse.Namespace) -> int:
    counts = _check_data_arguments(args, ROOM_COUNTS)
    root = generate_rooms(
        args.out, counts, args.workers, views=args.views, surface=args.surface, resolution=args.resolution
    )
    print(f"{root}: synthetic rooms ready in {root / 'room'} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


def _meshes(args: argparse.Namespace) -> int:
    _check_data_arguments(args, {})
    root = prepare_mesh_folder(args.source, args.out)
    print(f"{root}: mesh data set ready; train with python -m backend train --data {root} --out runs/mine")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    try:
        from .export_onnx import export_model
    except ImportError as exc:
        raise OccNetError(
            f"export-onnx needs the onnx and onnxscript packages ({exc}); install them with "
            "'pip install -r requirements-dev.txt'."
        ) from exc
    paths = [find_model(name) for name in args.models] or [m.path for m in list_models() if is_shipped(m.path)]
    for path in paths:
        start = time.perf_counter()
        written = export_model(path, args.out, overwrite=args.overwrite)
        sizes = ", ".join(f"{p} ({p.stat().st_size / 1e3:.0f} kB)" for p in written)
        print(f"{path.stem}: {sizes} in {time.perf_counter() - start:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(f"occnet backend {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"torch {torch.__version__}, default device {resolve_device('auto')}")
    print(f"devices: {', '.join(describe_devices())}")
    print(f"platform: {platform.platform()}, {platform.processor() or platform.machine()}")
    return 0
