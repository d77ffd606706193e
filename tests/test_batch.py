"""The headless batch script end to end, as a pipeline runs it: folders expand, a bad input fails alone
with its message, the exit status says so, meshes keep the inputs' coordinates, and the .blend holds them."""

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
    scans = tmp_path / "scans"
    scans.mkdir()
    np.savetxt(scans / "bottle.xyz", scan_of(held_out("bottle", 0)) + OFFSET)
    np.save(scans / "mug.npy", scan_of(held_out("mug", 1)))
    (scans / "notes.md").write_text("not an input: folders only expand to readable types")
    bad = tmp_path / "broken.xyz"
    bad.write_text("this is not a point cloud\n")
    out = tmp_path / "out"
    done = _batch(
        "--input", str(scans), str(bad), "--out", str(out), "--resolution", "32",
        "--save-blend", str(out / "results.blend"),
        "--interpolate", str(scans / "bottle.xyz"), str(scans / "mug.npy"), "--steps", "3",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout[done.stdout.index("OccNet batch summary") :]
    assert f"FAILED  {bad}: {bad}: could not be read as a '.xyz' file" in summary
    assert "4 ok, 1 failed" in summary
    assert sorted(p.name for p in out.iterdir()) == [
        "bottle.obj",
        "bottle_to_mug_00.obj",
        "bottle_to_mug_01.obj",
        "bottle_to_mug_02.obj",
        "mug.obj",
        "results.blend",
    ]
    bottle = trimesh.load(out / "bottle.obj", force="mesh")
    assert np.allclose(bottle.bounds.mean(axis=0), OFFSET, atol=0.1), "the mesh left the input's coordinates"
    assert bottle.is_watertight
    listing = subprocess.run(
        [sys.executable, "-c", LIST_BLEND, str(out / "results.blend")], capture_output=True, text=True, timeout=120
    )
    assert "bottle.occnet RECONSTRUCTION" in listing.stdout and "mug.occnet RECONSTRUCTION" in listing.stdout
    assert "bottle.occnet to mug.occnet BLEND keyframes 3" in listing.stdout, listing.stdout + listing.stderr


LIST_BLEND = """
import sys, bpy
sys.path.insert(0, ".")
from occnet_blender import properties
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
    assert "exit 0 result made by bl_ext.user_default.occnet.occnet_blender.properties" in done.stdout, (
        done.stdout + done.stderr
    )
    assert "Traceback" not in done.stderr
