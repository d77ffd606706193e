"""Inside/outside of closed meshes and volumetric IoU, the paper's occupancy-based measures."""

from __future__ import annotations

import numpy as np

HASH_RESOLUTION = 256
POINTS_PER_CHUNK = 50_000


def mesh_contains(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which points lie inside a closed mesh: parity of crossings of a ray cast along +Z."""
    return ray_crossings(vertices, faces, points) % 2 == 1


def ray_crossings(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """How many of the mesh's triangles a ray cast from each point along +Z crosses.

    Triangles are hashed into a 2-D grid over their XY footprint, so each point only tests the
    triangles above its own cell (the approach of the Occupancy Networks evaluation code).
    """
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    points = np.asarray(points, np.float64)
    crossings = np.zeros(len(points), dtype=np.int64)
    if len(tri) == 0 or len(points) == 0:
        return crossings
    origin = tri[:, :, :2].min(axis=(0, 1))
    cell = max(float((tri[:, :, :2].max(axis=(0, 1)) - origin).max()) / HASH_RESOLUTION, 1e-12)
    lo = np.clip(((tri[:, :, :2].min(axis=1) - origin) / cell).astype(np.int64), 0, HASH_RESOLUTION - 1)
    hi = np.clip(((tri[:, :, :2].max(axis=1) - origin) / cell).astype(np.int64), 0, HASH_RESOLUTION - 1)
    span = hi - lo + 1
    counts = span[:, 0] * span[:, 1]
    tri_of_pair = np.repeat(np.arange(len(tri)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cx = lo[tri_of_pair, 0] + local % span[tri_of_pair, 0]
    cy = lo[tri_of_pair, 1] + local // span[tri_of_pair, 0]
    order = np.argsort(cx * HASH_RESOLUTION + cy, kind="stable")
    pair_cells, pair_tris = (cx * HASH_RESOLUTION + cy)[order], tri_of_pair[order]
    for start in range(0, len(points), POINTS_PER_CHUNK):
        chunk = points[start : start + POINTS_PER_CHUNK]
        crossings[start : start + len(chunk)] = _ray_crossings(chunk, tri, origin, cell, pair_cells, pair_tris)
    return crossings


def _ray_crossings(points, tri, origin, cell, pair_cells, pair_tris) -> np.ndarray:
    index = np.floor((points[:, :2] - origin) / cell).astype(np.int64)
    valid = ((index >= 0) & (index < HASH_RESOLUTION)).all(axis=1)
    keys = index[:, 0] * HASH_RESOLUTION + index[:, 1]
    first = np.searchsorted(pair_cells, keys, side="left")
    last = np.searchsorted(pair_cells, keys, side="right")
    n = np.where(valid, last - first, 0)
    point_of_pair = np.repeat(np.arange(len(points)), n)
    candidate = pair_tris[np.repeat(first, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)]
    a, b, c = (tri[candidate, i] for i in range(3))
    p = points[point_of_pair]
    # Barycentric coordinates of p's XY in the triangle's XY projection; half-open edges avoid double counts.
    det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    nonzero = np.abs(det) > 1e-18
    safe = np.where(nonzero, det, 1.0)
    w0 = ((b[:, 1] - c[:, 1]) * (p[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (p[:, 1] - c[:, 1])) / safe
    w1 = ((c[:, 1] - a[:, 1]) * (p[:, 0] - c[:, 0]) + (a[:, 0] - c[:, 0]) * (p[:, 1] - c[:, 1])) / safe
    w2 = 1.0 - w0 - w1
    hit = nonzero & (w0 >= 0) & (w1 >= 0) & (w2 > 0)
    z = w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2]
    return np.bincount(point_of_pair[hit & (z > p[:, 2])], minlength=len(points))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean occupancy arrays over the same points."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def solid_iou(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], count: int = 100_000, seed: int = 0
) -> float:
    """IoU of the insides of two closed meshes, each (vertices, faces), on uniform points in their joint bounding
    box: how far two reconstructions of one input agree."""
    low = np.minimum(a[0].min(0), b[0].min(0))
    high = np.maximum(a[0].max(0), b[0].max(0))
    points = np.random.default_rng(seed).uniform(low, high, (count, 3))
    return iou(mesh_contains(*a, points), mesh_contains(*b, points))


def winding_number(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, budget: int = 400_000) -> np.ndarray:
    """Generalized winding number (Jacobson et al. 2013): ~1 inside, ~0 outside, robust to holes.

    Sums the solid angle every triangle subtends at each point: cost grows with points x triangles,
    so callers keep meshes small. `budget` bounds the pairs per chunk, sized to stay in cache.
    """
    import torch

    tri = torch.from_numpy(np.asarray(vertices, np.float32)[np.asarray(faces)])
    out = np.empty(len(points), dtype=np.float64)
    chunk = max(1, budget // max(1, len(tri)))
    for start in range(0, len(points), chunk):
        p = torch.from_numpy(np.asarray(points[start : start + chunk], np.float32))[:, None, :]
        a, b, c = tri[None, :, 0] - p, tri[None, :, 1] - p, tri[None, :, 2] - p
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.linalg.cross(b, c)).sum(-1)
        denom = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[start : start + len(p)] = (torch.atan2(det, denom).sum(-1) / (2 * np.pi)).double().numpy()
    return out
