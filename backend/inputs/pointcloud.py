"""Point clouds: cleaning, normalising into the unit cube, and subsampling to what the encoder expects."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .observation import Frame


def normalize_points(points: np.ndarray, n_points: int, seed: int = 0) -> tuple[np.ndarray, Frame, int]:
    """(n_points, 3) canonical points, the frame to map results back, and how many bad points were dropped.

    The frame centres the bounding box and scales its longest side to 1, as the paper normalises
    shapes. Larger clouds are subsampled, smaller ones sampled with repetition (max pooling ignores
    duplicates).
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
    low, high = points.min(axis=0), points.max(axis=0)
    center = (low + high) / 2
    scale = float((high - low).max())
    if scale <= 1e-9 * max(1.0, float(np.abs(center).max())):
        raise InputError(
            f"All {len(points)} points are at the same place, so the cloud has no shape to reconstruct. "
            "Select a cloud that covers the object's surface."
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(points), size=n_points, replace=len(points) < n_points)
    canonical = ((points[chosen] - center) / scale).astype(np.float32)
    return canonical, Frame.of(center, scale), dropped
