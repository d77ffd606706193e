"""The built-in CPU engine: the shipped models' ONNX graphs on ONNX Runtime, neighbour search and extraction on
numpy. It needs only what Blender ships and the extension's zip bundles (never torch, SciPy or scikit-image), so
Reconstruct works on the first click; its latents are the PyTorch engine's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..inputs import Observation
from ..inputs.attention import PointAttentionInput
from ..inputs.network import network_input
from ..inputs.views import PreparedViews
from ..registry import ModelEntry
from ..runtime.graphs import has_graphs
from ..runtime.model import RuntimeModel, load_runtime_model
from ..surface.field import POINTS_PER_BATCH, CancelCheck, Evaluator, Logits, Progress
from ..surface.latent import Latent
from ..surface.pipeline import Stages
from .base import encode_cloud, with_found_sheets


class RuntimeEngine:
    device = "cpu"

    def __init__(self, model: RuntimeModel) -> None:
        self.model = model
        self.name = model.name
        self.stages = Stages()

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def encode(self, observation: Observation, seed: int = 0) -> Latent:
        prepared, frame, source = network_input(observation, self.config, seed)
        if isinstance(prepared, PointAttentionInput):
            code, source = encode_cloud(self, prepared, self.model.encode)
        else:
            code = self.model.encode(prepared)
        if isinstance(prepared, PreparedViews):
            code = with_found_sheets(self, code)
        blends_by_field = isinstance(prepared, PointAttentionInput | PreparedViews)
        return Latent(code, self.name, frame, blends_by_field=blends_by_field, source=source)

    def field(self, code: np.ndarray) -> Logits:
        return self.model.field(code)

    def evaluator(self, field: Logits, progress: Progress | None, cancel: CancelCheck | None) -> Evaluator:
        return Evaluator(field, POINTS_PER_BATCH, progress, cancel)


def load_runtime_engine(name_or_path: str | Path, threads: int = 0) -> RuntimeEngine:
    """A shipped model by name, one in OCCNET_MODELS_PATH, or a checkpoint by path, with its ONNX graphs beside it;
    `threads` 0 takes as many as PyTorch would."""
    return RuntimeEngine(load_runtime_model(name_or_path, threads))


class RuntimeHost:
    """A runtime worker: the models whose graphs lie beside them, on the CPU, in `threads` threads."""

    def describe(self, device: str) -> tuple[None, str, list[str]]:
        return None, "cpu", ["cpu"]

    def runs(self, entry: ModelEntry) -> bool:
        return has_graphs(entry.path, entry.config.architecture)

    def load(self, name: str | Path, device: str, threads: int) -> RuntimeEngine:
        return load_runtime_engine(name, threads)

    def out_of_memory(self, exc: BaseException) -> bool:
        return False

    def after_job(self) -> None:
        """Nothing is cached between jobs beyond the loaded models."""
