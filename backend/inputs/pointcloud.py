"""Point clouds: cleaning, normalising into the unit cube, and bringing them to the size the encoder expects."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError
from .observation import Frame

OUTLIER_NEIGHBOURS = 8  # a stray point, or a clump of fewer than this many, is far from its 8th neighbour
OUTLIER_FACTOR = 4.0  # ... farther than this many times the 90th percentile of that distance over the cloud
EXTREMES = 8  # points tested at each end of each axis, per round
VOXEL_PRESAMPLE = 8  # clouds above this many times the cap are first thinned at random (speed, not quality)
MAX_COORDINATE = float(np.finfo(np.float32).max)  # the largest coordinate a float32 mesh (file, Blender) holds


def normalize_points(
    points: np.ndarray, n_points: int, seed: int = 0, thin: bool = False
) -> tuple[np.ndarray, Frame, int]:
    """Canonical points, the frame to map results back, and how many points were dropped (non-finite or stray).

    The frame centres the bounding box of the cloud without its stray points and scales its longest side to 1,
    as the paper normalises shapes. With `thin` (local-feature models), every point is kept up to the cap
    `n_points`, and a denser cloud is thinned evenly on a voxel grid; otherwise exactly `n_points` are drawn at
    random (with repetition from smaller clouds; max pooling ignores duplicates), as the global encoder expects.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3 or not np.issubdtype(points.dtype, np.number):
        raise InputError(f"A point cloud must be an (N, 3) array of numbers; got shape {points.shape}.")
    points = points[:, :3].astype(np.float64, copy=False)
    finite = np.isfinite(points).all(axis=1)
    dropped = int(len(points) - finite.sum())
    if dropped:
        points = points[finite]
    if len(points) == 0:
        detail = f" ({dropped} had NaN or infinite coordinates)" if dropped else ""
        raise InputError(f"The point cloud has no usable points{detail}. Provide at least a few finite points.")
    _check_extent(points, len(points))
    rng = np.random.default_rng(seed)
    if thin:
        points = thin_to(points, n_points, rng)
    kept = points[~stray_points(points, rng)]
    dropped += len(points) - len(kept)
    low, high = kept.min(axis=0), kept.max(axis=0)
    center = (low + high) / 2
    scale = float((high - low).max())
    _check_extent(kept, len(kept))
    if not thin:
        kept = kept[rng.choice(len(kept), size=n_points, replace=len(kept) < n_points)]
    canonical = ((kept - center) / scale).astype(np.float32)
    return canonical, Frame.of(center, scale), dropped


def _check_extent(points: np.ndarray, count: int) -> None:
    """A cloud with a shape, at a place meshes can hold: not a single point, and within float32's range, where
    mesh files and Blender store coordinates (far beyond it, squared distances overflow to infinity)."""
    low, high = points.min(axis=0), points.max(axis=0)
    reach = float(np.abs(points).max())
    if reach > MAX_COORDINATE:
        raise InputError(
            f"The point cloud's coordinates reach {reach:.3g}, beyond the {MAX_COORDINATE:.2g} that meshes can "
            "store. Check the file's units, or rescale the cloud."
        )
    if float((high - low).max()) <= 1e-9 * max(1.0, float(np.abs((low + high) / 2).max())):
        raise InputError(
            f"All {count} points are at the same place, so the cloud has no shape to reconstruct. "
            "Select a cloud that covers the object's surface."
        )


def stray_points(points: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Which points lie far from the rest (scanner noise, a stray click) at the cloud's extremes, where they
    would set the frame and shrink the object into a corner of the box. Only the extremes can move the frame,
    so only they are tested: a few hundred neighbour queries whatever the cloud's size."""
    k = min(OUTLIER_NEIGHBOURS, len(points) - 1)
    stray = np.zeros(len(points), dtype=bool)
    if k < 2:
        return stray
    rng = rng or np.random.default_rng(0)
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)  # exact neighbours, built 3-4x faster
    sample = points[rng.choice(len(points), min(len(points), 512), replace=False)]
    limit = max(OUTLIER_FACTOR * float(np.quantile(tree.query(sample, k=k + 1)[0][:, -1], 0.9)), 1e-12)
    tested = np.zeros(len(points), dtype=bool)
    for _ in range(32):
        inliers = np.flatnonzero(~stray)
        values = points[inliers]
        if len(inliers) > 2 * EXTREMES:
            low = np.argpartition(values, EXTREMES, axis=0)[:EXTREMES]
            high = np.argpartition(values, -EXTREMES, axis=0)[-EXTREMES:]
            extremes = np.unique(np.concatenate([low, high]))
        else:
            extremes = np.arange(len(inliers))
        candidates = inliers[extremes]
        candidates = candidates[~tested[candidates]]
        if len(candidates) == 0:
            break
        tested[candidates] = True
        far = tree.query(points[candidates], k=k + 1)[0][:, -1] > limit
        if not far.any():
            break
        stray[candidates[far]] = True
    return stray


def thin_to(points: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most `cap` points spread evenly over the cloud: one per cell of the finest voxel grid that allows it."""
    if len(points) <= cap:
        return points
    if len(points) > VOXEL_PRESAMPLE * cap:
        points = points[rng.choice(len(points), VOXEL_PRESAMPLE * cap, replace=False)]
    points = points[rng.permutation(len(points))]
    low = points.min(axis=0)
    size = float((points.max(axis=0) - low).max()) * (2.0 / cap) ** 0.5  # a closed surface spans about 2 extent^2
    best = None
    for _ in range(8):  # a surface's occupied cells grow as size^-2: a few secant steps land just under the cap
        first = _one_per_cell(points, low, size)
        if len(first) <= cap and (best is None or len(first) > len(best)):
            best = first
        if best is not None and len(best) > 0.9 * cap:
            break
        size *= (len(first) / cap) ** 0.5 * (1.01 if len(first) > cap else 0.99)
    while best is None:
        size *= 1.5
        first = _one_per_cell(points, low, size)
        best = first if len(first) <= cap else None
    return points[best]


def _one_per_cell(points: np.ndarray, low: np.ndarray, size: float) -> np.ndarray:
    cells = np.floor((points - low) / size).astype(np.int64)
    key = (cells[:, 0] * 2_097_152 + cells[:, 1]) * 2_097_152 + cells[:, 2]
    return np.unique(key, return_index=True)[1]
