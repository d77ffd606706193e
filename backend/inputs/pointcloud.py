"""Point clouds: cleaning, normalising into the unit cube, and bringing them to the size the encoder expects."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..surface.frame import Frame

OUTLIER_NEIGHBOURS = 8  # a stray point, or a clump of fewer than this many, is far from its 8th neighbour
OUTLIER_FACTOR = 4.0  # ... farther than this many times the 90th percentile of that distance over the cloud
EXTREMES = 8  # points tested at each end of each axis, per round
STRAY_ROUNDS = 32  # rounds of testing the extremes, at most
VOXEL_PRESAMPLE = 8  # clouds above this many times the cap are first thinned at random (speed, not quality)
SMALL_CLOUD = 5_000  # up to this many points, neighbour distances are computed between every pair
GRID_CELLS = 1 << 20  # cells a side of the neighbour grid at most: keys stay within int64
MAX_COORDINATE = float(np.finfo(np.float32).max)  # the largest coordinate a float32 mesh (file, Blender) holds
FLOAT64_EPS = float(np.finfo(np.float64).eps)


def normalize_points(
    points: np.ndarray, n_points: int, seed: int = 0, thin: bool = False
) -> tuple[np.ndarray, Frame, int]:
    """Canonical points, the frame to map results back, and how many points were dropped (non-finite or stray).

    The frame centres the bounding box of the cloud without its stray points and scales its longest side to 1,
    as the paper normalises shapes. With `thin` (local-feature models), every point is kept up to the cap
    `n_points`, and a denser cloud is thinned evenly on a voxel grid; otherwise exactly `n_points` are drawn at
    random (with repetition from smaller clouds; max pooling ignores duplicates), as the global encoder expects.
    """
    canonical, frame, dropped, _ = normalize_cloud(points, n_points, seed, thin)
    return canonical, frame, dropped


def normalize_cloud(
    points: np.ndarray, n_points: int, seed: int = 0, thin: bool = False
) -> tuple[np.ndarray, Frame, int, np.ndarray]:
    """`normalize_points`, and which input row each canonical point came from (to carry normals or colours)."""
    points = np.asarray(points)
    if problem := cloud_array_problem(points):
        raise InputError(problem)
    precision = float(np.finfo(points.dtype).eps) if np.issubdtype(points.dtype, np.floating) else 0.0
    points = points[:, :3].astype(np.float64, copy=False)
    rows = np.flatnonzero(np.isfinite(points).all(axis=1))
    dropped = int(len(points) - len(rows))
    if dropped:
        points = points[rows]
    if len(points) == 0:
        detail = f" ({dropped} had NaN or infinite coordinates)" if dropped else ""
        raise InputError(f"The point cloud has no usable points{detail}. Provide at least a few finite points.")
    _check_extent(points, len(points), precision)
    rng = np.random.default_rng(seed)
    if thin:
        chosen = thin_indices(points, n_points, rng)
        points, rows = points[chosen], rows[chosen]
    keep = ~stray_points(points, rng)
    kept, rows = points[keep], rows[keep]
    dropped += len(points) - len(kept)
    low, high = kept.min(axis=0), kept.max(axis=0)
    center = (low + high) / 2
    scale = float((high - low).max())
    _check_extent(kept, len(kept), precision)
    if not thin:
        chosen = rng.choice(len(kept), size=n_points, replace=len(kept) < n_points)
        kept, rows = kept[chosen], rows[chosen]
    canonical = ((kept - center) / scale).astype(np.float32)
    return canonical, Frame.of(center, scale), dropped, rows


def cloud_array_problem(points: np.ndarray) -> str | None:
    """What keeps an array from being a point cloud, in words that name the fix; None when it is one."""
    if points.dtype.kind not in "iuf":
        kind = {"b": "true/false values", "U": "text", "S": "text", "O": "Python objects"}.get(points.dtype.kind)
        return f"A point cloud must be numbers (x, y, z per row); this array holds {kind or points.dtype}."
    if points.ndim == 2 and points.shape[0] in (3, 4) and points.shape[1] > points.shape[0]:
        return (
            f"The array has shape {points.shape}: it looks transposed (one point per column). A point cloud has "
            f"one point per row: save array.T, shape ({points.shape[1]}, {points.shape[0]})."
        )
    if points.ndim != 2 or points.shape[1] < 3:
        return f"A point cloud must be an (N, 3) array (x, y, z per row); got shape {points.shape}."
    return None


def _check_extent(points: np.ndarray, count: int, precision: float = 0.0) -> None:
    """A cloud with a shape, at a place meshes can hold: not a single point, and within float32's range, where
    mesh files and Blender store coordinates (far beyond it, squared distances overflow to infinity). Points
    closer than their numbers resolve (float32 far from the origin) are the same place, and the message says so."""
    low, high = points.min(axis=0), points.max(axis=0)
    reach = float(np.abs(points).max())
    if reach > MAX_COORDINATE:
        raise InputError(
            f"The point cloud's coordinates reach {reach:.3g}, beyond the {MAX_COORDINATE:.2g} that meshes can "
            "store. Check the file's units, or rescale the cloud."
        )
    distance = float(np.abs((low + high) / 2).max())
    coarse = precision > FLOAT64_EPS  # float32 or float16 numbers: far from the origin they resolve metres
    resolved = 8 * max(precision, FLOAT64_EPS) * max(1.0, distance)
    if float((high - low).max()) <= resolved:
        detail = ""
        if coarse and distance > 1.0:
            detail = (
                f" Their numbers resolve only {resolved:.2g} at {distance:.3g} from the origin: store them as "
                "float64, or nearer the origin."
            )
        raise InputError(
            f"All {count} points are at the same place, so the cloud has no shape to reconstruct.{detail} "
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
    grid = NeighbourGrid(points, k + 1)
    sample = points[rng.choice(len(points), min(len(points), 512), replace=False)]
    limit = max(OUTLIER_FACTOR * float(np.quantile(grid.distances(sample), 0.9)), 1e-12)
    tested = np.zeros(len(points), dtype=bool)
    # The EXTREMES lowest and highest inliers along each axis, per round, come from the most extreme points at
    # the start: a round drops at most 6 * EXTREMES strays, so these pools, sorted once, always hold them.
    pools = _extreme_pools(points, EXTREMES * (1 + 6 * STRAY_ROUNDS))
    for _ in range(STRAY_ROUNDS):
        if len(points) - stray.sum() > 2 * EXTREMES:
            candidates = np.unique(np.concatenate([pool[~stray[pool]][:EXTREMES] for pool in pools]))
        else:
            candidates = np.flatnonzero(~stray)
        candidates = candidates[~tested[candidates]]
        if len(candidates) == 0:
            break
        tested[candidates] = True
        far = grid.distances(points[candidates]) > limit
        if not far.any():
            break
        stray[candidates[far]] = True
    return stray


def _extreme_pools(points: np.ndarray, size: int) -> list[np.ndarray]:
    """For each axis, the indices of the `size` lowest points in increasing order and of the `size` highest in
    decreasing order."""
    size = min(size, len(points))
    pools = []
    for column in points.T:
        low = np.argpartition(column, size - 1)[:size] if size < len(points) else np.arange(len(points))
        high = np.argpartition(column, len(points) - size)[len(points) - size :]
        pools += [low[np.argsort(column[low], kind="stable")], high[np.argsort(-column[high], kind="stable")]]
    return pools


class NeighbourGrid:
    """Distance from query points to their `order`-th nearest point of a cloud (a query that is a point of the
    cloud counts itself), exact, on numpy alone: the points sorted by cell of a uniform grid sized to hold about
    `order` points a cell on a surface, and each query searching the cube of cells around it until the cube
    holds `order` points no farther than the cube's inner radius (or scanning all points, when that is
    cheaper). Queries are few (hundreds), the cloud large.
    The grid is sized by the bulk of the cloud (percentiles of a sample), so strays far out do not coarsen it;
    cells beyond GRID_CELLS a side are clamped to the last, and a query out there is answered by brute force."""

    def __init__(self, points: np.ndarray, order: int) -> None:
        self.points, self.order = points, order
        self.low = points.min(axis=0)
        sample = points[np.random.default_rng(0).choice(len(points), min(len(points), 10_000), replace=False)]
        bulk = float((np.percentile(sample, 99, axis=0) - np.percentile(sample, 1, axis=0)).max())
        extent = bulk if bulk > 0 else float((points.max(axis=0) - self.low).max())
        self.size = max(extent * min(1.0, (2.0 * order / len(points)) ** 0.5), 1e-300)  # a surface: 2 extent^2
        cells, _ = self._cells(points)
        self.shape = cells.max(axis=0) + 1
        keys = np.ravel_multi_index(cells.T, self.shape)
        self.order_of = np.argsort(keys)
        self.keys = keys[self.order_of]
        self.occupied = int(np.count_nonzero(np.diff(self.keys))) + 1

    def _cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells of points, and which of them were clamped into the grid."""
        position = (points - self.low) / self.size
        clamped = (position >= GRID_CELLS).any(axis=-1)
        return np.minimum(position, GRID_CELLS - 1).astype(np.int64), clamped

    def distances(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.float64)
        if len(self.points) > SMALL_CLOUD:
            return np.array([self._distance(q) for q in queries])
        out = np.empty(len(queries))
        step = max(1, (1 << 22) // len(self.points))
        for i in range(0, len(queries), step):  # a small cloud: every pair, a few million at a time
            squared = ((queries[i : i + step, None, :] - self.points[None]) ** 2).sum(axis=2)
            out[i : i + step] = np.sqrt(np.partition(squared, self.order - 1, axis=1)[:, self.order - 1])
        return out

    def _distance(self, query: np.ndarray) -> float:
        cells, clamped = self._cells(query[None])
        cell, reach = cells[0], 1
        # A cube costs a binary search per row of cells along the last axis; past len / 16 rows, scanning every
        # point is cheaper (a query far out in a sparse cloud).
        while not clamped[0] and (2 * reach + 1) ** 2 <= len(self.points) / 16:
            near = self._within(cell, reach)
            if len(near) >= self.order:
                distance = self._kth(query, self.points[near])
                if distance <= reach * self.size:  # anything outside the cube is farther than this
                    return distance
            reach *= 2
        return self._kth(query, self.points)

    def _within(self, cell: np.ndarray, reach: int) -> np.ndarray:
        """Indices of the points in the cells at most `reach` cells from `cell` along every axis: one contiguous
        run of sorted keys per row of cells along the last axis."""
        low, high = np.maximum(cell - reach, 0), np.minimum(cell + reach, self.shape - 1)
        if (low > high).any():
            return np.zeros(0, dtype=np.int64)
        rows = np.meshgrid(np.arange(low[0], high[0] + 1), np.arange(low[1], high[1] + 1), indexing="ij")
        first = ((rows[0] * self.shape[1] + rows[1]) * self.shape[2]).ravel()
        start = np.searchsorted(self.keys, first + low[2], side="left")
        count = np.searchsorted(self.keys, first + high[2], side="right") - start
        total = int(count.sum())
        offsets = np.repeat(start - np.cumsum(count) + count, count)
        return self.order_of[np.arange(total) + offsets]

    def _kth(self, query: np.ndarray, points: np.ndarray) -> float:
        squared = ((points - query) ** 2).sum(axis=1)
        return float(np.sqrt(np.partition(squared, self.order - 1)[self.order - 1]))


def thin_indices(points: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Which of the points to keep so that at most `cap` remain, spread evenly over the cloud: one per cell of
    the finest voxel grid that allows it (all of them, in order, when the cloud is within the cap)."""
    if len(points) <= cap:
        return np.arange(len(points))
    pool = np.arange(len(points))
    if len(points) > VOXEL_PRESAMPLE * cap:
        pool = rng.choice(len(points), VOXEL_PRESAMPLE * cap, replace=False)
    pool = pool[rng.permutation(len(pool))]
    candidates = points[pool]
    low = candidates.min(axis=0)
    size = float((candidates.max(axis=0) - low).max()) * (2.0 / cap) ** 0.5  # a closed surface spans 2 extent^2
    best = None
    for _ in range(8):  # a surface's occupied cells grow as size^-2: a few secant steps land just under the cap
        first = _one_per_cell(candidates, low, size)
        if len(first) <= cap and (best is None or len(first) > len(best)):
            best = first
        if best is not None and len(best) > 0.9 * cap:
            break
        size *= (len(first) / cap) ** 0.5 * (1.01 if len(first) > cap else 0.99)
    while best is None:
        size *= 1.5
        first = _one_per_cell(candidates, low, size)
        best = first if len(first) <= cap else None
    return pool[best]


def _one_per_cell(points: np.ndarray, low: np.ndarray, size: float) -> np.ndarray:
    cells = np.floor((points - low) / size).astype(np.int64)
    key = (cells[:, 0] * 2_097_152 + cells[:, 1]) * 2_097_152 + cells[:, 2]
    return np.unique(key, return_index=True)[1]
