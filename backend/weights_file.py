"""A checkpoint's header and config without torch: the `.safetensors` format read with the standard library.

The format: 8 bytes little-endian header length, a JSON header (each tensor's dtype, shape and byte range in the
data that follows; `__metadata__` holds string metadata, here the model config), then the raw tensor bytes.
Both engines read configs here: the PyTorch backend (through `checkpoint`) and the bundled runtime, which has
no torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .config import CONFIG_VERSION, ModelConfig
from .errors import ModelLoadError

METADATA_KEY = "occnet_config"
FORMAT_KEY = "format"
FORMAT = "occnet-blender"
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit

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
FLOAT_RANGES = {
    "threshold": (0.0, 1.0),
    "views_shift": (-10.0, 10.0),
    "image_background": (0.0, 1.0),
    "image_mean": (-10.0, 10.0),
}


def read_header(path: str | Path) -> tuple[dict, bytes]:
    """The parsed header and its raw bytes (length prefix included); the data offsets count from after them."""
    path = _existing(path)
    try:
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is beyond {MAX_HEADER_BYTES}")
            text = f.read(length)
            if len(text) < length:
                raise ValueError("the header is cut short")
            header = json.loads(text.decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            f.seek(0, 2)
            size = f.tell()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable .safetensors file ({exc}). Re-download or re-train it.") from exc
    end = max((_data_end(v) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end > size:
        raise ModelLoadError(f"{path}: the file is truncated ({size} bytes, its header lists {8 + length + end}).")
    return header, prefix + text


def read_config(path: str | Path) -> ModelConfig:
    """The config stored in a checkpoint, without loading its tensors."""
    header, _ = read_header(path)
    metadata = header.get("__metadata__") or {}
    return config_from_metadata(Path(path), metadata if isinstance(metadata, dict) else {})


def config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    """The checked config of a checkpoint's metadata; ModelLoadError (naming the file and the field) if invalid."""
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


def _data_end(entry: object) -> int:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        return 0
    return offsets[1]


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file. Check the path, or run 'python -m backend models'.")
    return path


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
