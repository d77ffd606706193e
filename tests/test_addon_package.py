"""The extension as a user gets it: one zip per platform that passes Blender's validator and carries that
platform's wheels, Blender's installer installs and enables it, and in a Blender without torch (stock Blender)
the add-on reconstructs, blends and cancels on the bundled CPU runtime with the PyTorch backend's results."""

import hashlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy
import numpy as np
import pytest
from conftest import build_or_skip
from stock_blender import blender_ext, run_in_stock_blender

import backend
import build
from backend.inputs.observation import ImageInput
from backend.inputs.views import View
from backend.metrics import solid_iou

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=build.PLATFORMS)
def platform_zip(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, build_or_skip(tmp_path_factory.mktemp("dist"), request.param)


def test_each_platform_zip_passes_blenders_validator_and_the_size_limit(platform_zip):
    platform, path = platform_zip
    validator = blender_ext().__file__
    done = subprocess.run([sys.executable, validator, "validate", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.name == f"occnet-{backend.__version__}-{platform.replace('-', '_')}.zip"
    assert path.stat().st_size <= 100 * 1000 * 1000


def test_each_platform_zip_carries_its_own_pinned_wheels_and_lists_them(platform_zip):
    platform, path = platform_zip
    with zipfile.ZipFile(path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        wheels = [name for name in archive.namelist() if name.endswith(".whl")]
        assert manifest["platforms"] == [platform]
        assert manifest["wheels"] == [f"./{name}" for name in wheels]
        assert wheels == [f"wheels/{filename}" for filename, _ in build.WHEELS[platform]]
        for wheel, (_, sha256) in zip(wheels, build.WHEELS[platform], strict=True):
            assert hashlib.sha256(archive.read(wheel)).hexdigest() == sha256  # unmodified from the registry
            assert blender_ext().blender_platform_compatible_with_wheel_platform_from_filepath(platform, wheel)
    assert {wheel.split("/")[1].split("-")[0] for wheel in wheels} == {"onnxruntime", "pillow", "trimesh", "laspy"}
    assert all("-cp311-" in wheel or "-py3-none-any" in wheel for wheel in wheels)


def test_a_wheel_that_does_not_match_its_pin_is_refused(tmp_path):
    """A changed file in the registry (or a wrong pin) stops the build instead of shipping other bytes."""
    filename, _ = build.TRIMESH  # the smallest download
    with pytest.raises(build.WheelUnavailable) as refused:
        build.fetch_wheel(filename, "0" * 64, cache=tmp_path)
    if "could not fetch" in str(refused.value):
        pytest.skip(f"the package registry cannot be reached: {refused.value}")
    assert "not the pinned" in str(refused.value)
    assert not (tmp_path / filename).exists()


def test_manifest_and_contents(extension_zip):
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    assert (manifest["id"], manifest["blender_version_min"], manifest["license"]) == (
        "occnet",
        "4.2.0",
        ["SPDX:GPL-3.0-or-later"],
    )
    assert set(manifest["permissions"]) == {"files", "network"}
    assert manifest["version"] == backend.__version__
    names = set(zipfile.ZipFile(extension_zip).namelist())
    assert {"__init__.py", "blender_manifest.toml", "occnet_blender/ui/panels.py", "backend/worker.py"} <= names
    assert {"backend/weights/onet-pointcloud.safetensors", "backend/requirements.txt"} <= names
    licence = zipfile.ZipFile(extension_zip).read("LICENSE").decode()
    assert "GNU GENERAL PUBLIC LICENSE" in licence and "Version 3" in licence  # what the manifest names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_same_sources_give_the_same_zip_bytes(extension_zip, tmp_path):
    platform = tomllib.loads(zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode())["platforms"][0]
    again = build.build(tmp_path, [platform])[platform]
    assert again.read_bytes() == extension_zip.read_bytes()


# A user's session: install the zip, Reconstruct a scan object and a reference-image empty, Blend, Cancel.
STOCK_BLENDER_SESSION = """
import json, os, sys, time
import bpy, numpy as np

zip_path, folder = sys.argv[1], sys.argv[2]
started = time.perf_counter()
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
addon = sys.modules["bl_ext.user_default.occnet.occnet_blender"]
for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
scene, report, results = bpy.context.scene, {}, {}
scene.occnet.resolution = 64


def select(*objects):
    bpy.context.view_layer.update()
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in objects)
    bpy.context.view_layer.objects.active = objects[0]


def keep(name, obj):
    mesh = obj.data
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", vertices)
    mesh.calc_loop_triangles()
    faces = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", faces)
    results[name + "_vertices"], results[name + "_faces"] = vertices.reshape(-1, 3), faces.reshape(-1, 3)
    report[name + "_matrix"] = [list(row) for row in obj.matrix_world]


for name, where in (("scan", (2.0, -1.0, 0.5)), ("other", (-1.0, 1.0, 0.0))):
    mesh = bpy.data.meshes.new(name)
    points = np.load(os.path.join(folder, name + ".npy"))
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.ravel())
    obj = bpy.data.objects.new(name, mesh)
    obj.location = where
    scene.collection.objects.link(obj)
empty = bpy.data.objects.new("picture", None)
empty.empty_display_type, empty.empty_display_size, empty.location = "IMAGE", 2.0, (0.0, 3.0, 1.0)
empty.data = bpy.data.images.load(os.path.join(folder, "picture.png"))
scene.collection.objects.link(empty)

select(bpy.data.objects["scan"])
report["scan_result"] = list(bpy.ops.occnet.reconstruct())
report["first_click_seconds"] = time.perf_counter() - started
keep("scan", bpy.data.objects["scan.occnet"])
hello = addon.worker.lifecycle.BACKEND.hello
report["engine"], report["panel"] = hello.engine, addon.worker.lifecycle.BACKEND.summary()
select(empty)
report["picture_result"] = list(bpy.ops.occnet.reconstruct())
keep("picture", bpy.data.objects["picture.occnet"])

select(bpy.data.objects["other"])
bpy.ops.occnet.reconstruct()
select(bpy.data.objects["scan.occnet"], bpy.data.objects["other.occnet"])
report["blend_result"] = list(bpy.ops.occnet.blend())
blend = next(o for o in bpy.data.objects if o.occnet.kind == "BLEND")
for factor in (0.0, 0.5, 1.0):
    blend.occnet.factor = factor
    keep(f"blend_{factor}", blend)

select(bpy.data.objects["scan"])
scene.occnet.resolution = 512
source = addon.scene.gather.gather_object(bpy.data.objects["scan"], bpy.context.evaluated_depsgraph_get())
job = addon.scene.reconstruct.reconstruct_job(source, scene.occnet)
names = sorted(bpy.data.objects.keys())
addon.worker.jobs.JOBS.start(job)
deadline = time.monotonic() + 120
while job.stage != "evaluate" and time.monotonic() < deadline:
    addon.worker.jobs.JOBS.poll()
    time.sleep(0.01)
report["cancel_stage"], report["cancelled"] = job.stage, addon.worker.jobs.JOBS.cancel()
cancelled_at = time.monotonic()
while addon.worker.jobs.JOBS.queue and time.monotonic() < deadline:
    addon.worker.jobs.JOBS.poll()
    time.sleep(0.01)
report["cancel_seconds"] = time.monotonic() - cancelled_at
report["objects_kept"] = sorted(bpy.data.objects.keys()) == names
report["problems"] = list(addon.worker.jobs.JOBS.problems)

maps = [open(f"/proc/{pid}/maps").read() for pid in (os.getpid(), hello.pid)]
report["libtorch_mapped"] = any("libtorch" in text for text in maps)
report["torch_imported"] = "torch" in sys.modules
np.savez(os.path.join(folder, "results.npz"), **results)
print(REPORT + json.dumps(report))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see which libraries are mapped")
def test_stock_blender_reconstructs_blends_and_cancels_on_the_bundled_runtime(extension_zip, tmp_path):
    """Blender without torch: the add-on starts the built-in CPU runtime by itself, and its meshes are the
    PyTorch backend's on the same inputs, placed at the sources."""
    from fitting import ellipsoid_surface
    from PIL import Image

    from backend.api import load_model
    from backend.registry import default_model

    rng = np.random.default_rng(0)
    scan = ellipsoid_surface(np.array([0.5, 0.35, 0.25]), 3000, rng).astype(np.float32)
    other = ellipsoid_surface(np.array([0.3, 0.3, 0.5]), 3000, rng).astype(np.float32)
    np.save(tmp_path / "scan.npy", scan)
    np.save(tmp_path / "other.npy", other)
    yy, xx = np.mgrid[:96, :128]
    disc = ((yy - 48) ** 2 + (xx - 60) ** 2 < 900).astype(np.uint8)
    pixels = np.dstack([np.full((96, 128, 3), 180, np.uint8), 255 * disc])
    Image.fromarray(pixels).save(tmp_path / "picture.png")
    top_view = ImageInput(pixels, View.named("top", aspect=128 / 96))  # an unturned empty: seen from above
    report = run_in_stock_blender(STOCK_BLENDER_SESSION, [str(extension_zip), str(tmp_path)], tmp_path)
    print(f"\nfirst Reconstruct in a fresh stock Blender, install included: {report['first_click_seconds']:.1f} s")
    assert report["engine"] == "runtime" and report["panel"] == "Ready: Built-in CPU runtime"
    assert not report["libtorch_mapped"] and not report["torch_imported"]
    assert report["scan_result"] == report["picture_result"] == report["blend_result"] == ["FINISHED"]
    results = np.load(tmp_path / "results.npz")

    def mesh(name):
        return results[name + "_vertices"].astype(np.float64), results[name + "_faces"]

    # The same meshes as the PyTorch backend's, in the source's place (the image result: in the empty's frame).
    expected = {
        "scan": load_model(default_model("pointcloud"), "cpu").reconstruct(scan, resolution=64).mesh,
        "picture": load_model(default_model("image"), "cpu").reconstruct(top_view, resolution=64).mesh,
    }
    for name, place in (("scan", np.diag([1.0, 1, 1, 1])), ("picture", np.diag([2.0, 2, 2, 1]))):
        place[:3, 3] = {"scan": (2.0, -1.0, 0.5), "picture": (0.0, 3.0, 1.0)}[name]
        np.testing.assert_allclose(report[name + "_matrix"], place, atol=1e-6)
        same = solid_iou(mesh(name), (expected[name].vertices, expected[name].faces))
        print(f"{name}: IoU {same:.4f} with the PyTorch backend's mesh")
        assert same >= 0.99

    # The slider blends: the ends are the two shapes, the middle is neither.
    assert solid_iou(mesh("blend_0.0"), mesh("scan")) >= 0.95
    assert solid_iou(mesh("blend_0.5"), mesh("scan")) < 0.95
    assert not np.array_equal(results["blend_0.5_vertices"], results["blend_1.0_vertices"])

    assert report["cancel_stage"] == "evaluate" and report["cancelled"] == 1
    assert report["cancel_seconds"] < 10 and report["objects_kept"] and report["problems"] == []


def test_installed_extension_is_enabled_with_its_ui(addon):
    assert "bl_ext.user_default.occnet" in bpy.context.preferences.addons
    assert bpy.types.OCCNET_PT_main.bl_category == "OccNet"
    assert bpy.types.OCCNET_PT_main.bl_space_type == "VIEW_3D"
    for operator in ("reconstruct", "cancel", "blend", "bake", "reextract", "install_backend", "restart_backend"):
        assert getattr(bpy.ops.occnet, operator).get_rna_type().identifier == f"OCCNET_OT_{operator}"
    prefs = addon.ui.preferences.preferences()
    assert {"backend_python", "device", "models_dir"} <= set(prefs.bl_rna.properties.keys())
    items = [item[0] for item in addon.worker.lifecycle.BACKEND.model_items()]
    assert items[0] == "auto" and {"onet-pointcloud", "onet-image"} <= set(items)


DISABLE_ENABLE = """
import os, sys, tempfile
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
import bpy
bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.occnet"
bpy.ops.preferences.addon_disable(module=module)
lists = ("frame_change_post", "load_pre", "render_init", "render_complete", "render_cancel")
handlers = [h.__name__ for name in lists for h in getattr(bpy.app.handlers, name) if "occnet" in h.__module__]
def drawn():  # the Object menu's and the status bar's draw functions the add-on appended
    found = bpy.types.VIEW3D_MT_object._dyn_ui_initialize() + bpy.types.STATUSBAR_HT_header._dyn_ui_initialize()
    return [f.__name__ for f in found if "occnet" in getattr(f, "__module__", "")]
print("disabled:", hasattr(bpy.types.Scene, "occnet"), hasattr(bpy.types, "OCCNET_PT_main"), handlers, drawn())
bpy.ops.preferences.addon_enable(module=module)
print("enabled:", hasattr(bpy.types.Scene, "occnet"), hasattr(bpy.types, "OCCNET_PT_main"), drawn())
"""


def test_disable_removes_everything_and_enable_brings_it_back(extension_zip):
    done = subprocess.run(
        [sys.executable, "-c", DISABLE_ENABLE, str(extension_zip)], capture_output=True, text=True, timeout=120
    )
    assert "disabled: False False [] []" in done.stdout, done.stdout + done.stderr
    assert "enabled: True True ['object_menu', 'status_bar']" in done.stdout, done.stdout
