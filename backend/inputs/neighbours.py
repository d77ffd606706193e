"""Nearest input points, on numpy alone: what the point-attention model reads around every point and query.

Both engines (PyTorch and the built-in CPU runtime) and training find the same neighbourhoods here. Distances
are measured in the cloud's own *spacing* (the median distance from a point to its k-th nearest point), which
makes the neighbourhoods, and so the model, indifferent to the cloud's scale and density: a 5 cm part and a 5 m
room look alike to it at the scale of their points.

- `nearest`: the exact k nearest points of a cloud to each of its own points, or to other points (the per-point
  features, at the cloud's own spacing and at the coarser level's).
- `QueryNeighbours`: for query points, at each of LEVELS levels, the exact k nearest points of that level's cloud
  no farther than RADIUS of that level's spacings. Level l is the first N / 16^l points of the cloud (kept in
  random order, so each level thins the one before evenly; its spacing is 4^l times the cloud's): level 0 reads
  the surface's detail near it, level 1 the shape a few spacings away (across a thin gap), level 2 the shape
  around a query far from every point (between the strands of a knot, in the middle of a room).
- `Candidates`: the points of one level within the 3 x 3 x 3 cells of RADIUS spacings around each query, among
  which the built-in runtime's graph picks the same k nearest itself (a TopK, multi-threaded in ONNX Runtime).
"""

from __future__ import annotations

import math

import numpy as np

K = 16  # neighbours per point and per query
RADIUS = 1.5  # spacings: a query reads the points of each level no farther than this many of its spacings
LEVELS = 3  # levels of the cloud a query reads
LEVEL_THINNING = 16  # each level keeps a sixteenth of the points before it, so its spacing is 4 times as wide
CELL = RADIUS  # grid cells as wide as the radius: a block of 3 x 3 x 3 cells holds a query's whole ball
CHUNK = 32_768  # queries per block search (a few tens of MB of candidate indices)

try:  # the PyTorch backend and training have SciPy; the built-in runtime finds the same neighbours on numpy
    from scipy.spatial import cKDTree
except ImportError:  # pragma: no cover - exercised by the runtime tests, which block SciPy
    cKDTree = None


def nearest(cloud: np.ndarray, k: int = K, queries: np.ndarray | None = None, reach: float | None = None) -> np.ndarray:
    """(M, k) int64: the indices of the k nearest points of the cloud to each query (default: to each of its own
    points, each then its own first neighbour), nearest first; a cloud of fewer than k points repeats the
    farthest. Exact on either search (SciPy's tree, or the numpy grid the built-in runtime uses), so both engines
    agree. `reach`: about how far the queries' k-th nearest lie, for queries far from the cloud (the grid's cells,
    which otherwise fit the cloud's own spacing, then hold them; only the numpy search's speed depends on it)."""
    cloud = np.asarray(cloud, dtype=np.float32)
    queries = cloud if queries is None else np.asarray(queries, dtype=np.float32)
    count = min(k, len(cloud))
    if cKDTree is not None:
        _, found = cKDTree(cloud).query(queries, count)
        found = np.asarray(found, dtype=np.int64).reshape(len(queries), count)
    else:
        extent = float((cloud.max(axis=0) - cloud.min(axis=0)).max())
        guess = max(extent * (2.0 * count / len(cloud)) ** 0.5, 1e-9)  # a surface spans about 2 extent^2
        found = _nearest_on_grid(cloud, queries, count, guess if reach is None else max(guess, reach))
    if count < k:
        found = np.concatenate([found, np.repeat(found[:, -1:], k - count, axis=1)], axis=1)
    return found


def spacing(points: np.ndarray, neighbours: np.ndarray) -> float:
    """The median distance from a point to its k-th nearest (the last of `neighbours`, from `nearest`): the unit
    of every neighbourhood. A cloud whose points all sit on others falls back to its extent over sqrt(N)."""
    points = np.asarray(points, dtype=np.float64)
    unit = float(np.median(np.sqrt(((points[neighbours[:, -1]] - points) ** 2).sum(axis=1))))
    if not unit > 0:
        unit = float((points.max(axis=0) - points.min(axis=0)).max()) / max(1.0, np.sqrt(len(points)))
    return max(unit, 1e-12)


