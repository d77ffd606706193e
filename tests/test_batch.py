"""The headless batch script end to end, as a pipeline runs it: folders expand, a bad input fails alone
with its message, the exit status says so, meshes keep the inputs' coordinates, and the .blend holds them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh
from blender_scenes import held_out, scan_of

ROOT = Path(__file__).resolve().parents[1]
OFFSET = np.array([3.0, -2.0, 1.0])


def _batch(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "occnet_blender/batch.py"), "--", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_batch_reconstructs_reports_and_fails_only_the_bad_input(tmp_path):
    scans, other = tmp_path / "scans", tmp_path / "other"
    scans.mkdir()
    other.mkdir()
    np.savetxt(scans / "bottle.xyz", scan_of(held_out("bottle", 0)) + OFFSET)
    mug = scan_of(held_out("mug", 1))
    np.save(scans / "mug.npy", mug)
    np.savetxt(scans / "mug.csv", mug, delimiter=",", header="x,y,z", comments="")  # a header line, as exported
    np.savetxt(other / "bottle.pts", mug, header=str(len(mug)), comments="")  # a .pts count line
    (scans / "notes.md").write_text("not an input: folders only expand to readable types")
    bad = tmp_path / "broken.xyz"
    bad.write_text("this is not a point cloud\n")
    out = tmp_path / "out"
    (out / "mug_npy.obj").parent.mkdir()
    (out / "mug_npy.obj").write_text("an earlier run's mesh, replaced whole")
    done = _batch(
        "--input", str(scans), str(other), str(bad), "--out", str(out), "--resolution", "32",
        "--save-blend", str(out / "results.blend"),
        "--interpolate", str(scans / "bottle.xyz"), str(scans / "mug.npy"), "--steps", "3",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout[done.stdout.index("OccNet batch summary") :]
    assert f"FAILED  {bad}: {bad}: line 1 ('this is not a point cloud') does not start with three numbers" in summary
    assert "6 ok, 1 failed" in summary, summary
    # one output per input: a shared stem keeps the extension, a shared name the folder (README, Headless batch)
    assert sorted(p.name for p in out.iterdir()) == [
        "bottle_to_mug_00.obj",
        "bottle_to_mug_01.obj",
        "bottle_to_mug_02.obj",
        "mug_csv.obj",
        "mug_npy.obj",
        "other_bottle_pts.obj",
        "results.blend",
        "scans_bottle_xyz.obj",
    ], "outputs collided, or a temporary file was left behind"
    bottle = trimesh.load(out / "scans_bottle_xyz.obj", force="mesh")
    assert np.allclose(bottle.bounds.mean(axis=0), OFFSET, atol=0.1), "the mesh left the input's coordinates"
    assert bottle.is_watertight
    first = trimesh.load(out / "bottle_to_mug_00.obj", force="mesh")  # a blend's end is where its input was
    assert np.allclose(first.bounds, bottle.bounds, atol=0.05), (first.bounds, bottle.bounds)
    for name in ("mug_csv.obj", "other_bottle_pts.obj", "mug_npy.obj"):  # the header and count lines were skipped
        assert np.allclose(trimesh.load(out / name, force="mesh").bounds, bottle.bounds - OFFSET, atol=0.5), name
    listing = subprocess.run(
        [sys.executable, "-c", LIST_BLEND, str(out / "results.blend")], capture_output=True, text=True, timeout=120
    )
    assert "bottle.occnet RECONSTRUCTION" in listing.stdout and "mug.occnet RECONSTRUCTION" in listing.stdout
    # Blender numbers objects that share a name: mug.csv is mug.occnet, mug.npy (an end of the blend) mug.occnet.001
    assert "bottle.occnet to mug.occnet.001 BLEND keyframes 3" in listing.stdout, listing.stdout + listing.stderr


REFUSALS = """
import contextlib, io, json, sys
from pathlib import Path
sys.path.insert(0, ".")
from occnet_blender import batch
for argv in sys.stdin.read().splitlines():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = batch.main(argv.split("|"))
        except SystemExit as exit:
            code = exit.code
    print("refused", code, json.dumps(err.getvalue()))
folder = Path(sys.argv[1]) / "atomic"
folder.mkdir()
target = folder / "mesh.obj"
target.write_text("old")
def fail_halfway(path):
    path.write_text("half a mesh")
    raise RuntimeError("the exporter failed")
try:
    with batch.atomic_write(target) as partial:
        fail_halfway(partial)
except RuntimeError:
    pass
print("atomic", target.read_text(), sorted(p.name for p in folder.iterdir()))
with batch.atomic_write(target) as partial:
    partial.write_text("new")
