"""One `.safetensors` file per model: tensors plus the config as JSON metadata. Nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .config import CONFIG_VERSION, ModelConfig
from .errors import ModelLoadError
from .models import OccupancyNetwork, build_model
from .outputs import atomic_write

METADATA_KEY = "occnet_config"
FORMAT_KEY = "format"
FORMAT = "occnet-blender"

# Every size a config may give, wide enough for any network this project trains and narrow enough that no
# metadata makes torch allocate without bound (the weights' shapes are then checked against the file's header).
INT_RANGES = {
    "c_dim": (1, 4096),
    "decoder_hidden": (1, 4096),
    "decoder_blocks": (1, 64),
    "encoder_hidden": (1, 4096),
    "encoder_blocks": (1, 64),
    "image_size": (16, 1024),
    "voxel_resolution": (16, 256),
    "plane_resolution": (4, 512),
    "unet_depth": (1, 8),
    "unet_filters": (1, 512),
    "n_points": (1, 1_000_000),
}
FLOAT_RANGES = {"threshold": (0.0, 1.0), "image_background": (0.0, 1.0), "image_mean": (-10.0, 10.0)}


def save_checkpoint(model: OccupancyNetwork, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the model atomically: a crash mid-write never leaves a half file under the final name."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: model.config.to_json(), FORMAT_KEY: FORMAT, **(extra or {})}
    with atomic_write(path) as partial:
        partial.write_bytes(save(state, metadata=metadata))  # an ordinary file: its mode follows the umask
    return path


def read_config(path: str | Path) -> ModelConfig:
    """The config stored in a checkpoint, without loading its tensors."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable .safetensors file ({exc}). Re-download or re-train it.") from exc
    return _config_from_metadata(path, metadata)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> OccupancyNetwork:
    """Rebuild the network from its config and load the weights, in eval mode."""
    path = _existing(path)
    config = read_config(path)
    with torch.device("meta"):  # the shapes the config implies, without allocating them
        expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = set(f.keys())
            missing = sorted(set(expected) - keys)
            unexpected = sorted(keys - set(expected))
            if missing or unexpected:
                raise ModelLoadError(
                    f"{path}: weights do not match the architecture in its metadata "
                    f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                    f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}). "
                    "The file was written by a different model; re-export it."
                )
            for key in sorted(keys):
                shape = tuple(f.get_slice(key).get_shape())
                if shape != expected[key]:
                    raise ModelLoadError(
                        f"{path}: tensor '{key}' has shape {shape}, the config expects {expected[key]}. "
                        "The metadata does not describe these weights."
                    )
            state = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: the file is damaged or truncated ({exc}). Re-download or re-train it.") from exc
    model = build_model(config)
    model.load_state_dict(state)
    return model.to(device).eval()


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file. Check the path, or run 'python -m backend models'.")
    return path


def _config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    if METADATA_KEY not in metadata:
        raise ModelLoadError(
            f"{path}: a .safetensors file without an OccNet config in its metadata; "
            "it was not written by this project's training code."
        )
    try:
        fields = json.loads(metadata[METADATA_KEY])
        version = fields.get("version")
        if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
            raise ModelLoadError(
                f"{path}: checkpoint format version {version}, this backend reads versions 1 to {CONFIG_VERSION}. "
                "Update the add-on or re-export the model."
            )
        _check_fields(fields)
        return ModelConfig.from_json(metadata[METADATA_KEY])
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: the config in its metadata is invalid ({exc}).") from exc


def _check_fields(fields: dict) -> None:
    """Types and ranges of the stored config, before anything is built from it (ValueError names the field)."""

    def whole(name: str, value: object, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
        return value

    def real(name: str, value: object, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"{name} must be a number from {low} to {high}, not {value!r}")
        return float(value)

    for name, (low, high) in INT_RANGES.items():
        if name in fields:
            whole(name, fields[name], low, high)
    for name, (low, high) in FLOAT_RANGES.items():
        if name in fields:
            real(name, fields[name], low, high)
    if "threshold" in fields and fields["threshold"] in (0, 1):
        raise ValueError(f"threshold must lie strictly between 0 and 1, not {fields['threshold']!r}")
    if "image_std" in fields and not real("image_std", fields["image_std"], 0.0, 10.0) > 0:
        raise ValueError("image_std must be more than 0")
    widths = fields.get("image_widths", [1])
    if not isinstance(widths, list) or not 1 <= len(widths) <= 8:
        raise ValueError(f"image_widths must be a list of 1 to 8 widths, not {widths!r}")
    for width in widths:
        whole("image_widths", width, 1, 2048)
    if fields.get("voxel_resolution", 16) % 16:
        raise ValueError(
            f"voxel_resolution must be a multiple of 16 (halved four times), not {fields['voxel_resolution']}"
        )
    depth = fields.get("unet_depth", 1)
    if fields.get("plane_resolution", 64) % 2 ** (depth - 1):
        raise ValueError(f"plane_resolution must be divisible by {2 ** (depth - 1)} (unet_depth {depth})")
    for name in ("training", "evaluation"):
        if not isinstance(fields.get(name, {}), dict):
            raise ValueError(f"{name} must be a mapping, not {fields[name]!r}")
    for name in ("input_kind", "architecture"):
        if name in fields and not isinstance(fields[name], str):
            raise ValueError(f"{name} must be a string, not {fields[name]!r}")