def _nearest_on_grid(cloud: np.ndarray, queries: np.ndarray, k: int, width: float) -> np.ndarray:
    """Exact k nearest on a grid of cells `width` wide: each query's 3 x 3 x 3 block of cells holds every point
    closer than its distance to the block's faces; queries whose k-th neighbour lies farther (or outside the
    grid) are searched against the whole cloud."""
    grid = _Grid(cloud, width)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), CHUNK):
        chunk = queries[start : start + CHUNK]
        cells = grid.cells(chunk)
        found, squared = _k_smallest(cloud, chunk, grid.blocks(cells), k)
        unsure = ~(squared[:, -1] <= grid.clearance(chunk, cells) ** 2)
        for i in np.flatnonzero(unsure):
            d = ((cloud - chunk[i]) ** 2).sum(axis=1)
            best = np.argpartition(d, k - 1)[:k]
            found[i] = best[np.argsort(d[best], kind="stable")]
        out[start : start + len(chunk)] = found
    return out


def _k_smallest(
    points: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of each query's candidates (rows of indices padded with -1), nearest first, and their
    squared distances (infinite where a row has fewer than k)."""
    if candidates.shape[1] < k:
        candidates = np.pad(candidates, ((0, 0), (0, k - candidates.shape[1])), constant_values=-1)
    squared = ((points[np.maximum(candidates, 0)] - queries[:, None, :]) ** 2).sum(axis=2)
    squared[candidates < 0] = np.inf
    best = np.argpartition(squared, k - 1, axis=1)[:, :k]
    best_squared = np.take_along_axis(squared, best, axis=1)
    order = np.argsort(best_squared, axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    return np.take_along_axis(candidates, best, axis=1), np.take_along_axis(best_squared, order, axis=1)


def level_size(count: int, level: int) -> int:
    """How many of a cloud's first points make up a level (at least one)."""
    return max(1, math.ceil(count / LEVEL_THINNING**level))


def level_unit(unit: float, level: int) -> float:
    return unit * math.sqrt(LEVEL_THINNING) ** level


class QueryNeighbours:
    """For query points, at each level, the k nearest points of that level no farther than RADIUS of its
    spacings (see the module's docstring): built once per cloud, then asked for batch after batch."""

    def __init__(self, points: np.ndarray, unit: float, k: int = K) -> None:
        points = np.asarray(points, dtype=np.float32)
        self.levels = [
            NearestWithin(points[: level_size(len(points), level)], RADIUS * level_unit(unit, level), k)
            for level in range(LEVELS)
        ]

    def __call__(self, queries: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per level, (M, k) int64 indices, nearest first, and (M, k) which of them exist (a query with fewer
        points that near has missing neighbours, index 0)."""
        return [level(queries) for level in self.levels]


class NearestWithin:
    """The k nearest points of a cloud no farther than `radius` from each query: SciPy's tree where it is, else
    the numpy `Candidates`; the same points either way."""

    def __init__(self, cloud: np.ndarray, radius: float, k: int = K) -> None:
        self.cloud, self.radius, self.k = np.asarray(cloud, dtype=np.float32), float(radius), k
        self.search = cKDTree(self.cloud) if cKDTree is not None else Candidates(self.cloud, self.radius)

    def __call__(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, k) int64 indices, nearest first, and (M, k) which of them exist (missing ones are index 0)."""
        queries = np.asarray(queries, dtype=np.float32)
        count = min(self.k, len(self.cloud))
        if isinstance(self.search, Candidates):
            found = np.empty((len(queries), count), np.int64)
            exists = np.empty((len(queries), count), bool)
            for start in range(0, len(queries), CHUNK):
                chunk = queries[start : start + CHUNK]
                best, squared = _k_smallest(self.cloud, chunk, self.search(chunk), count)
                found[start : start + len(chunk)] = best
                exists[start : start + len(chunk)] = squared <= self.radius**2
        else:
            distance, found = self.search.query(queries, count, distance_upper_bound=self.radius)
            distance = np.asarray(distance).reshape(len(queries), count)
            found = np.asarray(found).reshape(len(queries), count)
            exists = distance <= self.radius
        found = np.where(exists, found, 0).astype(np.int64)
        if count < self.k:
            pad = ((0, 0), (0, self.k - count))
            found, exists = np.pad(found, pad), np.pad(exists, pad)
        return found, exists


class Candidates:
    """For query points, a superset of the points of a cloud within `radius` of each, from which the k nearest
    within it are picked: the points in the 3 x 3 x 3 block of radius-wide cells around the query's cell; or, when
    many queries share each cell (MISE's lattice on a sparse cloud), the points no farther than `radius` from a cell
    half the radius wide, about 40% fewer for the graph to measure, found at a cost per cell."""

    SHARED = 4  # queries per fine cell from which cutting each cell's candidates pays

    def __init__(self, points: np.ndarray, radius: float) -> None:
        points = np.asarray(points, dtype=np.float32)
        self.radius = float(radius)
        self.grid = _Grid(points, radius, reach=1)
        self.fine = _Grid(points, radius / 2, reach=2)

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        """(M, W) int64 indices into the cloud, each row's first and then -1 (W at least 1)."""
        queries = np.asarray(queries, dtype=np.float32)
        unique, inverse = np.unique(self.fine.keys_of(self.fine.cells(queries)), return_inverse=True)
        if len(unique) * self.SHARED <= len(queries):
            return self.fine.blocks_of_keys(unique, within=self.radius)[inverse]
        return self.grid.blocks(self.grid.cells(queries))


class _Grid:
    """Points sorted by cell of a uniform grid (cells `width` wide), so that each row of cells along Z is one run
    of the sorted keys; a cell's block is the cells at most `reach` away along every axis. 2 reach + 1 empty cells
    of margin on every side give every query within `reach` cells of a point a whole block."""

    def __init__(self, points: np.ndarray, width: float, reach: int = 1) -> None:
        self.points, self.width, self.reach = points, float(width), reach
        margin = 2 * reach + 1
        self.low = points.min(axis=0).astype(np.float64) - margin * self.width
        cells = np.floor((points - self.low) / self.width).astype(np.int64)
        self.shape = cells.max(axis=0) + margin + 1
        keys = self.keys_of(cells)
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]

    def cells(self, queries: np.ndarray) -> np.ndarray:
        """Cells of queries; those outside the grid (and its margin) are marked -1 on every axis."""
        cells = np.floor((queries - self.low) / self.width).astype(np.int64)
        outside = ((cells < self.reach) | (cells >= self.shape - self.reach)).any(axis=1)
        cells[outside] = -1
        return cells

    def keys_of(self, cells: np.ndarray) -> np.ndarray:
        keys = (cells[:, 0] * self.shape[1] + cells[:, 1]) * self.shape[2] + cells[:, 2]
        return np.where(cells[:, 0] < 0, -1, keys)

    def clearance(self, queries: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Distance from each query to the faces of its block (0 outside the grid)."""
        low = self.low + (cells - self.reach) * self.width
        high = low + (2 * self.reach + 1) * self.width
        distance = np.minimum(queries - low, high - queries).min(axis=1)
        return np.where(cells[:, 0] < 0, 0.0, distance)

    def _runs(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and length in the sorted keys of the Z-runs of cells that make each key's block."""
        z = keys % self.shape[2]
        row = keys - z
        starts, lengths = [], []
        for dx in range(-self.reach, self.reach + 1):
            for dy in range(-self.reach, self.reach + 1):
                base = row + (dx * self.shape[1] + dy) * self.shape[2]
                first = np.searchsorted(self.sorted_keys, base + z - self.reach, side="left")
                last = np.searchsorted(self.sorted_keys, base + z + self.reach, side="right")
                starts.append(first)
                lengths.append(np.where(keys < 0, 0, last - first))
        return np.stack(starts, axis=1), np.stack(lengths, axis=1)

    def blocks(self, cells: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(self.keys_of(cells), return_inverse=True)
        return self.blocks_of_keys(unique)[inverse]

    def blocks_of_keys(self, keys: np.ndarray, within: float | None = None) -> np.ndarray:
        """(U, W) indices of the points in each key's block (only those no farther than `within` from the key's
        cell, when given), each row's first, padded with -1."""
        starts, lengths = self._runs(keys)
        totals = lengths.sum(axis=1)
        out = np.full((len(keys), max(1, int(totals.max(initial=0)))), -1, dtype=np.int64)
        flat = lengths.ravel()
        row = np.repeat(np.arange(len(keys)), totals)
        column = np.arange(int(totals.sum())) - np.repeat(np.cumsum(totals) - totals, totals)
        inside = np.arange(int(flat.sum())) - np.repeat(np.cumsum(flat) - flat, flat)
        out[row, column] = self.order[np.repeat(starts.ravel(), flat) + inside]
        if within is None:
            return out
        cells = np.stack(np.unravel_index(np.maximum(keys, 0), self.shape), axis=1)
        low = self.low + cells * self.width
        offset = self.points[np.maximum(out, 0)] - (low + self.width / 2)[:, None, :]
        gap = np.maximum(np.abs(offset) - self.width / 2, 0.0)
        keep = (out >= 0) & ((gap**2).sum(axis=2) <= within**2)
        packed = np.full((len(keys), max(1, int(keep.sum(axis=1).max(initial=0)))), -1, dtype=np.int64)
        rows, columns = np.nonzero(keep)
        packed[rows, (np.cumsum(keep, axis=1) - 1)[rows, columns]] = out[rows, columns]
        return packed
