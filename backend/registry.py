"""Where models are found: the shipped `weights/` folder, then folders the user adds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import ModelConfig
from .errors import ModelLoadError
from .weights_file import read_config

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODELS_PATH_ENV = "OCCNET_MODELS_PATH"  # folders of extra models (os.pathsep separated); the add-on sets it
DEFAULT_MODELS = {"pointcloud": "attention-pointcloud", "image": "views-image"}  # no voxel model ships


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    config: ModelConfig

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6


def search_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    """Shipped weights first, then OCCNET_MODELS_PATH (os.pathsep separated), then `extra`."""
    env = [Path(p) for p in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep) if p]
    return [WEIGHTS_DIR, *env, *(Path(p) for p in extra or [])]


def list_models(extra: list[str | Path] | None = None) -> list[ModelEntry]:
    """Every readable checkpoint (the first of each name); `scan_models` also says what is wrong with the rest."""
    return scan_models(extra)[0]


def scan_models(extra: list[str | Path] | None = None) -> tuple[list[ModelEntry], list[tuple[Path, str]]]:
    """The readable checkpoints, and the files in the model folders that cannot load, each with why."""
    entries: dict[str, ModelEntry] = {}
    broken = []
    for folder in search_dirs(extra):
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                entries.setdefault(path.stem, ModelEntry(path.stem, path, read_config(path)))
            except ModelLoadError as exc:
                broken.append((path, str(exc)))
    return list(entries.values()), broken


def find_model(name_or_path: str | Path, extra: list[str | Path] | None = None) -> Path:
    """A path to a checkpoint, given a model name or a path to a file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or candidate.is_file():
        if not candidate.is_file():
            raise ModelLoadError(f"{candidate}: no such model file.")
        return candidate
    for folder in search_dirs(extra):
        path = folder / f"{name_or_path}.safetensors"
        if path.is_file():
            return path
    available = ", ".join(e.name for e in list_models(extra)) or "none installed"
    raise ModelLoadError(
        f"No model named '{name_or_path}' (available: {available}). "
        "Pass a path to a .safetensors file or add its folder to OCCNET_MODELS_PATH."
    )


def is_shipped(path: str | Path) -> bool:
    """A file in the shipped weights folder: part of the install, never written by any command."""
    return Path(path).resolve().parent == WEIGHTS_DIR


def default_model(input_kind: str) -> str:
    if input_kind not in DEFAULT_MODELS:
        raise ModelLoadError(
            f"No shipped model reconstructs from {input_kind}: train one ('python -m backend train --input "
            f"{input_kind}') and name it with --model."
        )
    return DEFAULT_MODELS[input_kind]
