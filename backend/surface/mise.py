"""Multiresolution IsoSurface Extraction (Mescheder et al. 2019, sec. 3.3), on numpy: both engines use it.

Evaluate a coarse grid, then repeatedly halve the cell size, evaluating new points only inside cells
whose corners straddle the threshold. Points never evaluated take the trilinear interpolation of the
coarser level, as in the paper's implementation, so the result is a full grid for marching cubes.
"""

from __future__ import annotations

import numpy as np

from ..config import BOX_SIZE
from .field import Evaluator
from .options import RESOLUTIONS

BASE_RESOLUTION = RESOLUTIONS[0]
SEEDED_BASE = BASE_RESOLUTION // 2  # with seeds, thin parts are found where they were seen, so start coarser


def grid_points(resolution: int) -> np.ndarray:
    """Coordinates of the (R+1)^3 grid corners covering the padded canonical box, in C order."""
    axis = np.linspace(-BOX_SIZE / 2, BOX_SIZE / 2, resolution + 1, dtype=np.float32)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def dense_grid(evaluate: Evaluator, resolution: int) -> np.ndarray:
    """Every grid point evaluated: the baseline MISE is measured against."""
    values = evaluate(grid_points(resolution), stage="evaluate")
    return values.reshape((resolution + 1,) * 3)


def mise_grid(
    evaluate: Evaluator,
    resolution: int,
    threshold_logit: float,
    seeds: np.ndarray | None = None,
) -> np.ndarray:
    """Logit grid of shape (R+1)^3; exact at every point MISE evaluated, interpolated elsewhere. Cells holding a
    seed (canonical points the surface passes near: the input cloud) are refined whether or not their corners
    straddle the threshold, so a part thinner than the coarse cells is found where it was seen, and the search can
    start coarser (SEEDED_BASE): the same meshes from a fifth fewer evaluations on the shipped point model."""
    base = min(BASE_RESOLUTION if seeds is None else SEEDED_BASE, resolution)
    if resolution % base or (resolution // base) & (resolution // base - 1):
        raise ValueError(f"resolution {resolution} must be {base} times a power of two")
    levels = (resolution // base).bit_length()
    r = base
    values = evaluate(grid_points(r), stage="evaluate", start=0.0, span=1.0 / levels).reshape((r + 1,) * 3)
    known = np.ones(values.shape, dtype=bool)
    level = 1
    while r < resolution:
        active = _crossing_cells(values >= threshold_logit)
        if seeds is not None:
            active[tuple(_cells_of(seeds, r).T)] = True
        values = _upsample(values)
        fine_known = np.zeros(values.shape, dtype=bool)
        fine_known[::2, ::2, ::2] = known
        todo = _cell_corners(active.repeat(2, 0).repeat(2, 1).repeat(2, 2)) & ~fine_known
        r *= 2
        index = np.nonzero(todo)
        if len(index[0]):
            points = np.stack(index, axis=-1).astype(np.float32) * np.float32(BOX_SIZE / r) - np.float32(BOX_SIZE / 2)
            values[index] = evaluate(points, stage="evaluate", start=level / levels, span=1.0 / levels)
        known = fine_known | todo
        level += 1
    return values


def _cells_of(points: np.ndarray, resolution: int) -> np.ndarray:
    """(N, 3) indices of the cells of a resolution^3 grid over the padded box that hold the points."""
    cells = np.floor((points + BOX_SIZE / 2) / (BOX_SIZE / resolution)).astype(np.int64)
    return np.clip(cells, 0, resolution - 1)


def _crossing_cells(inside: np.ndarray) -> np.ndarray:
    """Cells (R^3) whose eight corners are not all on the same side of the threshold."""
    count = np.zeros(tuple(s - 1 for s in inside.shape), dtype=np.uint8)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                count += inside[dx : dx + count.shape[0], dy : dy + count.shape[1], dz : dz + count.shape[2]]
    return (count > 0) & (count < 8)


def _cell_corners(cells: np.ndarray) -> np.ndarray:
    """Grid points ((R+1)^3) that are a corner of at least one marked cell (R^3)."""
    corners = np.zeros(tuple(s + 1 for s in cells.shape), dtype=bool)
    n = cells.shape
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                corners[dx : dx + n[0], dy : dy + n[1], dz : dz + n[2]] |= cells
    return corners


def _upsample(values: np.ndarray) -> np.ndarray:
    """(R+1)^3 -> (2R+1)^3 by trilinear interpolation; the old points keep their exact values. Trilinear at the
    new points is the mean of the two, four or eight old neighbours: one midpoint pass per axis, in place (a
    pass fills the odd planes along its axis, across the planes the earlier passes filled)."""
    size = 2 * values.shape[0] - 1
    out = np.empty((size, size, size), dtype=np.float32)
    out[::2, ::2, ::2] = values
    for axis in range(3):
        done = [slice(None)] * axis, [slice(None, None, 2)] * (2 - axis)
        middle, low, high = (
            out[(*done[0], part, *done[1])] for part in (slice(1, None, 2), slice(0, -1, 2), slice(2, None, 2))
        )
        np.add(low, high, out=middle)
        middle *= np.float32(0.5)
    return out
