"""Headless batch reconstruction, for pipelines:

    blender --background --python occnet_blender/batch.py -- --input scans/ photo.png --out meshes/
    python occnet_blender/batch.py -- --input scans/ --out meshes/        (bpy installed as a module)
    ... -- --input front.png side.png top.png --view front side top --out meshes/   (views of one object)

Each input (point clouds, meshes, images, saved latents; folders expand) becomes a mesh file in --out (named by
output_names) and, with --save-blend, an object in a .blend that holds the results and nothing else, each with its
origin at its own centre. A saved latent (.npz written by `--save-latent`) is extracted, not reconstructed: no
encoder runs. One summary line per input, and one per file a folder held that is no input type (listed, not read);
the exit status is 1 if any failed, 2 for arguments refused before any work (among them an --out that holds inputs:
no mesh lands over an input or is read back as one by the next run, and inputs of which none is readable).
Every file is written whole or not at all (atomic_write).
Where Blender has the OccNet extension enabled, its code and preferences (Backend Python) are used;
otherwise the add-on next to this file is registered for the run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: the folder above holds occnet_blender/ and backend/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402

from occnet_blender.backend_parts import (  # noqa: E402
    AUTO_MODEL,
    DEFAULT_RESOLUTION,
    LATENT_MARKER,
    MIN_PIECE,
    RESOLUTIONS,
    SUPPORTED,
    ExtractOptions,
    InputError,
    OptionsError,
    View,
    atomic_write,
    input_kind,
    is_partial,
    same_file,
    terminate_as_interrupt,
)
from occnet_blender.written import written_problem  # noqa: E402

FORMATS = ("obj", "ply", "glb", "stl")
addon: ModuleType  # the add-on package this run uses, see load_addon()


def load_addon() -> ModuleType:
    """The enabled extension's add-on (one set of classes, its preferences), else this checkout's, registered."""
    for name in bpy.context.preferences.addons.keys():
        if name.startswith("bl_ext.") and name.endswith(".occnet"):
            return importlib.import_module(f"{name}.occnet_blender")
    import occnet_blender

    if not hasattr(bpy.types.Scene, "occnet"):
        occnet_blender.register()
    return occnet_blender


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="occnet_blender/batch.py", description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", default=[], type=Path, help="files or folders to reconstruct")
    parser.add_argument("--out", required=True, type=Path, help="folder for the meshes")
    parser.add_argument(
        "--view",
        nargs="+",
        metavar="VIEW",
        help="the --input images are views of one object, one view each (front, side, top, back, left, bottom or "
        "AZ,EL in degrees): placed as reference images are in those views, centred, at one scale (a pixel is the "
        "same size in each); one mesh, named after the first image",
    )
    parser.add_argument("--model", default=AUTO_MODEL, help="model name or .safetensors path (default: by input)")
    parser.add_argument(
        "--resolution",
        type=int,
        default=DEFAULT_RESOLUTION,
        choices=RESOLUTIONS,
        help=f"grid (default {DEFAULT_RESOLUTION})",
    )
    parser.add_argument("--threshold", type=float, help="surface threshold in (0, 1) (default: the model's)")
    parser.add_argument(
        "--min-piece",
        type=float,
        default=MIN_PIECE,
        metavar="SHARE",
        help=f"drop loose pieces with less surface than this share of the largest (default {MIN_PIECE}; 0 keeps all), "
        "unless 100 of a scan's points lie nearer them than any other surface",
    )
    parser.add_argument(
        "--no-snap", action="store_true", help="leave vertices where the field puts them, off a dense scan's points"
    )
    parser.add_argument("--format", choices=FORMATS, default="obj", help="mesh file format (default obj)")
    parser.add_argument("--save-blend", type=Path, help="also save the results as objects in this .blend")
    parser.add_argument("--interpolate", nargs=2, type=Path, metavar=("A", "B"), help="blend two inputs' shapes")
    parser.add_argument("--steps", type=int, default=5, help="meshes written by --interpolate (default 5)")
    parser.add_argument(
        "--backend-python",
        help="a Python with PyTorch to run the backend (default: PyTorch if found, else the built-in CPU runtime)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    args = parser.parse_args(argv)
    if not args.input and not args.interpolate:
        parser.error("give --input and/or --interpolate A B")
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.view:
        if len(args.view) != len(args.input) or any(p.is_dir() or input_kind(p) != "image" for p in args.input):
            parser.error(f"--view: give one image file per view ({len(args.input)} inputs, {len(args.view)} views)")
        for name in args.view:
            try:
                View.named(name)
            except InputError as exc:
                parser.error(f"--view: {exc}")
    if args.save_blend and args.save_blend.suffix.lower() != ".blend":
        name = args.save_blend
        parser.error(f"--save-blend {name}: Blender files end in .blend; name it {name.stem}.blend")
    try:  # the settings' one set of rules, before Blender starts any work
        ExtractOptions(resolution=args.resolution, threshold=args.threshold, min_piece=args.min_piece)
    except OptionsError as exc:
        parser.error(str(exc))
    return args


def expand(paths: list[Path]) -> list[Path]:
    """Folders become their readable files (sorted; never a temporary a killed run left, NAME.PID.partial.EXT);
    files stay, whatever their type, so bad ones are reported. A file named twice (a folder and one of its files)
    is one input."""
    found: dict[Path, Path] = {}
    for path in paths:
        files = [path]
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED and not is_partial(p)
            )
        for file in files:
            found.setdefault(Path(os.path.realpath(file)), file)  # realpath: a loop of links does not raise
    return list(found.values())


def unsupported(paths: list[Path]) -> list[Path]:
    """The files in the given folders that are no input type, to be named in the summary instead of passed over
    without a word. Hidden files (.DS_Store) and a killed run's temporaries are left out."""
    return sorted(
        p
        for path in paths
        if path.is_dir()
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() not in SUPPORTED and not p.name.startswith(".") and not is_partial(p)
    )


