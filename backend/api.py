"""The public API: load a model on an engine, encode an observation to a latent, extract a mesh, blend latents.

model = load_model("attention-pointcloud")                  # PyTorch; engine="runtime": the built-in CPU engine
result = model.reconstruct("scan.ply", resolution=128)      # any setting of backend.surface.options.ExtractOptions
result.mesh.save("scan_occnet.obj")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .engines import EngineName, load_engine
from .engines.base import Engine, Field, Reconstruction, extract, latent_field, reconstruct
from .inputs import Observation
from .inputs.network import as_observation
from .surface.field import CancelCheck, Progress
from .surface.latent import Latent, interpolate
from .surface.options import ExtractOptions
from .surface.pipeline import ExtractStats

__all__ = ["ExtractOptions", "Latent", "Model", "Reconstruction", "interpolate", "load_model"]


class Model:
    """One model on one engine, for scripts: files, arrays or observations in; settings as keywords."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def config(self) -> ModelConfig:
        return self.engine.config

    def encode(self, observation: Observation | str | Path | np.ndarray, seed: int = 0) -> Latent:
        return self.engine.encode(as_observation(observation, self.name, self.config.input_kind), seed)

    def field(self, latent: Latent) -> Field:
        """The occupancy logits of the latent's shape as a function of canonical points, in the engine's tensors."""
        return latent_field(self.engine, latent)

    def extract(
        self,
        latent: Latent,
        options: ExtractOptions | None = None,
        *,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
        stats: ExtractStats | None = None,
        **settings,
    ) -> Reconstruction:
        """The latent's mesh in its source's frame. `settings` (ExtractOptions' fields: resolution, threshold, ...)
        replace those of `options`; threshold None is the model's own."""
        mesh, stats = extract(self.engine, latent, _options(options, settings), progress, cancel, stats)
        return Reconstruction(mesh, latent, stats.as_dict())

    def reconstruct(
        self,
        observation: Observation | str | Path | np.ndarray,
        options: ExtractOptions | None = None,
        *,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
        **settings,
    ) -> Reconstruction:
        """Encode and extract, as `extract` takes its settings; the mesh takes the input's colours where it has them."""
        observation = as_observation(observation, self.name, self.config.input_kind)
        return reconstruct(self.engine, observation, _options(options, settings), progress, cancel)


def _options(options: ExtractOptions | None, settings: dict) -> ExtractOptions:
    return dataclasses.replace(options or ExtractOptions(), **settings)


def load_model(name_or_path: str | Path, device: str = "auto", engine: EngineName = "torch", threads: int = 0) -> Model:
    """A shipped model by name ('attention-pointcloud'), one in OCCNET_MODELS_PATH, or any checkpoint by path, on
    PyTorch (`device`: auto, cuda, mps, cpu) or the built-in CPU runtime (`threads` 0: as many as PyTorch takes)."""
    return Model(load_engine(name_or_path, engine, device, threads))
