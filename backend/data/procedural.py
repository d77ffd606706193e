"""Procedural data sets in the Occupancy Networks layout, generated from the shape families.

    ROOT/<category>/<shape id>/points.npz      points (N,3) float16, occupancies (packed bits), n_uniform
                               pointcloud.npz  points, normals (M,3) float16 on the exact surface
                               voxels.npz      occupancies of the 32^3 voxel centres (packed bits)
                               img/NN.png      RGBA renders; img/cameras.npz azimuth, elevation
    ROOT/<category>/{train,val,test}.lst       shape ids of each split

Data prepared for the original Occupancy Networks code reads the same way (extra keys are ignored).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..config import BOX_SIZE
from ..engines.torch_stages import TorchEvaluator
from ..outputs import atomic_write
from ..surface.mesh import Mesh
from ..surface.options import ExtractOptions
from ..surface.pipeline import extract_mesh
from .render import render
from .samplers import voxel_centres
from .sdf import Node, Normalized
from .shapes import CATEGORIES, make_tree

SHARPNESS = 200.0
WORLD_HALF_SIZE = 2.5  # every generator keeps its objects within this distance of the origin
SPLIT_OFFSETS = {"train": 0, "val": 1_000_000, "test": 2_000_000}  # seeds never overlap between splits
DEFAULT_COUNTS = {"train": 150, "val": 10, "test": 20}


def shape_id(split: str, index: int) -> str:
    return f"{SPLIT_OFFSETS[split] + index:07d}"


def canonical_shape(category: str, seed: int) -> Node:
    """The shape centred on its bounding box, longest side 1: the frame inputs are normalised into too."""
    return normalized(make_tree(category, seed))


def normalized(tree: Node, half_size: float = WORLD_HALF_SIZE) -> Normalized:
    """Any tree within `half_size` of the origin, centred on its bounding box with the longest side 1."""
    low, high = tree_bounds(tree, half_size)
    return Normalized(tree, (low + high) / 2, float((high - low).max()))


def tree_bounds(tree: Node, half_size: float = WORLD_HALF_SIZE, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of a tree's surface within `half_size` of the origin: found coarsely, then on a grid
    around it (of `resolution` cells a side; the box lies on the surface whatever the cell size)."""
    low, high = _bounds(tree, np.zeros(3), half_size, resolution)
    return _bounds(tree, (low + high) / 2, float((high - low).max()) * 0.6, resolution)


def shape_mesh(shape: Node, resolution: int = 96) -> Mesh:
    field = lambda p: -SHARPNESS * shape(p)  # noqa: E731
    # The dense grid: MISE's coarse base grid could step over thin parts such as a table top.
    options = ExtractOptions(resolution=resolution, threshold=0.5, use_mise=False, normals=False, min_piece=0)
    mesh, _ = extract_mesh(TorchEvaluator(field, torch.device("cpu"), 32_768), options, model_threshold=0.5)
    return mesh


