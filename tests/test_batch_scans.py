"""The batch script for issue 18: files of other types in a folder are named in the summary, a run with nothing
readable fails, a saved latent is extracted (the same mesh as reconstructing its input), and the .blend holds only
the results, each with its origin on itself, while the exported meshes keep the inputs' world coordinates."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh
from blender_scenes import held_out, scan_of

ROOT = Path(__file__).resolve().parents[1]
FAR = np.array([5000.0, -3000.0, 200.0])  # a georeferenced scan's kind of coordinates


def _batch(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "occnet_blender/batch.py"), "--", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_a_folder_with_nothing_readable_names_its_files_and_fails(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("notes.md", "scan.foo", ".DS_Store"):
        (folder / name).write_text("x")
    done = _batch("--input", str(folder), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"skipped {folder / 'notes.md'}: not an input type" in done.stdout
    assert f"skipped {folder / 'scan.foo'}: not an input type" in done.stdout
    assert ".DS_Store" not in done.stdout
    assert f"error: no readable input in {folder} (2 files of other types)" in done.stderr
    assert not (tmp_path / "out").exists()
    refused = _batch("--input", str(folder), "--out", str(tmp_path / "out"), "--min-piece", "1.5")
    assert refused.returncode == 2 and "small-piece share 1.5 must lie between 0" in refused.stderr


LIST_BLEND = """
import sys, bpy, numpy as np
sys.path.insert(0, ".")
from occnet_blender.ui import properties
properties.register()
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
print("counts", len(bpy.data.objects), len(bpy.data.cameras), len(bpy.data.lights), len(bpy.data.collections))
for obj in bpy.data.objects:
    local = np.array([v.co[:] for v in obj.data.vertices])
    centre = (local.min(axis=0) + local.max(axis=0)) / 2
    print("object", obj.name, obj.occnet.kind, *obj.location, float(np.abs(centre).max()))
"""


def test_latent_input_blend_of_results_only_and_world_coordinates(tmp_path):
    scans, out = tmp_path / "scans", tmp_path / "out"
    scans.mkdir()
    scan = scan_of(held_out("bottle", 0)) + FAR
    np.savetxt(scans / "bottle.xyz", scan)
    (scans / "readme.md").write_text("not an input")
    made = subprocess.run(
        [sys.executable, "-m", "backend", "reconstruct", str(scans / "bottle.xyz"), "--out", str(tmp_path / "cli.obj"),
         "--resolution", "32", "--save-latent", str(scans / "saved.npz")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    done = _batch(
        "--input", str(scans), "--out", str(out), "--resolution", "32", "--save-blend", str(out / "results.blend")
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout[done.stdout.index("OccNet batch summary") :]
    assert f"skipped {scans / 'readme.md'}: not an input type" in summary
    assert "3 ok, 0 failed, 1 skipped" in summary, summary  # two inputs and the .blend
    bottle, saved = (trimesh.load(out / name, force="mesh") for name in ("bottle.obj", "saved.obj"))
    assert np.allclose(bottle.bounds.mean(axis=0), FAR, atol=0.1), "the mesh left the input's coordinates"
    assert len(saved.vertices) == len(bottle.vertices), "the latent's mesh is not the reconstruction's"
    assert np.allclose(saved.bounds, bottle.bounds, atol=2e-3)

    listing = subprocess.run(
        [sys.executable, "-c", LIST_BLEND, str(out / "results.blend")], capture_output=True, text=True, timeout=120
    )
    assert "counts 2 0 0 0" in listing.stdout, listing.stdout + listing.stderr  # no cube, camera, light, collection
    objects = {line.split()[1]: line.split()[2:] for line in listing.stdout.splitlines() if line.startswith("object")}
    assert set(objects) == {"bottle.occnet", "saved.occnet"}
    for kind, *values in objects.values():
        location, centre = np.array(values[:3], float), float(values[3])
        assert kind == "RECONSTRUCTION"
        assert np.allclose(location, bottle.bounds.mean(axis=0), atol=0.05), location  # its origin on itself
        assert centre < 1e-3  # the mesh in local coordinates around that origin


def test_far_from_origin_meshes_keep_world_coordinates_in_every_format(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    np.savetxt(scans / "bottle.xyz", scan_of(held_out("bottle", 0)) + FAR)
    for suffix, axes in (("glb", [0, 2, 1]), ("ply", [0, 1, 2]), ("stl", [0, 1, 2])):  # glTF is Y up: (x, z, -y)
        out = tmp_path / suffix
        done = _batch("--input", str(scans), "--out", str(out), "--resolution", "32", "--format", suffix)
        assert done.returncode == 0, done.stdout + done.stderr
        mesh = trimesh.load(out / f"bottle.{suffix}", force="mesh")
        centre = mesh.bounds.mean(axis=0)[axes] * ([1, -1, 1] if suffix == "glb" else 1)
        assert np.allclose(centre, FAR, atol=0.1), (suffix, centre)
        assert len(np.unique(mesh.vertices[:, 0])) > 200, f"{suffix}: x rounded to a few values"