def output_names(paths: list[Path]) -> dict[Path, str]:
    """Each input's output name, before the format's suffix: its stem; inputs that share a stem are named by their
    path from the folder they have in common, separators and the dot as "_" (a/chair.ply, a/chair.png and
    b/chair.ply -> a_chair_ply, a_chair_png, b_chair_ply). Stems compare case-blind, as on Windows and macOS."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem.casefold()].append(path)
    names = {}
    for group in by_stem.values():
        absolute = {path: Path(os.path.abspath(path)) for path in group}  # links keep their own names
        try:
            common = Path(os.path.commonpath([full.parent for full in absolute.values()]))
        except ValueError:  # on different drives (Windows): named by the whole path
            common = None
        for path, full in absolute.items():
            relative = full.relative_to(common) if common else Path(*full.parts[1:])
            parts = relative.with_suffix("").parts + (full.suffix.lstrip("."),)
            names[path] = path.stem if len(group) == 1 else "_".join(parts)
    return names


class Refused(Exception):
    """Arguments the batch will not run with; the message names the problem and the fix."""


def plan_outputs(args: argparse.Namespace, inputs: list[Path]) -> dict[Path, Path]:
    """Each input's mesh file and each interpolation step's (keyed by its index), checked before any work: --out is
    a folder holding no input, --save-blend is no input, and no two outputs share a file."""
    out = args.out
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} is a file; give a folder for the meshes (it is made if missing).")
    sources = [*inputs, *(args.interpolate or ())]
    for source in sources:
        if same_file(source.parent, out) or same_file(Path(os.path.realpath(source)).parent, out):
            raise Refused(
                f"--out {out} holds inputs ({source}); give a folder of its own, so that no mesh lands on an input "
                "or is read back as one by the next run."
            )
    if args.save_blend and any(same_file(args.save_blend, source) for source in sources):
        raise Refused(f"--save-blend {args.save_blend} is an input; give the name of a new .blend file.")
    names = output_names(inputs)
    targets: dict = {path: out / f"{names[path]}.{args.format}" for path in inputs}
    if args.interpolate:
        a, b = (end.stem for end in args.interpolate)
        targets |= {step: out / f"{a}_to_{b}_{step:02d}.{args.format}" for step in range(args.steps)}
    for source, target in targets.items():
        if written_over := next((s for s in sources if same_file(target, s)), None):
            raise Refused(
                f"{target} (the mesh of {source}) is the input {written_over} (a link?); give --out a folder of its "
                "own."
            )
    claimed: dict[str, object] = {}
    for source, target in [*targets.items(), *([("--save-blend", args.save_blend)] if args.save_blend else [])]:
        other = claimed.setdefault(os.path.abspath(target).casefold(), source)  # case-blind, as on Windows and macOS
        if other is not source:
            first, second = (f"interpolation step {s}" if isinstance(s, int) else str(s) for s in (other, source))
            raise Refused(f"{first} and {second} would both be written to {target}; rename one of them.")
    return targets


def export(obj: bpy.types.Object, path: Path) -> None:
    """Blender's own exporters; OBJ keeps Z up so files line up with the inputs (glTF is Y up by its spec). The
    exporters only log a failed write (a full disk), so the file is checked whole before it replaces any other."""
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    with atomic_write(path) as temporary:
        _export_selected(temporary)
        if problem := written_problem(temporary, len(obj.data.vertices), len(obj.data.polygons)):
            raise OSError(f"{path.name} was not written whole ({problem}); is the disk full? Nothing was replaced.")


def _export_selected(path: Path) -> None:
    target = str(path)
    if path.suffix == ".obj":
        bpy.ops.wm.obj_export(
            filepath=target,
            export_selected_objects=True,
            export_materials=False,
            export_colors=True,  # written only where the result has colour
            forward_axis="Y",
            up_axis="Z",
        )
    elif path.suffix == ".ply":
        bpy.ops.wm.ply_export(filepath=target, export_selected_objects=True, ascii_format=False)
    elif path.suffix == ".stl":
        bpy.ops.wm.stl_export(filepath=target, export_selected_objects=True)
    else:
        bpy.ops.export_scene.gltf(filepath=target, export_format="GLB", use_selection=True)


def reconstruct(path: Path, model: str) -> bpy.types.Object:
    """The input's result object: a saved latent extracted, any other file reconstructed."""
    settings = bpy.context.scene.occnet
    latent = read_latent(path)
    if latent is not None:
        return addon.worker.jobs.JOBS.run_now(addon.scene.reconstruct.latent_job(path.stem, *latent, settings))
    source = addon.scene.gather.gather_file(str(path.resolve()), (0.0, 0.0, 0.0))
    return addon.worker.jobs.JOBS.run_now(addon.scene.reconstruct.reconstruct_job(source, settings, model))


