import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fitting import fit_tiny_attention_model, fit_tiny_pointcloud_model, fit_tiny_triplane_model  # noqa: E402
from stock_blender import blender_ext  # noqa: E402

from backend.checkpoint import save_checkpoint  # noqa: E402
from backend.config import ModelConfig  # noqa: E402
from backend.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A point-cloud model fitted to ellipsoids in ~20 s; held-out IoU around 0.9."""
    return fit_tiny_pointcloud_model(tmp_path_factory.mktemp("models") / "tiny-pointcloud.safetensors")


@pytest.fixture(scope="session")
def tiny_triplane_model(tmp_path_factory) -> Path:
    """A feature-plane model fitted to ellipsoids, latent (3, 32, 64, 64) as the shipped small triplane model's.

    In a folder of its own, so it can serve as the add-on's extra models folder."""
    return fit_tiny_triplane_model(tmp_path_factory.mktemp("triplane-models") / "tiny-triplane.safetensors")


@pytest.fixture(scope="session")
def tiny_attention_model(tmp_path_factory) -> Path:
    """A point-attention model fitted to ellipsoids, with its ONNX graphs beside it (both engines run it)."""
    from backend.export_onnx import export_model

    path = fit_tiny_attention_model(tmp_path_factory.mktemp("attention-models") / "tiny-attention.safetensors")
    export_model(path)
    return path


@pytest.fixture(scope="session")
def untrained_image_model(tmp_path_factory) -> Path:
    """An image model with random weights: enough to exercise image input handling, not quality."""
    config = ModelConfig(
        input_kind="image",
        c_dim=32,
        decoder_hidden=32,
        decoder_blocks=2,
        image_size=32,
        image_widths=(8, 16, 32, 64),
        threshold=0.5,
    )
    return save_checkpoint(build_model(config).eval(), tmp_path_factory.mktemp("models") / "tiny-image.safetensors")


def build_or_skip(out_dir: Path, platform: str) -> Path:
    """build.py's zip for `platform`; skips (with the reason) only when its pinned wheel cannot be had."""
    import build

    try:
        return build.build(out_dir, [platform])[platform]
    except build.WheelUnavailable as error:
        pytest.skip(f"no {platform} extension zip without its pinned wheels: {error}")


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    """The zip Blender's installer takes on this machine: this platform's, with its wheels."""
    import build

    platform = blender_ext().platform_from_this_system()
    if platform not in build.WHEELS:
        pytest.skip(f"build.py makes no zip for {platform} (ONNX Runtime has no wheel pinned for it)")
    return build_or_skip(tmp_path_factory.mktemp("dist"), platform)


def pytest_configure(config):
    """Blender reads its user folder when bpy is first imported: a temporary one, before any test imports bpy."""
    config.blender_user = tempfile.mkdtemp(prefix="occnet-blender-user-")
    os.environ["BLENDER_USER_RESOURCES"] = config.blender_user


def pytest_unconfigure(config):
    shutil.rmtree(config.blender_user, ignore_errors=True)


@pytest.fixture(scope="session")
def addon(extension_zip, pytestconfig):
    """Real Blender (bpy 5.0.1) with the built extension installed by Blender's own installer into a
    temporary user folder; returns the add-on package (`bl_ext.user_default.occnet.occnet_blender`)."""
    import importlib

    import bpy

    assert bpy.utils.user_resource("EXTENSIONS").startswith(pytestconfig.blender_user)
    result = bpy.ops.extensions.package_install_files(
        filepath=str(extension_zip), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    package = importlib.import_module("bl_ext.user_default.occnet.occnet_blender")
    yield package
    package.worker.lifecycle.BACKEND.stop()


@pytest.fixture
def blender(addon):
    """An empty scene with default OccNet settings; the backend worker stays up between tests."""
    import bpy

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)
    scene = bpy.context.scene
    for name in ("model", "resolution", "use_model_threshold", "threshold", "refine_steps", "faces", "smooth"):
        scene.occnet.property_unset(name)
    scene.occnet.resolution = 64
    scene.frame_set(1)
    addon.worker.jobs.JOBS.problems.clear()
    return bpy
