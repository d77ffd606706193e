"""A stored data set held in memory, handing out training batches in the exact frame inference uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..config import BOX_SIZE, ModelConfig
from ..errors import InputError
from ..inputs.attention import PointAttentionInput, prepare_points
from ..inputs.image import prepare_image
from ..inputs.neighbours import LEVELS, QueryNeighbours
from ..inputs.pointcloud import normalize_points
from .samplers import distinct_surface, noisy_cloud, partial_cloud, query_points, random_rotation, stray_points
from .view_examples import draw_directions, view_example

OUTSIDE_SHARE = 8  # with rotations, one query in this many is drawn where the turned box left no labelled points
VIEW_COUNTS, VIEW_COUNT_SHARES = (1, 2, 3), (0.4, 0.3, 0.3)  # views: pictures per example
NORMAL_NOISE = 0.1  # normals given to point attention in training are this far off (per component, before norming)


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
    """How training examples are drawn. Cloud sizes are log-uniform in `cloud_points`, noise uniform in `noise`."""

    queries: int = 2048
    uniform_fraction: float = 0.5
    cloud_points: tuple[int, int] = (300, 300)
    noise: tuple[float, float] = (0.005, 0.005)
    partial_fraction: float = 0.0  # clouds seen from one to three directions only
    outlier_fraction: float = 0.0  # clouds with one to five stray points
    rotate: bool = False  # turn each shape at random and stretch it along its axes
    stretch: float = 0.25  # each axis scaled by a factor in [1 - stretch, 1 + stretch]
    normals_fraction: float = 0.0  # point attention: clouds that come with (slightly noisy) normals


def load_split(root: str | Path, split: str, config: ModelConfig, categories: list[str] | None = None) -> list[Shape]:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder. Generate one with 'python -m backend data procedural'.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / f"{split}.lst").is_file())
    if categories:
        if unknown := sorted(set(categories) - {p.name for p in folders}):
            raise InputError(
                f"{root}: no category {', '.join(unknown)} with a {split} list; it has "
                f"{', '.join(p.name for p in folders) or 'none'}."
            )
        folders = [p for p in folders if p.name in categories]
    entries = [(f, n) for f in folders for n in (f / f"{split}.lst").read_text().split()]
    if not entries:
        fix = {
            "val": " Training keeps a validation split to pick its best step: give a set with val.lst lists ('data "
            "meshes' puts a tenth of a folder's meshes there, so give it ten or more; 'data procedural --val 2').",
            "train": " Generate one with 'python -m backend data procedural' or 'data meshes FOLDER'.",
        }.get(split, "")
        raise InputError(f"{root}: no shapes listed in any <category>/{split}.lst.{fix}")
    with tqdm(entries, desc=f"load {split}") as bar:  # closed before an error reaches the user's last line
        return [_load_shape(folder / name, folder.name, config) for folder, name in bar]


def _load_shape(folder: Path, category: str, config: ModelConfig) -> Shape:
    with np.load(folder / "points.npz") as data:
        points = data["points"]
        labels = np.unpackbits(data["occupancies"])[: len(points)].astype(bool)
        n_uniform = int(data["n_uniform"]) if "n_uniform" in data.files else len(points)
    with np.load(folder / "pointcloud.npz") as data:
        surface, normals = distinct_surface(data["points"], data["normals"])
    shape = Shape(category, folder.name, points, labels, n_uniform, surface, normals)
    if config.input_kind == "image" and config.architecture != "views":  # views are rendered as training draws
        files = sorted((folder / "img").glob("*.png"))
        if not files:
            raise InputError(
                f"{folder}: no rendered images (img/*.png), so an image model cannot train on it. Generate a set "
                "with images ('data procedural --views 4'), or train on point clouds (--input pointcloud)."
            )
        shape.views = np.stack(
            [
                prepare_image(
                    np.asarray(Image.open(f)),
                    config.image_size,
                    config.image_background,
                    config.image_mean,
                    config.image_std,
                )[0]
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
    and the query points move with them, so training sees the frame inference will use. Point attention's
    inputs are a dict of arrays (`PointAttentionInput.arrays`), and each query's candidate neighbours come too."""
    low, high = sampling.cloud_points
    n_cloud = int(round(np.exp(rng.uniform(np.log(low), np.log(high))))) if high > low else low
    inputs, queries, labels = [], [], []
    if config.architecture == "views":  # one count a batch, so the views stack
        views = int(rng.choice(VIEW_COUNTS, p=VIEW_COUNT_SHARES))
    for shape in shapes:
        if config.architecture == "views":
            q, y = query_points(
                shape.points, shape.labels, shape.n_uniform, sampling.queries, sampling.uniform_fraction, rng
            )
            inputs.append(
                view_example(shape.surface, shape.normals, draw_directions(views, rng), config.image_size, rng)
            )
        elif config.input_kind == "pointcloud":
            cloud, q, y = _pointcloud_example(shape, config, sampling, n_cloud, rng)
            inputs.append(cloud)
        else:
            q, y = query_points(
                shape.points, shape.labels, shape.n_uniform, sampling.queries, sampling.uniform_fraction, rng
            )
            if config.input_kind == "image":
                inputs.append(shape.views[rng.integers(0, len(shape.views))].astype(np.float32))
            else:
                inputs.append(shape.voxels.astype(np.float32))
        queries.append(q)
        labels.append(y)
    batch = {
        "queries": torch.from_numpy(np.stack(queries).astype(np.float32)),
        "labels": torch.from_numpy(np.stack(labels).astype(np.float32)),
    }
    if config.architecture == "attention":
        batch["inputs"], batch["neighbours"] = point_attention_batch(inputs, queries, config, rng)
        return batch
    if config.architecture == "views":
        batch["inputs"] = {key: torch.from_numpy(np.stack([x[key] for x in inputs])) for key in inputs[0]}
        return batch
    if config.input_kind == "pointcloud":
        inputs = _same_length(inputs, rng)
    batch["inputs"] = torch.from_numpy(np.stack(inputs))
    return batch


