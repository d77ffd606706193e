"""The PyTorch engine: a checkpoint's network on a device (CUDA, MPS or the CPU), in eval mode (batch norm uses its
running statistics). The engine that trains, refines by gradients and decimates to a face budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..config import ModelConfig, PointLatentLayout, ViewLatentLayout
from ..device import describe_devices, points_per_batch, resolve_device
from ..inputs import Observation
from ..inputs.attention import PointAttentionInput
from ..inputs.neighbours import QueryNeighbours
from ..inputs.network import network_input
from ..inputs.views import PreparedViews
from ..models import OccupancyNetwork
from ..models.occnet import PointLatent, ViewLatent
from ..registry import ModelEntry, find_model
from ..surface.field import CancelCheck, Progress
from ..surface.latent import Latent
from ..surface.silhouettes import first_sheets
from .base import encode_cloud, with_found_sheets
from .torch_stages import TorchEvaluator, TorchField, TorchStages

VIEW_ARRAYS = ("images", "masks", "affines")  # what the views network's encoder reads of `PreparedViews`


class TorchEngine:
    def __init__(self, network: OccupancyNetwork, name: str, device: torch.device) -> None:
        self.network = network.eval()
        self.name = name
        self.device = device
        self.stages = TorchStages()

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @torch.no_grad()
    def encode(self, observation: Observation, seed: int = 0) -> Latent:
        prepared, frame, source = network_input(observation, self.config, seed)
        if isinstance(prepared, PointAttentionInput):
            code, source = encode_cloud(self, prepared, self._encode_points)
            return Latent(code, self.name, frame, blends_by_field=True, source=source)
        if isinstance(prepared, PreparedViews):
            arrays = {k: torch.from_numpy(getattr(prepared, k))[None].to(self.device) for k in VIEW_ARRAYS}
            judged = self.config.thickness_width and len(prepared.masks) == 1
            thickness = self.network.thickness(arrays["images"][0]).float().cpu().numpy() if judged else None
            sheets = first_sheets(prepared.masks, thickness)
            arrays["sheets"] = torch.from_numpy(sheets)[None].to(self.device)
            features = self.network.encode(arrays).features[0].float().cpu().numpy()
            code = ViewLatentLayout.of(self.config).join(prepared.affines, features, prepared.masks, sheets)
            return Latent(with_found_sheets(self, code), self.name, frame, blends_by_field=True, source=source)
        code = self.network.encode(torch.from_numpy(prepared)[None].to(self.device))[0]
        return Latent(code.float().cpu().numpy(), self.name, frame, source=source)

    def _encode_points(self, prepared: PointAttentionInput) -> np.ndarray:
        """A point-attention code of a prepared cloud (called within `encode`, without gradients)."""
        arrays = {k: torch.as_tensor(v)[None].to(self.device) for k, v in prepared.arrays().items()}
        encoded = self.network.encode(arrays)
        planes, features = (t[0].float().cpu().numpy() for t in (encoded.planes, encoded.features))
        return PointLatentLayout.of(self.config).join(planes, prepared.unit, prepared.points, features)

    def field(self, code: np.ndarray) -> TorchField:
        code = np.asarray(code, dtype=np.float32)
        if self.config.architecture == "views":
            arrays = ViewLatentLayout.of(self.config).split(code)
            affines, features, masks, sheets = (
                torch.from_numpy(np.ascontiguousarray(a))[None].to(self.device) for a in arrays
            )
            latent = ViewLatent(features, masks, sheets, affines)
            return lambda points: self.network.decode(points[None].float(), latent)[0]
        if self.config.architecture != "attention":
            code = torch.from_numpy(code.reshape(self.config.latent_shape)).to(self.device)[None]
            return lambda points: self.network.decode(points[None], code)[0]
        planes, unit, points, features = PointLatentLayout.of(self.config).split(code)
        search = QueryNeighbours(points, unit, self.config.neighbours)
        planes, points, features = (
            torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (planes, points, features)
        )
        latent = PointLatent(
            *(t.to(self.device) for t in (planes[None], torch.tensor([unit]), points[None], features[None]))
        )
        with torch.no_grad():  # what each point offers its queries, once rather than batch after batch
            latent.terms = self.network.point_terms(latent.features)

        def logits(queries: torch.Tensor) -> torch.Tensor:
            found = search(queries.detach().cpu().numpy())
            neighbours = [tuple(torch.from_numpy(a)[None].to(self.device) for a in level) for level in found]
            return self.network.decode(queries[None].float(), latent, neighbours)[0]

        return logits

    def evaluator(self, field: TorchField, progress: Progress | None, cancel: CancelCheck | None) -> TorchEvaluator:
        return TorchEvaluator(field, self.device, points_per_batch(self.device), progress, cancel)


def load_torch_engine(name_or_path: str | Path, device: str | torch.device = "auto") -> TorchEngine:
    """A shipped model by name ('attention-pointcloud'), one in OCCNET_MODELS_PATH, or a checkpoint by path."""
    path = find_model(name_or_path)
    resolved = resolve_device(device)
    return TorchEngine(load_checkpoint(path, resolved), path.stem, resolved)


class TorchHost:
    """A PyTorch worker: any model, on the device the add-on asked for."""

    def describe(self, device: str) -> tuple[str, str, list[str]]:
        return torch.__version__, str(resolve_device(device)), describe_devices()

    def runs(self, entry: ModelEntry) -> bool:
        return True

    def load(self, name: str | Path, device: str, threads: int) -> TorchEngine:
        return load_torch_engine(name, device)

    def out_of_memory(self, exc: BaseException) -> bool:
        # torch.OutOfMemoryError is PyTorch 2.5+; torch.cuda.OutOfMemoryError (its base there) is older than 2.1
        return isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))

    def after_job(self) -> None:
        """Hand the GPU memory PyTorch keeps cached back, so other programs (and Blender) can use it."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
