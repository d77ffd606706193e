"""Drawing training examples from stored shapes: query points, input clouds (full or partial), views."""

from __future__ import annotations

import numpy as np


def query_points(
    points: np.ndarray,
    labels: np.ndarray,
    n_uniform: int,
    count: int,
    uniform_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` labelled points: a `uniform_fraction` from the box, the rest from near the surface."""
    n_box = int(round(count * uniform_fraction)) if n_uniform < len(points) else count
    box = rng.integers(0, n_uniform, n_box)
    near = rng.integers(n_uniform, len(points), count - n_box) if count > n_box else np.empty(0, np.int64)
    chosen = np.concatenate([box, near])
    return points[chosen].astype(np.float32), labels[chosen]


def noisy_cloud(
    surface: np.ndarray, normals: np.ndarray, count: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct surface points (all of them when the surface holds fewer) with Gaussian noise of standard
    deviation `noise` (the paper uses 0.005), and the normals of the surface where they were drawn. Drawing with
    replacement would put jittered pairs where a scan has one point: a denser-looking cloud than any real scan."""
    chosen = rng.choice(len(surface), min(count, len(surface)), replace=False)
    points = surface[chosen].astype(np.float32)
    return points + rng.normal(scale=noise, size=points.shape).astype(np.float32), normals[chosen].astype(np.float32)


def distinct_surface(surface: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stored surface sample without its repeated points (a mesh with buried parts was filled up by repeats),
    and their normals."""
    surface, first = np.unique(surface, axis=0, return_index=True)
    return surface, normals[first]


def partial_cloud(
    surface: np.ndarray, normals: np.ndarray, count: int, noise: float, rng: np.random.Generator, views: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """What a scanner sees from `views` random directions: the surface points facing one of them (and their
    normals)."""
    directions = rng.normal(size=(views, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    visible = ((normals.astype(np.float32) @ directions.T.astype(np.float32)) > 0.1).any(axis=1)
    if visible.sum() < 16:
        visible[:] = True
    return noisy_cloud(surface[visible], normals[visible], count, noise, rng)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation drawn uniformly from SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def stray_points(center: np.ndarray, extent: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points scattered up to one `extent` beyond a box around `center`: a scanner's stray returns."""
    return center + rng.uniform(-extent, extent, size=(count, 3))


def voxel_centres(resolution: int) -> np.ndarray:
    """Centres of the resolution^3 voxels that tile the unit cube [-0.5, 0.5]^3, in C order."""
    index = np.stack(np.meshgrid(*[np.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return (index + 0.5) / resolution - 0.5