print("atomic", target.read_text(), sorted(p.name for p in folder.iterdir()))
"""


def test_batch_refuses_bad_outputs_and_options_before_any_work_and_writes_atomically(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "chair.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    np.savetxt(scans / "chair.xyz", scan_of(held_out("bottle", 0)))
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "o"
    earlier = tmp_path / "earlier"  # an earlier run's folder, and an input that is a link to its mesh
    earlier.mkdir()
    (earlier / "chair.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "alias.blend").symlink_to(scans / "chair.xyz")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "chair.obj").symlink_to(earlier / "chair.obj")
    (tmp_path / "hard").mkdir()
    os.link(earlier / "chair.obj", tmp_path / "hard" / "chair.obj")
    cases = {  # argv -> the start of the one line on stderr (exit status 2: bad arguments)
        f"--input|{scans}|--out|{scans}": f"error: --out {scans} holds inputs ({scans / 'chair.obj'})",
        f"--input|{scans / 'chair.obj'}|--out|{scans}": f"error: --out {scans} holds inputs ({scans / 'chair.obj'})",
        f"--input|{scans / 'chair.xyz'}|--out|{out}|--save-blend|{tmp_path / 'alias.blend'}": (
            f"error: --save-blend {tmp_path / 'alias.blend'} is an input"
        ),
        f"--input|{tmp_path / 'links'}|--out|{earlier}": (
            f"error: --out {earlier} holds inputs ({tmp_path / 'links' / 'chair.obj'})"
        ),
        f"--input|{tmp_path / 'hard'}|--out|{earlier}": (
            f"error: {earlier / 'chair.obj'} (the mesh of {tmp_path / 'hard' / 'chair.obj'}) is the input"
        ),
        f"--input|{scans}|--out|{tmp_path / 'file'}": f"error: --out {tmp_path / 'file'} is a file",
        f"--input|{scans}|--out|{out}|--save-blend|{out / 'chair.obj'}": "end in .blend; name it chair.blend",
        f"--input|{scans}|--out|{out}|--resolution|0": "--resolution: invalid choice: 0 (choose from 32, 64,",
        f"--input|{scans}|--out|{out}|--threshold|1.5": "error: Threshold 1.5 must lie strictly between 0 and 1",
        f"--input|{scans}|--out|{out}|--threshold|0": "error: Threshold 0.0 must lie strictly between 0 and 1",
    }
    done = subprocess.run(
        [sys.executable, "-c", REFUSALS, str(tmp_path)],
        input="\n".join(cases), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    refusals = [line.split(" ", 2)[1:] for line in done.stdout.splitlines() if line.startswith("refused ")]
    assert len(refusals) == len(cases), done.stdout + done.stderr
    for (argv, message), (code, err) in zip(cases.items(), refusals, strict=True):
        err = json.loads(err)
        assert code == "2" and message in err, (argv, err)
        if message.startswith("error: --"):
            assert err.startswith(message) and err.count("\n") == 1, (argv, err)  # one line, no usage, no traceback
    assert sorted(p.name for p in scans.iterdir()) == ["chair.obj", "chair.xyz"], "an input was touched"
    assert (scans / "chair.obj").read_text().startswith("v 0 0 0"), "an input was overwritten"
    assert not out.exists(), "a refused run made its output folder"
    assert (earlier / "chair.obj").read_text().startswith("v 0 0 0"), "an input behind a link was overwritten"
    # a failed write leaves the earlier file whole and no temporary beside it
    assert "atomic old ['mesh.obj']" in done.stdout, done.stdout + done.stderr
    assert "atomic new ['mesh.obj']" in done.stdout, done.stdout + done.stderr


LIST_BLEND = """
import sys, bpy
sys.path.insert(0, ".")
from occnet_blender.ui import properties
properties.register()
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
for obj in bpy.data.objects:
    action = obj.animation_data.action if obj.animation_data else None
    keys = sum(len(c.keyframe_points) for c in action.fcurves) if action and hasattr(action, "fcurves") else 0
    if action and not keys:
        keys = sum(len(c.keyframe_points) for layer in action.layers for strip in layer.strips
                   for bag in strip.channelbags for c in bag.fcurves)
    print(obj.name, obj.occnet.kind, "keyframes", keys)
"""


def test_batch_with_a_model_file_writes_glb_and_rejects_bad_arguments(tmp_path, tiny_model):
    cloud = tmp_path / "bottle.npy"
    np.save(cloud, scan_of(held_out("bottle", 0)))
    out = tmp_path / "out"
    done = _batch(
        "--input", str(cloud), "--out", str(out), "--format", "glb", "--resolution", "32",
        "--model", str(tiny_model), "--interpolate", str(cloud), str(cloud), "--steps", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "faces, tiny-pointcloud)" in done.stdout
    assert len(trimesh.load(out / "bottle.glb", force="mesh").faces) > 100
    assert (out / "bottle_to_bottle_01.glb").is_file()
    assert _batch("--out", str(tmp_path)).returncode == 2


WITH_EXTENSION = """
import os, runpy, sys, tempfile
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
import bpy
bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
sys.argv = ["batch.py", "--", "--input", sys.argv[2], "--out", sys.argv[3], "--resolution", "32"]
try:
    runpy.run_path("occnet_blender/batch.py", run_name="__main__")
