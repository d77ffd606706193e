"""One `.safetensors` file per model: tensors plus the config as JSON metadata. Nothing is unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import CONFIG_VERSION, ModelConfig
from .errors import ModelLoadError
from .models import OccupancyNetwork, build_model
from .outputs import atomic_write

METADATA_KEY = "occnet_config"
FORMAT_KEY = "format"
FORMAT = "occnet-blender"


def save_checkpoint(model: OccupancyNetwork, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the model atomically: a crash mid-write never leaves a half file under the final name."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {METADATA_KEY: model.config.to_json(), FORMAT_KEY: FORMAT, **(extra or {})}
    with atomic_write(path) as partial:
        save_file(state, str(partial), metadata=metadata)
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
    model = build_model(config)
    expected = model.state_dict()
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
            state = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: the file is damaged or truncated ({exc}). Re-download or re-train it.") from exc
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ModelLoadError(
                f"{path}: tensor '{key}' has shape {tuple(tensor.shape)}, the config expects "
                f"{tuple(expected[key].shape)}. The metadata does not describe these weights."
            )
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
        version = json.loads(metadata[METADATA_KEY]).get("version")
        if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
            raise ModelLoadError(
                f"{path}: checkpoint format version {version}, this backend reads versions 1 to {CONFIG_VERSION}. "
                "Update the add-on or re-export the model."
            )
        return ModelConfig.from_json(metadata[METADATA_KEY])
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: the config in its metadata is invalid ({exc}).") from exc
