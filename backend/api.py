"""The public API: load a model, encode an observation to a latent, extract a mesh, blend latents.

model = load_model("attention-pointcloud")
result = model.reconstruct("scan.ply", resolution=128)
result.mesh.save("scan_occnet.obj")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .colors import with_input_colors
from .config import ModelConfig, PointLatentLayout
from .device import resolve_device
from .extract import ExtractOptions, ExtractStats, extract_mesh
from .extract.evaluate import CancelCheck, Field, Progress
from .inputs import Observation
from .inputs.attention import PointAttentionInput
from .inputs.neighbours import QueryNeighbours
from .inputs.network import as_observation, network_input
from .latent import Latent, check_latent, interpolate
from .mesh import Mesh
from .models import OccupancyNetwork
from .models.occnet import PointLatent
from .protocol import MIN_PIECE
from .registry import find_model

__all__ = ["Latent", "Model", "Reconstruction", "interpolate", "load_model"]


@dataclass
class Reconstruction:
    mesh: Mesh  # in the source's own frame
    latent: Latent
    stats: dict


class Model:
    """A loaded Occupancy Network on a device, in eval mode (batch norm uses its running statistics)."""

    def __init__(self, network: OccupancyNetwork, name: str, device: torch.device) -> None:
        self.network = network.eval()
        self.name = name
        self.device = device

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @torch.no_grad()
    def encode(self, observation: Observation | str | Path | np.ndarray, seed: int = 0) -> Latent:
        observation = as_observation(observation, self.name, self.config.input_kind)
        prepared, frame = network_input(observation, self.config, seed)
        if isinstance(prepared, PointAttentionInput):
            arrays = {k: torch.as_tensor(v)[None].to(self.device) for k, v in prepared.arrays().items()}
            encoded = self.network.encode(arrays)
            planes, features = (t[0].float().cpu().numpy() for t in (encoded.planes, encoded.features))
            code = PointLatentLayout.of(self.config).join(planes, prepared.unit, prepared.points, features)
            return Latent(code, self.name, frame, blends_by_field=True, source=prepared.summary())
        code = self.network.encode(torch.from_numpy(prepared)[None].to(self.device))[0]
        return Latent(code.float().cpu().numpy(), self.name, frame)

    def field(self, latent: Latent) -> Field:
        """The occupancy logits of this latent's shape, as a function of canonical points: for a blend of
        fields, the weighted sum of its parts'."""
        check_latent(latent, self.name, self.config)
        if not latent.parts:
            return self._field(latent.code)
        fields = [(weight, self._field(part.code)) for weight, part in latent.parts]
        return lambda points: sum(weight * field(points) for weight, field in fields)

    def _field(self, code: np.ndarray) -> Field:
        if self.config.architecture != "attention":
            code = torch.from_numpy(code.reshape(self.config.latent_shape)).float().to(self.device)[None]
            return lambda points: self.network.decode(points[None], code)[0]
        planes, unit, points, features = PointLatentLayout.of(self.config).split(code)
        search = QueryNeighbours(points, unit, self.config.neighbours)
        planes, points, features = (
            torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (planes, points, features)
        )
        latent = PointLatent(
            *(t.to(self.device) for t in (planes[None], torch.tensor([unit]), points[None], features[None]))
        )

        def logits(queries: torch.Tensor) -> torch.Tensor:
            found = search(queries.detach().cpu().numpy())
            neighbours = [tuple(torch.from_numpy(a)[None].to(self.device) for a in level) for level in found]
            return self.network.decode(queries[None].float(), latent, neighbours)[0]

        return logits

    def extract(
        self,
        latent: Latent,
        resolution: int = 128,
        threshold: float | None = None,
        refine_steps: int = 0,
        faces: int = 0,
        normals: bool = True,
        min_piece: float = MIN_PIECE,
        use_mise: bool = True,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
        stats: ExtractStats | None = None,
    ) -> Reconstruction:
        options = ExtractOptions(
            resolution=resolution,
            threshold=self.config.threshold if threshold is None else threshold,
            use_mise=use_mise,
            refine_steps=refine_steps,
            faces=faces,
            normals=normals,
            normals_from_mesh=self.config.mesh_normals,
            min_piece=min_piece,
        )
        mesh, stats = extract_mesh(self.field(latent), options, self.device, progress, cancel, stats)
        return Reconstruction(mesh.transformed(latent.frame.as_array(), latent.frame.scale), latent, stats.as_dict())

    def reconstruct(
        self, observation: Observation | str | Path | np.ndarray, progress: Progress | None = None, **options
    ) -> Reconstruction:
        start = time.perf_counter()
        if progress is not None:
            progress("encode", 0.0)
        observation = as_observation(observation, self.name, self.config.input_kind)
        latent = self.encode(observation)
        stats = ExtractStats(seconds={"encode": time.perf_counter() - start}, source=latent.source)
        result = self.extract(latent, progress=progress, stats=stats, **options)
        result.mesh = with_input_colors(result.mesh, observation, latent.frame)
        return result


def load_model(name_or_path: str | Path, device: str | torch.device = "auto") -> Model:
    """A shipped model by name ('triplane-pointcloud'), or any checkpoint by path."""
    path = find_model(name_or_path)
    resolved = resolve_device(device)
    return Model(load_checkpoint(path, resolved), path.stem, resolved)
