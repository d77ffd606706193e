import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fitting import fit_tiny_pointcloud_model  # noqa: E402

from backend.checkpoint import save_checkpoint  # noqa: E402
from backend.config import ModelConfig  # noqa: E402
from backend.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A point-cloud model fitted to ellipsoids in ~20 s; held-out IoU around 0.9."""
    return fit_tiny_pointcloud_model(tmp_path_factory.mktemp("models") / "tiny-pointcloud.safetensors")


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
