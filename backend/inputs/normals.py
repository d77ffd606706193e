"""Normals for a cloud that has none, on numpy alone (both engines): each point's axis from its neighbours, and its
side from a model's own field.

A plane fitted to a point's nearest points gives its normal's axis but not its sign, and the sign is what the
point-attention model reads of a normal: which side of the surface is air. Propagating one sign along the
neighbour graph (Hoppe et al. 1992) fails on thin parts and close strands, where neighbours lie on both sides
and one wrong step flips a whole region. Here the model decides instead: its field, read without normals, is
probed a spacing ahead of and behind each point along the axis, the normal points to the emptier side, and each
point's verdict is pooled with its neighbours' (signs carried across by the axes' agreement), so a patch votes as
one. Points whose neighbours do not lie flat (edges and corners, noise as wide as a neighbourhood, a sparse cloud's
wide neighbourhoods) get none: a wrong normal costs more than a missing one. A thin part (a wall, a floor slab, a
board) tells its own side: where a point's wider neighbourhood holds two parallel faces, their offsets along its
axis fall in two clusters, and the air lies away from the other face. That side, pooled the same way, overrules
the field, which in a room, far from the solid objects it learned on, often turns a whole floor or wall the wrong
way (8 validation rooms at 100,000 points: IoU 0.686 -> 0.791). The model then reads the cloud again with these
normals: what it cannot tell from points alone (the air side of a floor, the open side of a partial scan) it is told.

A dense scan's neighbourhoods are so small that its noise is a good part of their width, and few of them lie
flat: at 30,000 points on an object, 2% of the points got a normal. So a dense cloud's normals are found on a
subset thinned to a coarser spacing, where planes fit, and lent to every point that lies on a nearby subset
point's plane (the nearest such plane, so each face of a thin panel keeps its own side).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .neighbours import K, nearest, spacing

PROBE_STEP = 1.0  # spacings ahead of and behind a point where the field is read
POOLING_ROUNDS = 3  # rounds of pooling each point's verdict with its neighbours'
FLATNESS = 0.05  # a point gets a normal when its neighbours' least spread is below this share of their spread
SPARSEST = 0.06  # spacing (of the canonical box) above which a cloud is read without found normals: about 2,000
# points on an object. Chosen on the real training meshes' validation split (IoU change with found normals, this
# gate against none at all: 300 points 0.000 against -0.031, 1,000 points -0.007 against -0.023, 3,000 points
# -0.001 against -0.009, 3,000 points from 2 sides +0.041 against +0.038; 30,000 points +0.010 either way)
DENSEST = 0.02  # spacing below which normals are found on a subset thinned to it, then lent (about 25,000 points)
LENDERS = 16  # a point's nearest subset points whose planes it may lie on
ON_PLANE = 1.0  # how near (in the cloud's own spacings) a point must lie to a lender's plane to take its normal
WIDE = 48  # a point's nearest that may hold a thin part's other face (at 100,000 points on a room: 2.7 spacings)
PARALLEL = 0.8  # neighbours whose axes lie this near the point's (|cosine|) face the same way
SEPARATION = 4.5  # the two faces' offsets lie this many of their own spreads apart (noise on one face: about 2.7)
FACE_POINTS = 4  # the fewest points that make a face
THIN_AGREEMENT = 0.2  # how far a patch's pooled thin-part sides must lean one way to be taken
# The last three chosen on the first 8 validation rooms at 100,000 points (IoU: separation 3 0.741, 4.5 0.755,
# 6 0.761, 9 0.688 unpooled; pooled at 4.5, agreement 0.1 0.783, 0.2 0.791, 0.35 0.741)


def field_normals(
    points: np.ndarray, neighbours: np.ndarray | None, unit: float, logits: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """(N, 3) float32 outward unit normals of points (N, 3) in random order (a prepared cloud's), zero where none
    is found; `neighbours` (N, K) are their K nearest (found here when None: only a cloud at least DENSEST apart
    reads them), `unit` is the spacing and `logits` the field whose emptier side each normal points to (when
    encoding, the cloud read without normals; when carving open space, the latent's own)."""
    if unit >= DENSEST:
        wide = nearest(points, WIDE)
        return _found_normals(points, wide[:, :K] if neighbours is None else neighbours, wide, unit, logits)
    subset = points[: max(K, math.ceil(len(points) * (unit / DENSEST) ** 2))]
    wide = nearest(subset, WIDE)  # nearest first, so its first K are the subset's neighbours
    found = _found_normals(subset, wide[:, :K], wide, spacing(subset, wide[:, :K]), logits)
    return _lent_normals(points, subset, found, unit)


def _lent_normals(points: np.ndarray, subset: np.ndarray, found: np.ndarray, unit: float) -> np.ndarray:
    """Each point's normal from the plane of whichever of its LENDERS nearest subset points it lies nearest to,
    none where no such plane passes within ON_PLANE spacings."""
    lenders = nearest(subset, LENDERS, points)
    normals = found[lenders]
    offsets = points[:, None, :].astype(np.float64) - subset[lenders]
    distance = np.abs(np.einsum("nkc,nkc->nk", offsets, normals))
    distance[~np.any(found != 0, axis=1)[lenders]] = np.inf
    best = np.argmin(distance, axis=1)
    rows = np.arange(len(points))
    return normals[rows, best] * (distance[rows, best] < ON_PLANE * unit)[:, None]


def _found_normals(
    points: np.ndarray,
    neighbours: np.ndarray,
    wide: np.ndarray,
    unit: float,
    logits: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Normals from each point's own neighbourhood (`neighbours`, its K nearest) and the field's verdict, pooled,
    unless its WIDE nearest (`wide`) show a thin part's side (see the module's docstring)."""
    around = points[neighbours].astype(np.float64)
    around -= around.mean(axis=1, keepdims=True)
    spread, frames = np.linalg.eigh(np.einsum("nki,nkj->nij", around, around))
    axes = frames[:, :, 0]
    flat = spread[:, 0] <= FLATNESS * spread.sum(axis=1)
    step = PROBE_STEP * unit * axes
    probes = np.concatenate([points - step, points + step]).astype(np.float32)
    behind, ahead = np.split(np.asarray(logits(probes), dtype=np.float64), 2)
    agreement = np.sign(np.einsum("nkc,nc->nk", axes[neighbours], axes))
    verdict = _pooled(behind - ahead, neighbours, agreement)
    side = np.where(verdict >= 0, 1.0, -1.0) * flat
    thin = _pooled(_thin_sides(points, axes, wide), neighbours, agreement)
    side = np.where(np.abs(thin) > THIN_AGREEMENT, np.sign(thin), side)
    return (axes * side[:, None]).astype(np.float32)


def _pooled(values: np.ndarray, neighbours: np.ndarray, agreement: np.ndarray) -> np.ndarray:
    """Each point's value averaged with its neighbours' POOLING_ROUNDS times, a neighbour's sign turned where its
    axis points the other way (`agreement`), so a patch's points come to one verdict."""
    for _ in range(POOLING_ROUNDS):
        values = (values[neighbours] * agreement).mean(axis=1)
    return values


def _thin_sides(points: np.ndarray, axes: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """(N,) +1 or -1 where a point lies on one face of a thin part (its normal's sign along its axis: away from
    the other face), 0 elsewhere, before pooling. The offsets along the axis of its WIDE nearest that face the same
    way are split in two by 1-D k-means; two faces when the split's means lie SEPARATION of their spread apart, the
    point on the one its own offset (0) falls in."""
    offsets = np.einsum("nkc,nc->nk", points[wide].astype(np.float64) - points[:, None, :], axes)
    facing = np.abs(np.einsum("nkc,nc->nk", axes[wide], axes)) > PARALLEL
    low = np.where(facing, offsets, np.inf).min(axis=1)
    high = np.where(facing, offsets, -np.inf).max(axis=1)
    for _ in range(8):
        upper = facing & (offsets > ((low + high) / 2)[:, None])
        lower = facing & ~upper
        high = np.where(upper.any(axis=1), (offsets * upper).sum(axis=1) / np.maximum(upper.sum(axis=1), 1), high)
        low = np.where(lower.any(axis=1), (offsets * lower).sum(axis=1) / np.maximum(lower.sum(axis=1), 1), low)
    split = (low + high) / 2
    upper = facing & (offsets > split[:, None])
    lower = facing & ~upper
    square = np.where(upper, (offsets - high[:, None]) ** 2, 0) + np.where(lower, (offsets - low[:, None]) ** 2, 0)
    spread = np.sqrt(square.sum(axis=1) / np.maximum(facing.sum(axis=1), 1))
    faces = (high - low > SEPARATION * spread) & (np.minimum(upper.sum(axis=1), lower.sum(axis=1)) >= FACE_POINTS)
    return np.where(split < 0, 1.0, -1.0) * faces