def reconstruct_views(paths: list[Path], views: list[str], model: str) -> bpy.types.Object:
    """Images of one object, each placed as Add > Image > Reference places a picture in its view (centred on the
    origin, the first's longer side one unit, every pixel that size), then reconstructed together as the panel
    does for image empties selected together; the empties are removed again."""
    empties, unit = [], None
    for path, name in zip(paths, views, strict=True):
        image = bpy.data.images.load(str(path.resolve()))
        unit = unit or 1.0 / max(image.size)
        empty = bpy.data.objects.new(path.stem, None)
        empty.empty_display_type, empty.data = "IMAGE", image
        empty.empty_display_size = max(image.size) * unit
        rotation = Matrix(View.named(name).axes.T.tolist()).to_4x4()  # columns: right, up, towards the viewer
        empty.matrix_world = rotation
        bpy.context.scene.collection.objects.link(empty)
        empties.append(empty)
    try:
        depsgraph = bpy.context.evaluated_depsgraph_get()
        gather = addon.scene.gather
        source = gather.join_pictures([gather.gather_object(empty, depsgraph) for empty in empties])
        source.name = paths[0].stem
        settings = bpy.context.scene.occnet
        return addon.worker.jobs.JOBS.run_now(addon.scene.reconstruct.reconstruct_job(source, settings, model))
    finally:
        for empty in empties:
            image = empty.data
            bpy.data.objects.remove(empty)
            bpy.data.images.remove(image)


def read_latent(path: Path):
    """A saved latent's (frame, code), or None when the file is not one (a damaged .npz is left to the worker,
    whose message says what is wrong with it). numpy only: the add-on never imports the backend's readers."""
    if path.suffix.lower() != ".npz":
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if LATENT_MARKER not in data.files:
                return None
            missing = [key for key in ("code", "model", "center", "scale") if key not in data.files]
            if missing:
                raise addon.scene.gather.GatherError(
                    f"{path}: not a usable latent (it lacks {', '.join(missing)}). Save it again with "
                    "'reconstruct --save-latent'."
                )
            by_field = bool(data["blends_by_field"]) if "blends_by_field" in data.files else False
            center = tuple(float(v) for v in np.asarray(data["center"], np.float64).reshape(3))
            frame = addon.backend_parts.LatentInfo(str(data["model"]), center, float(data["scale"]), by_field)
            return frame, np.asarray(data["code"], np.float32)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # damaged: the worker says how, as for any input
        return None


def empty_scene() -> None:
    """Start from nothing: the .blend holds the results only, not Blender's default cube, camera and light."""
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for collection in list(bpy.data.collections):
        bpy.data.collections.remove(collection)
    for blocks in (bpy.data.meshes, bpy.data.cameras, bpy.data.lights, bpy.data.materials):
        for block in [b for b in blocks if b.users == 0]:
            blocks.remove(block)


