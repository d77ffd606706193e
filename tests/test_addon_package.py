"""The extension as a user gets it: one zip per platform that passes Blender's validator and carries that
platform's ONNX Runtime wheel, Blender's installer installs and enables it, the bundled runtime imports and runs
in Blender without torch, and a fresh Blender reconstructs on the first click without the add-on importing
torch."""

import hashlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy
import numpy as np
import pytest
from conftest import blender_ext, build_or_skip

import backend
import build

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


def test_each_platform_zip_carries_its_own_pinned_wheel_and_lists_it(platform_zip):
    platform, path = platform_zip
    with zipfile.ZipFile(path) as archive:
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        wheels = [name for name in archive.namelist() if name.endswith(".whl")]
        assert manifest["platforms"] == [platform]
        assert manifest["wheels"] == [f"./{name}" for name in wheels]
        (wheel,) = wheels
        filename, sha256 = build.WHEELS[platform]
        assert wheel == f"wheels/{filename}"
        assert hashlib.sha256(archive.read(wheel)).hexdigest() == sha256  # unmodified from the registry
    assert blender_ext().blender_platform_compatible_with_wheel_platform_from_filepath(platform, wheel)
    assert "-cp311-" in wheel and wheel.startswith("wheels/onnxruntime-")


def test_a_wheel_that_does_not_match_its_pin_is_refused(tmp_path, monkeypatch):
    """A changed file in the registry (or a wrong pin) stops the build instead of shipping other bytes."""
    filename, _ = build.WHEELS["windows-arm64"]  # the smallest download
    monkeypatch.setitem(build.WHEELS, "windows-arm64", (filename, "0" * 64))
    with pytest.raises(build.WheelUnavailable) as refused:
        build.fetch_wheel("windows-arm64", cache=tmp_path)
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
    assert {"__init__.py", "blender_manifest.toml", "occnet_blender/panels.py", "backend/worker.py"} <= names
    assert {"backend/weights/onet-pointcloud.safetensors", "backend/requirements.txt"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_same_sources_give_the_same_zip_bytes(extension_zip, tmp_path):
    platform = tomllib.loads(zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode())["platforms"][0]
    again = build.build(tmp_path, [platform])[platform]
    assert again.read_bytes() == extension_zip.read_bytes()


# Stock Blender has no torch and none of ONNX Runtime's declared dependencies but numpy; this venv has them all,
# onnxruntime included, so the script hides them: onnxruntime is found only where Blender installed the wheel.
BUNDLED_RUNTIME = """
import importlib.machinery, os, sys, tempfile
user = tempfile.mkdtemp()
os.environ["BLENDER_USER_RESOURCES"] = user
site_packages = os.path.join(user, "extensions", ".local", "lib", "python3.11", "site-packages")
HIDDEN = {"torch", "flatbuffers", "packaging", "google", "sympy", "coloredlogs", "onnx"}

class StockBlender:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HIDDEN:
            raise ImportError(f"{name} is not in stock Blender")
        if name == "onnxruntime":
            spec = importlib.machinery.PathFinder.find_spec(name, [site_packages])
            if spec is None:
                raise ImportError("onnxruntime is not where Blender installs the extension's wheels")
            return spec
        return None

sys.meta_path.insert(0, StockBlender())
import bpy, numpy as np
print(bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True))
import onnxruntime
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
session = onnxruntime.InferenceSession(open(sys.argv[2], "rb").read(), options, providers=["CPUExecutionProvider"])
x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], np.float32)
print("runtime", onnxruntime.__version__, onnxruntime.__file__.startswith(site_packages))
print("result", session.run(None, {"x": x})[0].round(4).tolist())
try:
    import torch
except ImportError:
    print("torch importable: False")
"""


def test_bundled_onnx_runtime_runs_in_blender_without_torch(extension_zip, tmp_path):
    """Blender's installer puts the zip's wheel where Blender imports it; a one-node graph runs on the CPU."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.array([[1, 0], [0, 1], [1, 1]], np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [weights],
    )
    model = tmp_path / "tiny.onnx"
    # onnx 1.23 writes IR version 14 by default; ONNX Runtime 1.31 reads up to 13, so say which.
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    model.write_bytes(proto.SerializeToString())
    done = subprocess.run(
        [sys.executable, "-c", BUNDLED_RUNTIME, str(extension_zip), str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    (wheel,) = tomllib.loads(zipfile.ZipFile(extension_zip).read("blender_manifest.toml").decode())["wheels"]
    version = wheel.split("-")[1]
    assert f"runtime {version} True" in done.stdout, done.stdout + done.stderr
    assert "result [[4.0, 5.0], [1.0, 2.5]]" in done.stdout
    assert "torch importable: False" in done.stdout


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