except SystemExit as exit:
    print("exit", exit.code, "result made by", type(bpy.data.objects["bottle.occnet"].occnet).__module__)
"""


def test_batch_uses_the_enabled_extension(tmp_path, extension_zip):
    cloud = tmp_path / "bottle.npy"
    np.save(cloud, scan_of(held_out("bottle", 0)))
    done = subprocess.run(
        [sys.executable, "-c", WITH_EXTENSION, str(extension_zip), str(cloud), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert "exit 0 result made by bl_ext.user_default.occnet.occnet_blender.ui.properties" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "Traceback" not in done.stderr


WRITTEN = """
import sys
from pathlib import Path
import bpy
sys.path.insert(0, ".")
from occnet_blender import batch
folder = Path(sys.argv[1])
bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3)
obj = bpy.context.active_object
for suffix in ("obj", "ply", "stl", "glb"):
    path = folder / f"whole.{suffix}"
    batch.export(obj, path)
    whole = path.read_bytes()
    cut = path.with_name(f"cut.{suffix}")
    cut.write_bytes(whole[: len(whole) - 40])
    counts = len(obj.data.vertices), len(obj.data.polygons)
    print(suffix, batch.written_problem(path, *counts), bool(batch.written_problem(cut, *counts)))
real = batch._export_selected
def full_disk(path):  # what Blender's exporters do when the disk fills: log it, return normally
    real(path)
    path.write_bytes(path.read_bytes()[:1000])
batch._export_selected = full_disk
before = (folder / "whole.ply").read_bytes()
try:
    batch.export(obj, folder / "whole.ply")
except OSError as error:
    print("refused", error)
print("kept", (folder / "whole.ply").read_bytes() == before, len(list(folder.glob("*partial*"))))
"""


def test_an_exported_mesh_cut_short_fails_and_keeps_the_earlier_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", WRITTEN, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    for suffix in ("obj", "ply", "stl", "glb"):
        assert f"{suffix} None True" in done.stdout, done.stdout + done.stderr  # whole passes, cut short fails
    assert "refused whole.ply was not written whole (" in done.stdout and "is the disk full?" in done.stdout
    assert "kept True 0" in done.stdout  # the earlier file as it was, and no temporary beside it


def test_a_folder_never_yields_a_temporary_a_killed_run_left(tmp_path):
    sys.path.insert(0, str(ROOT))
    from backend.outputs import is_partial

    for name in ("scan.ply", "scan.ply.123.partial.ply", "mesh.obj.77.partial.obj", "partial.ply", "a.partial.ply"):
        (tmp_path / name).write_text("x")
    listed = subprocess.run(
        [sys.executable, "-c", EXPAND, str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert listed.stdout.split() == ["a.partial.ply", "partial.ply", "scan.ply"], listed.stdout + listed.stderr
    assert is_partial("x.glb.5.partial.glb") and not is_partial("x.partial.glb")


EXPAND = """
import sys
from pathlib import Path
sys.path.insert(0, ".")
from occnet_blender import batch
print(*[p.name for p in batch.expand([Path(sys.argv[1])])])
"""


def test_batch_reconstructs_a_blueprint_of_views_as_one_object(tmp_path):
    """Front, side and top pictures of a cylinder given with --view: one mesh where the pictures place it (centred on
    the origin, the first picture's longer side one unit), and a view name the batch cannot read is refused."""
    from PIL import Image
    from reference_pictures import pictures_of

    from backend.metrics import solid_iou

    box = trimesh.creation.cylinder(radius=0.15, height=0.4, sections=64)
    paths = []
    for name, (pixels, _) in zip(("front", "side", "top"), pictures_of(box, ["front", "side", "top"]), strict=True):
        paths.append(tmp_path / f"box_{name}.png")
        Image.fromarray(pixels).save(paths[-1])
    out = tmp_path / "out"
    done = _batch("--input", *map(str, paths), "--view", "front", "side", "top", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 reference images" in done.stdout
    mesh = trimesh.load(out / "box_front.obj", force="mesh")
    assert solid_iou((mesh.vertices, mesh.faces), (box.vertices, box.faces)) >= 0.85
    refused = _batch("--input", *map(str, paths), "--view", "front", "side", "sky", "--out", str(out))
    assert refused.returncode == 2 and "Unknown view 'sky'" in refused.stderr