def main(argv: list[str]) -> int:
    global addon
    args = parse_args(argv)
    inputs, skipped = expand(args.input), unsupported(args.input)
    skipped_rows = [f"skipped {path}: not an input type (reads {', '.join(SUPPORTED)})" for path in skipped]
    if not inputs and not args.interpolate:
        print("\n".join(skipped_rows))
        named = ", ".join(str(path) for path in args.input)
        print(
            f"error: no readable input in {named}"
            + (f" ({len(skipped)} files of other types)" if skipped else "")
            + f"; give files of the types {', '.join(SUPPORTED)}.",
            file=sys.stderr,
        )
        return 2
    try:
        targets = plan_outputs(args, inputs)
        args.out.mkdir(parents=True, exist_ok=True)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: --out {args.out} cannot be made ({exc.strerror}); give a folder you can write to.", file=sys.stderr
        )
        return 2
    addon = load_addon()
    empty_scene()
    lifecycle = addon.worker.lifecycle
    model, models_dir = args.model, ""
    if model.endswith(".safetensors"):  # a file: the worker finds it by name in its folder, blends included
        model, models_dir = Path(model).stem, str(Path(model).resolve().parent)
    configured = lifecycle.launch_settings()
    chosen = (lifecycle.Interpreter("--backend-python", args.backend_python),)
    interpreters = chosen if args.backend_python else configured.interpreters
    lifecycle.BACKEND.launch_override = lifecycle.LaunchSettings(
        interpreters, args.device, models_dir or configured.models_dir
    )
    errors = (
        addon.worker.client.BackendError,
        addon.scene.gather.GatherError,
        addon.scene.blend.BlendError,
        RuntimeError,
        OSError,
    )
    settings = bpy.context.scene.occnet
    settings.resolution = args.resolution
    settings.use_model_threshold = args.threshold is None
    settings.threshold = args.threshold if args.threshold is not None else 0.5
    settings.min_piece = args.min_piece
    settings.snap = not args.no_snap
    rows, failed, results = [], 0, {}

    def attempt(label: str, work) -> None:
        nonlocal failed
        started = time.monotonic()
        try:
            written = work()
            rows.append(f"ok      {label} -> {written} ({time.monotonic() - started:.1f} s)")
        except errors as exc:
            failed += 1
            rows.append(f"FAILED  {label}: {exc}")

    def one(path: Path):
        obj = reconstruct(path, model)
        results[path.resolve()] = obj.name
        target = targets[path]
        export(obj, target)
        read = f"; {obj.occnet.input_summary}" if obj.occnet.input_summary else ""
        return f"{target} ({len(obj.data.vertices)} vertices, {len(obj.data.polygons)} faces, {obj.occnet.model}{read})"

    def views_one(paths: list[Path]):
        obj = reconstruct_views(paths, args.view, model)
        target = targets[paths[0]]
        export(obj, target)
        return f"{target} ({len(obj.data.vertices)} vertices, {obj.occnet.model}; {obj.occnet.input_summary})"

    interrupted = False
    try:
        with terminate_as_interrupt():  # Ctrl-C or a pipeline's SIGTERM: no temporary file stays behind
            if args.view:
                attempt(" + ".join(map(str, inputs)), lambda: views_one(inputs))
            for path in [] if args.view else inputs:
                attempt(str(path), lambda path=path: one(path))
            if args.interpolate:
                steps = [targets[step] for step in range(args.steps)]
                label = f"interpolate {args.interpolate[0]} {args.interpolate[1]}"
                attempt(label, lambda: interpolate(args, model, results, steps))
            if args.save_blend:
                attempt(f"save {args.save_blend}", lambda: save_blend(args.save_blend))
    except KeyboardInterrupt:
        interrupted = True
    print("\nOccNet batch summary")
    print("\n".join(rows + skipped_rows))
    print(f"{len(rows) - failed} ok, {failed} failed" + (f", {len(skipped)} skipped" if skipped else ""))
    if interrupted:
        print("interrupted: the inputs not listed above were not reconstructed; no partial file was left")
    lifecycle.BACKEND.stop()
    lifecycle.BACKEND.launch_override = None
    return 130 if interrupted else 1 if failed else 0


def interpolate(args: argparse.Namespace, model: str, results: dict[Path, str], targets: list[Path]) -> str:
    ends = [
        bpy.data.objects[results[p.resolve()]] if p.resolve() in results else reconstruct(p, model)
        for p in args.interpolate
    ]
    blend = addon.scene.blend.create_blend(*ends, factor=0.0)
    for step, (factor, target) in enumerate(zip(np.linspace(0.0, 1.0, args.steps), targets, strict=True)):
        blend.occnet.factor = float(factor)
        blend.occnet.keyframe_insert("factor", frame=step + 1)
        export(blend, target)
    return (
        f"{args.steps} meshes in {args.out} ({targets[0].name} … {targets[-1].name}); the .blend keyframes the factor"
    )


def save_blend(path: Path) -> str:
    """Saved as a copy (the session keeps its own file name) under a temporary name, then moved into place."""
    with atomic_write(path.resolve()) as temporary:
        bpy.ops.wm.save_as_mainfile(filepath=str(temporary), check_existing=False, copy=True)
    return str(path)


def arguments() -> list[str]:
    """Everything after `--` (Blender's convention), or every argument when there is none."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


if __name__ == "__main__":
    code = main(arguments())
    sys.stdout.flush()
    sys.exit(code)
