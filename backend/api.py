"""The public API: load a model, encode an observation to a latent, extract a mesh, blend latents.

model = load_model("triplane-pointcloud")
result = model.reconstruct("scan.ply", resolution=128)
result.mesh.save("scan_occnet.obj")
"""

from __future__ import annotations

import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .config import ModelConfig
from .device import resolve_device
from .errors import InputError
from .extract import ExtractOptions, ExtractStats, extract_mesh
from .extract.evaluate import CancelCheck, Field, Progress
from .inputs import Frame, ImageInput, Observation, PointCloudInput, VoxelInput, load_observation
from .inputs.image import prepare_image
from .inputs.pointcloud import normalize_points
from .mesh import Mesh
from .models import OccupancyNetwork
from .outputs import atomic_write
from .registry import find_model

LATENT_MARKER = "occnet_latent"


@dataclass
class Latent:
    """A shape as the network sees it: the code, the model that made it, and where the source was."""

    code: np.ndarray
    model: str
    frame: Frame = field(default_factory=Frame)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        with atomic_write(path) as partial:
            np.savez(
                partial,
                **{LATENT_MARKER: np.int32(1)},
                code=self.code.astype(np.float32),
                model=np.str_(self.model),
                center=np.asarray(self.frame.center, np.float64),
                scale=np.float64(self.frame.scale),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Latent:
        """A latent saved with `save`; a damaged or incomplete file is an InputError that says so."""
        data = _read_npz(path, (LATENT_MARKER, *_LATENT_KEYS))
        if LATENT_MARKER not in data:
            raise InputError(f"{path}: not a saved latent (write one with 'reconstruct --save-latent').")
        missing = [key for key in _LATENT_KEYS if key not in data]
        problem = f"it lacks {', '.join(repr(k) for k in missing)}" if missing else _latent_problem(data)
        if problem:
            raise InputError(
                f"{path}: not a usable latent ({problem}). Save it again with 'reconstruct --save-latent'."
            )
        frame = Frame.of(data["center"], data["scale"])
        return cls(data["code"].astype(np.float32), str(data["model"]), frame)

    @staticmethod
    def is_latent_file(path: str | Path) -> bool:
        path = Path(path)
        return path.suffix.lower() == ".npz" and path.is_file() and LATENT_MARKER in _read_npz(path, (LATENT_MARKER,))


_LATENT_KEYS = ("code", "model", "center", "scale")


def _read_npz(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Those of `keys` that an .npz archive holds; a truncated or damaged one is an InputError, not a traceback."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys if key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(
            f"{path}: the .npz file is damaged or truncated ({exc}). Write it again "
            "(a latent with 'reconstruct --save-latent')."
        ) from exc


def _latent_problem(data: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a saved latent's values, in words, or None."""
    code, model, center, scale = (data[key] for key in _LATENT_KEYS)
    if code.dtype.kind not in "fiu" or code.size == 0 or not np.isfinite(code).all():
        return "its 'code' is not a list of finite numbers"
    if model.dtype.kind != "U" or model.ndim != 0 or not str(model):
        return "its 'model' is not a model name"
    if center.dtype.kind not in "fiu" or center.size != 3 or not np.isfinite(center).all():
        return "its 'center' is not three finite numbers"
    if scale.dtype.kind not in "fiu" or scale.size != 1 or not np.isfinite(scale).all() or float(scale.ravel()[0]) <= 0:
        return "its 'scale' is not a positive number"
    return None


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
        observation = self._as_observation(observation)
        config = self.config
        frame = Frame()
        if isinstance(observation, PointCloudInput):
            thin = config.architecture == "triplane"
            points, frame, _ = normalize_points(observation.points, config.n_points, seed, thin=thin)
            batch = torch.from_numpy(points)[None]
        elif isinstance(observation, ImageInput):
            image = prepare_image(
                observation.pixels, config.image_size, config.image_background, config.image_mean, config.image_std
            )
            batch = torch.from_numpy(image)[None]
        else:
            batch = torch.from_numpy(_prepare_voxels(observation.grid, config.voxel_resolution))[None]
        code = self.network.encode(batch.to(self.device))[0]
        return Latent(code.float().cpu().numpy(), self.name, frame)

    def field(self, latent: Latent) -> Field:
        """The occupancy logits of this latent's shape, as a function of canonical points."""
        self._check_latent(latent)
        code = torch.from_numpy(latent.code.reshape(self.config.latent_shape)).float().to(self.device)[None]
        return lambda points: self.network.decode(points[None], code)[0]

    def extract(
        self,
        latent: Latent,
        resolution: int = 128,
        threshold: float | None = None,
        refine_steps: int = 0,
        faces: int = 0,
        normals: bool = True,
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
        )
        mesh, stats = extract_mesh(self.field(latent), options, self.device, progress, cancel, stats)
        return Reconstruction(mesh.transformed(latent.frame.as_array(), latent.frame.scale), latent, stats.as_dict())

    def reconstruct(
        self, observation: Observation | str | Path | np.ndarray, progress: Progress | None = None, **options
    ) -> Reconstruction:
        start = time.perf_counter()
        if progress is not None:
            progress("encode", 0.0)
        latent = self.encode(observation)
        stats = ExtractStats(seconds={"encode": time.perf_counter() - start})
        return self.extract(latent, progress=progress, stats=stats, **options)

    def _as_observation(self, observation: Observation | str | Path | np.ndarray) -> Observation:
        if isinstance(observation, str | Path):
            observation = load_observation(observation)
        elif isinstance(observation, np.ndarray):
            wrap = {"pointcloud": PointCloudInput, "image": ImageInput, "voxels": VoxelInput}[self.config.input_kind]
            observation = wrap(observation)
        if observation.kind != self.config.input_kind:
            raise InputError(
                f"Model '{self.name}' reconstructs from {_KIND_WORDS[self.config.input_kind]}, but the input is "
                f"{_KIND_WORDS[observation.kind]}. Choose a model for {_KIND_WORDS[observation.kind]}."
            )
        return observation

    def _check_latent(self, latent: Latent) -> None:
        """Only the model that made a latent can decode it: another one, even with codes of the same length
        (a point-cloud and an image model), reads the numbers as a different shape."""
        if latent.model != self.name:
            raise InputError(
                f"The latent was made by model '{latent.model}', so model '{self.name}' cannot decode it. "
                f"Use model '{latent.model}' (or reconstruct the shape again with '{self.name}')."
            )
        expected = int(np.prod(self.config.latent_shape))
        if latent.code.size != expected:
            raise InputError(
                f"The latent has {latent.code.size} values but model '{self.name}' uses {expected}; "
                f"it was made by model '{latent.model}'."
            )


_KIND_WORDS = {"pointcloud": "point clouds", "image": "images", "voxels": "voxel grids"}


def load_model(name_or_path: str | Path, device: str | torch.device = "auto") -> Model:
    """A shipped model by name ('triplane-pointcloud'), or any checkpoint by path."""
    path = find_model(name_or_path)
    resolved = resolve_device(device)
    return Model(load_checkpoint(path, resolved), path.stem, resolved)


def interpolate(a: Latent, b: Latent, t: float, method: str = "linear") -> Latent:
    """The latent a fraction t of the way from a to b; the placement blends too, so the shape moves between.

    'spherical' turns the code's direction along the great circle and blends its length linearly,
    which keeps the blend's magnitude typical of real codes when a and b point different ways.
    """
    if a.model != b.model or a.code.size != b.code.size:
        raise InputError(
            f"Cannot blend shapes from different models ('{a.model}' and '{b.model}'); reconstruct both with one model."
        )
    if method == "linear":
        code = (1 - t) * a.code.astype(np.float32) + t * b.code.astype(np.float32).reshape(a.code.shape)
    elif method == "spherical":
        code = _slerp(a.code.astype(np.float64).ravel(), b.code.astype(np.float64).ravel(), t).reshape(a.code.shape)
    else:
        raise ValueError(f"method must be 'linear' or 'spherical', not {method!r}")
    center = (1 - t) * a.frame.as_array() + t * b.frame.as_array()
    scale = float(a.frame.scale ** (1 - t) * b.frame.scale**t)
    return Latent(code.astype(np.float32), a.model, Frame.of(center, scale))


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return (1 - t) * a + t * b
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    if omega < 1e-6:
        direction = ua
    else:
        direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def _prepare_voxels(grid: np.ndarray, resolution: int) -> np.ndarray:
    grid = np.asarray(grid)
    if grid.shape != (resolution,) * 3:
        raise InputError(f"The voxel model expects a {resolution}^3 grid; got shape {grid.shape}.")
    return (np.nan_to_num(grid.astype(np.float32)) > 0.5).astype(np.float32)