def surface_samples(shape: Node, mesh: Mesh, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points on the exact surface (mesh samples moved along the gradient) and their outward normals. Where the
    distance has no gradient (a sample exactly on a crease, where autograd's subgradient of abs or max is zero;
    whether one lands there depends on the CPU's rounding), the sampled face's normal stands in."""
    tri = mesh.vertices[mesh.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    faces = rng.choice(len(tri), size=count, p=area / area.sum())
    uv = rng.random((count, 2))
    flip = uv.sum(1) > 1
    uv[flip] = 1 - uv[flip]
    points = tri[faces, 0] + uv[:, :1] * (tri[faces, 1] - tri[faces, 0]) + uv[:, 1:] * (tri[faces, 2] - tri[faces, 0])
    p = torch.tensor(points, dtype=torch.float32)
    face_normals = torch.tensor(cross[faces] / np.maximum(area[faces], 1e-12)[:, None], dtype=torch.float32)
    for _ in range(2):
        p.requires_grad_(True)
        d = shape(p)
        (grad,) = torch.autograd.grad(d.sum(), p)
        length = grad.norm(dim=1, keepdim=True)
        normal = torch.where(length > 1e-6, grad / length.clamp_min(1e-9), face_normals)
        p = (p - d[:, None] * normal).detach()
    return p.numpy(), normal.detach().numpy()


def occupancy(shape: Node, points: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [
                (shape(torch.from_numpy(c)) <= 0).numpy()
                for c in np.array_split(points.astype(np.float32), max(1, len(points) // 65536))
            ]
        )


def write_shape(
    folder: Path, category: str, seed: int, n_uniform: int, n_near: int, n_surface: int, views: int, image_size: int
) -> None:
    """All files of one shape; skipped when already complete, so an interrupted run resumes."""
    if (folder / "done").exists():
        return
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    shape = canonical_shape(category, seed)
    mesh = shape_mesh(shape)
    surface, normals = surface_samples(shape, mesh, n_surface, rng)
    near = surface[rng.choice(len(surface), n_near)] + rng.normal(scale=0.02, size=(n_near, 3))
    write_files(folder, shape, surface, normals, near, n_uniform, rng, views, image_size)


def write_files(
    folder: Path,
    shape: Node,
    surface: np.ndarray,
    normals: np.ndarray,
    near: np.ndarray,
    n_uniform: int,
    rng: np.random.Generator,
    views: int,
    image_size: int,
    loc: np.ndarray | None = None,
    scale: float = 1.0,
) -> None:
    """The files of one shape in the canonical frame, given its surface samples and near-surface points; `loc` and
    `scale` say where it came from (canonical = (source - loc) / scale). The `done` marker is written last.

    Labels are those of the points as stored (float16): a point that rounding moves across the surface is
    labelled where it ends up.
    """
    uniform = rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, size=(n_uniform, 3))
    points = np.concatenate([uniform, near]).astype(np.float16)
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(
        folder / "points.npz",
        points=points,
        occupancies=np.packbits(occupancy(shape, points.astype(np.float32))),
        n_uniform=np.int64(n_uniform),
        loc=np.zeros(3, np.float32) if loc is None else np.asarray(loc, np.float32),
        scale=np.float32(scale),
    )
    save_npz(folder / "pointcloud.npz", points=surface.astype(np.float16), normals=normals.astype(np.float16))
    centres = voxel_centres(32)
    save_npz(folder / "voxels.npz", occupancies=np.packbits(occupancy(shape, centres)), resolution=np.int64(32))
    (folder / "img").mkdir(exist_ok=True)
    azimuth = rng.uniform(0, 2 * math.pi, views)
    elevation = np.radians(rng.uniform(5, 45, views))
    for i in range(views):
        Image.fromarray(render(shape, azimuth[i], elevation[i], image_size), "RGBA").save(
            folder / "img" / f"{i:02d}.png"
        )
    save_npz(folder / "img" / "cameras.npz", azimuth=azimuth, elevation=elevation)
    (folder / "done").touch()


def generate(
    root: str | Path,
    categories: list[str] | None = None,
    counts: dict[str, int] | None = None,
    views: int = 4,
    image_size: int = 128,
    workers: int = 2,
    test_surface: int = 100_000,
    train_surface: int = 30_000,
    write: Callable[..., None] | None = None,
) -> Path:
    """Write (or finish writing) a procedural data set; returns its root.

    `write(folder, category, seed, n_uniform, n_near, n_surface, views, image_size)` writes one shape (default:
    `write_shape`); a module-level function or a functools.partial of one, since it is pickled for the workers.
    """
    root = Path(root)
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    jobs = []
    for category in categories or list(CATEGORIES):
        for split, count in counts.items():
            ids = [shape_id(split, i) for i in range(count)]
            (root / category).mkdir(parents=True, exist_ok=True)
            (root / category / f"{split}.lst").write_text("\n".join(ids) + "\n")
            n_surface = test_surface if split == "test" else train_surface
            n_uniform = 100_000 if split == "test" else 50_000
            jobs += [
                (
                    write or write_shape,
                    (root / category / i, category, int(i), n_uniform, 50_000, n_surface, views, image_size),
                )
                for i in ids
            ]
    with ProcessPoolExecutor(workers) as pool:
        list(tqdm(pool.map(_write_job, jobs, chunksize=4), total=len(jobs), desc="shapes", unit="shape"))
    return root


def _write_job(job: tuple) -> None:
    write, args = job
    write(*args)


def _bounds(tree: Node, center: np.ndarray, half_size: float, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box of the surface: grid points near it (by their distance) projected onto it.

    Thin parts that a marching-cubes grid would step over are still found, since every grid point
    within a cell's reach of the surface is kept.
    """
    axis = np.linspace(-half_size, half_size, resolution + 1, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3) + center.astype(np.float32)
    p = torch.from_numpy(grid)
    with torch.no_grad():
        d = tree(p)
    p = p[d.abs() < 2 * half_size / resolution * 0.9]
    for _ in range(3):
        p.requires_grad_(True)
        d = tree(p)
        (grad,) = torch.autograd.grad(d.sum(), p)
        p = (p - d[:, None] * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-9)).detach()
    p = p.numpy()
    return p.min(axis=0).astype(np.float64), p.max(axis=0).astype(np.float64)


def save_npz(path: Path, **arrays) -> None:
    """Write atomically: an interrupted run never leaves a half file that looks finished."""
    with atomic_write(path) as partial:
        np.savez(partial, **arrays)