def _pointcloud_example(
    shape: Shape, config: ModelConfig, sampling: Sampling, n_cloud: int, rng: np.random.Generator
) -> tuple[np.ndarray | PointAttentionInput, np.ndarray, np.ndarray]:
    """One shape, optionally turned and stretched (labels do not change under a linear map), seen as a cloud."""
    n_outside = sampling.queries // OUTSIDE_SHARE if sampling.rotate else 0
    q, y = query_points(
        shape.points, shape.labels, shape.n_uniform, sampling.queries - n_outside, sampling.uniform_fraction, rng
    )
    pool = rng.choice(len(shape.surface), min(len(shape.surface), 3 * n_cloud + 64), replace=False)  # to draw from
    surface, normals = shape.surface[pool].astype(np.float32), shape.normals[pool].astype(np.float32)
    linear = inverse = np.eye(3)
    if sampling.rotate:
        rotation = random_rotation(rng)
        stretch = rng.uniform(1 - sampling.stretch, 1 + sampling.stretch, 3)
        linear, inverse = rotation * stretch, rotation.T / stretch[:, None]
        surface, q = surface @ linear.T.astype(np.float32), q @ linear.T.astype(np.float32)
        normals = normals @ inverse.astype(np.float32)
    noise = rng.uniform(*sampling.noise)
    if rng.random() < sampling.partial_fraction:
        cloud, cloud_normals = partial_cloud(surface, normals, n_cloud, noise, rng, views=int(rng.integers(1, 4)))
    else:
        cloud, cloud_normals = noisy_cloud(surface, normals, n_cloud, noise, rng)
    if rng.random() < sampling.outlier_fraction:
        middle, extent = (cloud.min(0) + cloud.max(0)) / 2, float((cloud.max(0) - cloud.min(0)).max())
        strays = stray_points(middle, extent, int(rng.integers(1, 6)), rng)
        cloud = np.concatenate([cloud, strays])
        cloud_normals = np.concatenate([cloud_normals, rng.normal(size=strays.shape).astype(np.float32)])
    seed = int(rng.integers(1 << 31))
    if config.architecture == "attention":
        given = None
        if rng.random() < sampling.normals_fraction:
            given = cloud_normals / np.maximum(np.linalg.norm(cloud_normals, axis=1, keepdims=True), 1e-9)
            given = given + rng.normal(scale=NORMAL_NOISE, size=given.shape).astype(np.float32)
        prepared, frame = prepare_points(cloud, given, config, seed)
    else:
        prepared, frame, _ = normalize_points(cloud, config.n_points, seed, thin=config.architecture == "triplane")
    center, scale = frame.as_array().astype(np.float32), np.float32(frame.scale)
    q = (q - center) / scale
    if n_outside:
        q_out = _outside_queries(inverse, center, scale, n_outside, rng)
        q, y = np.concatenate([q, q_out]), np.concatenate([y, np.zeros(n_outside, bool)])
    return prepared, q, y


