"""Headless batch reconstruction, for pipelines:

    blender --background --python occnet_blender/batch.py -- --input scans/ photo.png --out meshes/
    python occnet_blender/batch.py -- --input scans/ --out meshes/        (bpy installed as a module)

Each input (point clouds, meshes, images; folders expand) becomes a mesh file in --out and, with
--save-blend, an object in a .blend. One summary line per input; the exit status is 1 if any failed.
Where Blender has the OccNet extension enabled, its code and preferences (Backend Python) are used;
otherwise the add-on next to this file is registered for the run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: the folder above holds occnet_blender/ and backend/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from occnet_blender.shared import AUTO_MODEL, SUPPORTED  # noqa: E402

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
    parser.add_argument("--model", default=AUTO_MODEL, help="model name or .safetensors path (default: by input)")
    parser.add_argument("--resolution", type=int, default=128, help="32, 64, 128, 256 or 512 (default 128)")
    parser.add_argument("--threshold", type=float, help="surface threshold in (0, 1) (default: the model's)")
    parser.add_argument("--format", choices=FORMATS, default="obj", help="mesh file format (default obj)")
    parser.add_argument("--save-blend", type=Path, help="also save the results as objects in this .blend")
    parser.add_argument("--interpolate", nargs=2, type=Path, metavar=("A", "B"), help="blend two inputs' shapes")
    parser.add_argument("--steps", type=int, default=5, help="meshes written by --interpolate (default 5)")
    parser.add_argument("--backend-python", help="interpreter with PyTorch for the backend (default: this one)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    args = parser.parse_args(argv)
    if not args.input and not args.interpolate:
        parser.error("give --input and/or --interpolate A B")
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    return args


def expand(paths: list[Path]) -> list[Path]:
    """Folders become their readable files (sorted); files stay, whatever their type, so bad ones are reported."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED)
        else:
            found.append(path)
    return found


def export(obj: bpy.types.Object, path: Path) -> None:
    """Blender's own exporters; OBJ keeps Z up so files line up with the inputs (glTF is Y up by its spec)."""
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    target = str(path)
    if path.suffix == ".obj":
        bpy.ops.wm.obj_export(
            filepath=target, export_selected_objects=True, export_materials=False, forward_axis="Y", up_axis="Z"
        )
    elif path.suffix == ".ply":
        bpy.ops.wm.ply_export(filepath=target, export_selected_objects=True, ascii_format=False)
    elif path.suffix == ".stl":
        bpy.ops.wm.stl_export(filepath=target, export_selected_objects=True)
    else:
        bpy.ops.export_scene.gltf(filepath=target, export_format="GLB", use_selection=True)


def reconstruct(path: Path, model: str) -> bpy.types.Object:
    source = addon.gather.gather_file(str(path.resolve()), (0.0, 0.0, 0.0))
    return addon.jobs.JOBS.run_now(addon.reconstruct.reconstruct_job(source, bpy.context.scene.occnet, model))


def main(argv: list[str]) -> int:
    global addon
    args = parse_args(argv)
    addon = load_addon()
    connection = addon.connection
    model, models_dir = args.model, ""
    if model.endswith(".safetensors"):  # a file: the worker finds it by name in its folder, blends included
        model, models_dir = Path(model).stem, str(Path(model).resolve().parent)
    configured = connection.launch_settings()
    interpreters = (("--backend-python", args.backend_python),) if args.backend_python else configured.interpreters
    connection.BACKEND.launch_override = connection.LaunchSettings(
        interpreters, args.device, models_dir or configured.models_dir
    )
    errors = (addon.client.BackendError, addon.gather.GatherError, addon.blend.BlendError, RuntimeError)
    settings = bpy.context.scene.occnet
    settings.resolution = args.resolution
    settings.use_model_threshold = args.threshold is None
    settings.threshold = args.threshold if args.threshold is not None else 0.5
    args.out.mkdir(parents=True, exist_ok=True)
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
        results[path] = obj.name
        target = args.out / f"{path.stem}.{args.format}"
        export(obj, target)
        return f"{target} ({len(obj.data.vertices)} vertices, {len(obj.data.polygons)} faces, {obj.occnet.model})"

    for path in expand(args.input):
        attempt(str(path), lambda path=path: one(path))
    if args.interpolate:
        attempt(f"interpolate {args.interpolate[0]} {args.interpolate[1]}", lambda: interpolate(args, model, results))
    if args.save_blend:
        attempt(f"save {args.save_blend}", lambda: save_blend(args.save_blend))
    print("\nOccNet batch summary")
    print("\n".join(rows))
    print(f"{len(rows) - failed} ok, {failed} failed")
    connection.BACKEND.stop()
    connection.BACKEND.launch_override = None
    return 1 if failed else 0


def interpolate(args: argparse.Namespace, model: str, results: dict[Path, str]) -> str:
    ends = [bpy.data.objects[results[p]] if p in results else reconstruct(p, model) for p in args.interpolate]
    blend = addon.blend.create_blend(*ends, factor=0.0)
    written = []
    for step, factor in enumerate(np.linspace(0.0, 1.0, args.steps)):
        blend.occnet.factor = float(factor)
        blend.occnet.keyframe_insert("factor", frame=step + 1)
        target = args.out / f"{args.interpolate[0].stem}_to_{args.interpolate[1].stem}_{step:02d}.{args.format}"
        export(blend, target)
        written.append(target.name)
    return f"{args.steps} meshes in {args.out} ({written[0]} … {written[-1]}); the .blend keyframes the factor"


def save_blend(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path.resolve()), check_existing=False)
    return str(path)


def arguments() -> list[str]:
    """Everything after `--` (Blender's convention), or every argument when there is none."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


if __name__ == "__main__":
    code = main(arguments())
    sys.stdout.flush()
    sys.exit(code)
