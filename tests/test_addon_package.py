"""The extension as a user gets it: the zip passes Blender's validator, Blender's installer installs and
enables it, and a fresh Blender reconstructs on the first click without the add-on importing torch."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy

import backend

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core/bl_pkg/cli/blender_ext.py"


def test_zip_passes_blenders_validator(extension_zip):
    done = subprocess.run([sys.executable, str(VALIDATOR), "validate", str(extension_zip)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert extension_zip.name == f"occnet-{backend.__version__}.zip"


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
    assert {"__init__.py", "blender_manifest.toml", "occnet_blender/panels.py", "backend/worker.py"} <= names
    assert {"backend/weights/onet-pointcloud.safetensors", "backend/requirements.txt"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_extension_is_enabled_with_its_ui(addon):
    assert "bl_ext.user_default.occnet" in bpy.context.preferences.addons
    assert bpy.types.OCCNET_PT_main.bl_category == "OccNet"
    assert bpy.types.OCCNET_PT_main.bl_space_type == "VIEW_3D"
    for operator in ("reconstruct", "cancel", "blend", "bake", "install_backend", "restart_backend"):
        assert getattr(bpy.ops.occnet, operator).get_rna_type().identifier == f"OCCNET_OT_{operator}"
    prefs = addon.preferences.preferences()
    assert {"backend_python", "device", "models_dir"} <= set(prefs.bl_rna.properties.keys())
    items = [item[0] for item in addon.connection.BACKEND.model_items()]
    assert items[0] == "auto" and {"onet-pointcloud", "onet-image"} <= set(items)


FIRST_CLICK = """
import os, sys, tempfile
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
import bpy, numpy as np
bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
points = np.random.default_rng(0).normal(size=(2000, 3))
points = 0.4 * points / np.linalg.norm(points, axis=1, keepdims=True)
mesh = bpy.data.meshes.new("scan")
mesh.vertices.add(len(points))
mesh.vertices.foreach_set("co", points.astype(np.float32).ravel())
scan = bpy.data.objects.new("scan", mesh)
bpy.context.scene.collection.objects.link(scan)
bpy.context.view_layer.update()
scan.select_set(True)
bpy.context.scene.occnet.resolution = 32
print("result", bpy.ops.occnet.reconstruct(), len(bpy.data.objects["scan.occnet"].data.polygons) > 0)
print("torch imported by the add-on:", "torch" in sys.modules)
"""


def test_first_click_in_a_fresh_blender_without_torch_in_blender(extension_zip):
    done = subprocess.run(
        [sys.executable, "-c", FIRST_CLICK, str(extension_zip)], capture_output=True, text=True, timeout=300
    )
    assert "result {'FINISHED'} True" in done.stdout, done.stdout + done.stderr
    assert "torch imported by the add-on: False" in done.stdout


DISABLE_ENABLE = """
import os, sys, tempfile
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp()
import bpy
bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.occnet"
bpy.ops.preferences.addon_disable(module=module)
lists = ("frame_change_post", "load_pre", "render_init", "render_complete", "render_cancel")
handlers = [h.__name__ for name in lists for h in getattr(bpy.app.handlers, name) if "occnet" in h.__module__]
print("disabled:", hasattr(bpy.types.Scene, "occnet"), hasattr(bpy.types, "OCCNET_PT_main"), handlers)
bpy.ops.preferences.addon_enable(module=module)
print("enabled:", hasattr(bpy.types.Scene, "occnet"), hasattr(bpy.types, "OCCNET_PT_main"))
"""


def test_disable_removes_everything_and_enable_brings_it_back(extension_zip):
    done = subprocess.run(
        [sys.executable, "-c", DISABLE_ENABLE, str(extension_zip)], capture_output=True, text=True, timeout=120
    )
    assert "disabled: False False []" in done.stdout, done.stdout + done.stderr
    assert "enabled: True True" in done.stdout