def point_attention_batch(
    prepared: list[PointAttentionInput], queries: list[np.ndarray], config: ModelConfig, rng: np.random.Generator
) -> tuple[dict[str, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Point-attention inputs of several clouds stacked, each padded to the longest (points nobody reads, whose
    neighbours are themselves; plane points repeated), and the queries' neighbours at each level."""
    longest = max(len(p.points) for p in prepared)
    coarsest = max(len(p.coarse_neighbours) for p in prepared)
    arrays: dict[str, list[np.ndarray]] = {key: [] for key in ("points", "normals", "neighbours")}
    arrays.update(coarse_neighbours=[], parents=[])
    for p in prepared:
        extra = longest - len(p.points)
        arrays["points"].append(np.pad(p.points, ((0, extra), (0, 0))))
        arrays["normals"].append(np.pad(p.normals, ((0, extra), (0, 0))))
        arrays["neighbours"].append(_pad_rows(p.neighbours, longest))
        arrays["coarse_neighbours"].append(_pad_rows(p.coarse_neighbours, coarsest))
        arrays["parents"].append(np.pad(p.parents, (0, extra)))
    inputs = {key: torch.from_numpy(np.stack(value)) for key, value in arrays.items()}
    inputs["plane_points"] = torch.from_numpy(np.stack(_same_length([p.plane_points for p in prepared], rng)))
    inputs["has_normals"] = torch.tensor([float(p.has_normals) for p in prepared])
    inputs["unit"] = torch.tensor([p.unit for p in prepared], dtype=torch.float32)
    found = [QueryNeighbours(p.points, p.unit, config.neighbours)(q) for p, q in zip(prepared, queries, strict=True)]
    levels = [
        tuple(torch.from_numpy(np.stack([shape[level][part] for shape in found])) for part in (0, 1))
        for level in range(LEVELS)
    ]
    return inputs, levels


def _pad_rows(neighbours: np.ndarray, rows: int) -> np.ndarray:
    """Neighbour lists padded to `rows` with rows whose neighbours are themselves (read by nobody)."""
    own = np.repeat(np.arange(len(neighbours), rows)[:, None], neighbours.shape[1], axis=1)
    return np.concatenate([neighbours, own])


def _outside_queries(
    inverse: np.ndarray, center: np.ndarray, scale: float, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Canonical points certainly outside the shape: those whose stored position lies beyond the unit cube
    that holds every stored shape. A turned shape's canonical box reaches where no stored point was labelled."""
    candidates = rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, size=(4 * count, 3)).astype(np.float32)
    stored = (candidates * scale + center) @ inverse.T
    outside = candidates[np.abs(stored).max(axis=1) > 0.5 + 1e-3]
    if len(outside) == 0:
        outside = BOX_SIZE / 2 * np.sign(candidates[:1] + 1e-9)  # a corner of the canonical box; never inside
    return np.resize(outside, (count, 3))


def _same_length(clouds: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Pad clouds to the batch's longest by repeating their own points (pooling barely notices duplicates)."""
    longest = max(len(c) for c in clouds)
    return [
        c if len(c) == longest else np.concatenate([c, c[rng.integers(0, len(c), longest - len(c))]]) for c in clouds
    ]
