"""A stored data set held in memory, handing out training batches in the exact frame inference uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..config import ModelConfig
from ..errors import InputError
from ..inputs.image import prepare_image
from ..inputs.pointcloud import normalize_points
from .samplers import noisy_cloud, partial_cloud, query_points


@dataclass
class Shape:
    category: str
    name: str
    points: np.ndarray  # float16 (N, 3)
    labels: np.ndarray  # bool (N,)
    n_uniform: int
    surface: np.ndarray  # float16 (M, 3)
    normals: np.ndarray  # float16 (M, 3)
    views: np.ndarray | None = None  # float16 (V, 3, S, S), already preprocessed as at inference
    voxels: np.ndarray | None = None  # bool (32, 32, 32)


@dataclass
class Sampling:
    queries: int = 2048
    uniform_fraction: float = 0.5
    cloud_points: tuple[int, int] = (300, 300)
    noise: float = 0.005
    partial_fraction: float = 0.0


def load_split(root: str | Path, split: str, config: ModelConfig, categories: list[str] | None = None) -> list[Shape]:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder. Generate one with 'python -m backend data procedural'.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / f"{split}.lst").is_file())
    if categories:
        folders = [p for p in folders if p.name in categories]
    entries = [(f, n) for f in folders for n in (f / f"{split}.lst").read_text().split()]
    if not entries:
        raise InputError(f"{root}: no shapes listed in any <category>/{split}.lst.")
    return [_load_shape(folder / name, folder.name, config) for folder, name in tqdm(entries, desc=f"load {split}")]


def _load_shape(folder: Path, category: str, config: ModelConfig) -> Shape:
    with np.load(folder / "points.npz") as data:
        points = data["points"]
        labels = np.unpackbits(data["occupancies"])[: len(points)].astype(bool)
        n_uniform = int(data["n_uniform"]) if "n_uniform" in data.files else len(points)
    with np.load(folder / "pointcloud.npz") as data:
        surface, normals = data["points"], data["normals"]
    shape = Shape(category, folder.name, points, labels, n_uniform, surface, normals)
    if config.input_kind == "image":
        files = sorted((folder / "img").glob("*.png"))
        shape.views = np.stack(
            [
                prepare_image(
                    np.asarray(Image.open(f)),
                    config.image_size,
                    config.image_background,
                    config.image_mean,
                    config.image_std,
                )
                for f in files
            ]
        ).astype(np.float16)
    elif config.input_kind == "voxels":
        with np.load(folder / "voxels.npz") as data:
            r = int(data["resolution"])
            shape.voxels = np.unpackbits(data["occupancies"])[: r**3].reshape(r, r, r).astype(bool)
    return shape


def make_batch(shapes: list[Shape], config: ModelConfig, sampling: Sampling, rng: np.random.Generator) -> dict:
    """Inputs, query points and labels; point clouds are normalised exactly as `Model.encode` does,
    and the query points move with them, so training sees the frame inference will use."""
    n_cloud = int(rng.integers(sampling.cloud_points[0], sampling.cloud_points[1] + 1))
    inputs, queries, labels = [], [], []
    for shape in shapes:
        q, y = query_points(
            shape.points, shape.labels, shape.n_uniform, sampling.queries, sampling.uniform_fraction, rng
        )
        if config.input_kind == "pointcloud":
            if rng.random() < sampling.partial_fraction:
                cloud = partial_cloud(shape.surface, shape.normals, n_cloud, sampling.noise, rng)
            else:
                cloud = noisy_cloud(shape.surface, n_cloud, sampling.noise, rng)
            cloud, frame, _ = normalize_points(cloud, n_cloud, seed=int(rng.integers(1 << 31)))
            q = (q - frame.as_array()) / np.float32(frame.scale)
            inputs.append(cloud)
        elif config.input_kind == "image":
            inputs.append(shape.views[rng.integers(0, len(shape.views))].astype(np.float32))
        else:
            inputs.append(shape.voxels.astype(np.float32))
        queries.append(q)
        labels.append(y)
    return {
        "inputs": torch.from_numpy(np.stack(inputs)),
        "queries": torch.from_numpy(np.stack(queries).astype(np.float32)),
        "labels": torch.from_numpy(np.stack(labels).astype(np.float32)),
    }
