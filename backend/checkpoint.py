"""One `.safetensors` file per model: tensors plus the config as JSON metadata. Nothing is unpickled."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .errors import ModelLoadError, OccNetError
from .models import OccupancyNetwork, build_model
from .outputs import atomic_write
from .weights_file import FORMAT, FORMAT_KEY, METADATA_KEY, read_config


def save_checkpoint(model: OccupancyNetwork, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write the model atomically: a crash mid-write never leaves a half file under the final name."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if broken := _non_finite(state):
        raise OccNetError(f"{path}: not written: tensor '{broken}' holds NaN or infinite values (a diverged training).")
    metadata = {METADATA_KEY: model.config.to_json(), FORMAT_KEY: FORMAT, **(extra or {})}
    with atomic_write(path) as partial:
        partial.write_bytes(save(state, metadata=metadata))  # an ordinary file: its mode follows the umask
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> OccupancyNetwork:
    """Rebuild the network from its config and load the weights, in eval mode."""
    path = Path(path)
    config = read_config(path)  # a missing or unreadable file is a ModelLoadError naming it
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
    if broken := _non_finite(state):
        raise ModelLoadError(
            f"{path}: tensor '{broken}' holds NaN or infinite values (written by a training that diverged); "
            "train it again with a lower --lr."
        )
    model = build_model(config)
    model.load_state_dict(state)
    return model.to(device).eval()


def _non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The first tensor holding NaN or infinity, by name."""
    return next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
