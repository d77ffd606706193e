"""Every pixel of every reference picture shows in the result. Carving keeps the result inside each silhouette; the
sheets here keep it from falling short of one. A sheet is a thin plate across the silhouette pixels it covers, at
a depth of its own per pixel, which the views decoder adds to the network's field (and carves like it):

- a lone picture's sheet covers its whole silhouette: with a thickness head (`backend.models.thickness`), inflated
  round and scaled as the head reads the picture, the result's whole depth; without one, a plate on the picture's
  plane, and the network's guess does the rest;
- with several pictures, a pixel gets one where the network leaves its ray (nearly) empty, and every pixel of the
  silhouette's rim does, at the depth along the ray where the network came closest to filling it: a strut the
  network thinned away, the rim of a rounded part, an edge whose ray the network fills too thinly across for the
  extraction grid to see.

A sheet is stored per pixel as its weight, its middle's depth and its half-thickness (at least a plate's, SHEET).
Its logit peaks at the carving's (`CARVE`), so its surface meets the carving's at the silhouette's edge.

numpy only: both engines find the same sheets by driving their own field.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import BOX_SIZE
from .pieces import nearest_distance

SHEET = 0.03  # a plate's half-thickness, in crop half-widths: the thinnest sheet, which marching cubes still sees
THICKNESS_SCALES = np.exp(np.linspace(np.log(0.25), np.log(4.0), 25))  # what a thickness head picks among
RAY_SAMPLES = 64  # depths sampled along each silhouette pixel's ray across the frame's box
FILLED_SAMPLES = 2  # a ray with fewer samples above the threshold is empty: too thin to survive marching cubes


def pixel_centres(m: int) -> np.ndarray:
    """(m,) grid coordinates in [-1, 1] of the centres of a square picture's m pixels along either side."""
    return (np.arange(m) + 0.5) / m * 2 - 1


def mask_at(mask: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The mask's value at grid coordinates (N, 2) in [-1, 1] (x across, y down), nearest pixel, 0 outside."""
    m = mask.shape[0]
    cols = np.floor((grid[:, 0] + 1) / 2 * m).astype(np.int64)
    rows = np.floor((grid[:, 1] + 1) / 2 * m).astype(np.int64)
    inside = (cols >= 0) & (cols < m) & (rows >= 0) & (rows < m)
    values = np.zeros(len(grid), np.float32)
    values[inside] = mask[rows[inside], cols[inside]]
    return values


def plain_sheets(masks: np.ndarray) -> np.ndarray:
    """(V, 3, M, M) sheets (weight, depth, half-thickness) of masks (V, 1, M, M) before the network is asked: a
    lone picture's whole silhouette as a plate on its plane; none for several."""
    sheets = np.zeros((len(masks), 3, *masks.shape[2:]), np.float32)
    sheets[:, 2] = SHEET
    if len(masks) == 1:
        sheets[0, 0] = masks[0, 0]
    return sheets


def first_sheets(masks: np.ndarray, thickness: np.ndarray | None) -> np.ndarray:
    """(V, 3, M, M) sheets of masks (V, 1, M, M) as encoded, before any are found: a lone picture's from a thickness
    head's logits (1, len(THICKNESS_SCALES); `backend.models.thickness`) when the model has one, its silhouette
    inflated round and scaled by `judged_scale`, never thinner than a plate; otherwise `plain_sheets`."""
    sheets = plain_sheets(masks)
    if thickness is not None and len(masks) == 1:
        sheets[0, 2] = np.maximum(judged_scale(thickness[0]) * inflation(masks[0, 0]), SHEET)
    return sheets


def judged_scale(logits: np.ndarray) -> float:
    """The scale a thickness head's logits (len(THICKNESS_SCALES),) judge: the scales' geometric mean weighted by
    the logits' softmax. Unlike the top-scored scale it moves smoothly with the picture, so a picture and the same
    one masked a pixel differently come out alike (their top scales were three steps, 41%, apart on a held-out
    mug), and it scores as well (held-out front pictures 0.384 against 0.379, validation 0.365 against 0.367)."""
    weights = np.exp(logits - logits.max())
    return float(np.exp(weights @ np.log(THICKNESS_SCALES) / weights.sum()))


def inflation(mask: np.ndarray) -> np.ndarray:
    """(M, M) half-thickness, in crop half-widths, of a silhouette (M, M mask) inflated round: at a pixel d from the
    outside, sqrt(d (2 r - d)), r the deepest pixel's d; a disc becomes a ball, a strip a cylinder (the profile of
    Igarashi et al.'s Teddy)."""
    m = mask.shape[0]
    inside = mask >= 0.5
    distance = np.zeros((m, m))
    if not inside.any():
        return distance
    outside = _rim(~np.pad(inside, 1))  # the outside pixels beside the silhouette (and the frame's edge)
    edge = np.argwhere(outside).astype(np.float64) - 1.0
    distance[inside] = nearest_distance(np.argwhere(inside).astype(np.float64), edge) * 2.0 / m
    deepest = distance.max()
    return np.sqrt(np.clip(distance * (2 * deepest - distance), 0.0, None))


def find_sheets(
    affines: np.ndarray, masks: np.ndarray, field: Callable[[np.ndarray], np.ndarray], threshold_logit: float
) -> np.ndarray:
    """(V, 3, M, M) sheets of several pictures: each silhouette pixel on the rim or whose ray the field (the
    network's, with no sheets) leaves empty gets weight 1 and, as every silhouette pixel, the depth of its ray's
    highest logit. Samples outside the frame's box or another silhouette are carved anyway and are not asked."""
    views, m = len(masks), masks.shape[-1]
    sheets = plain_sheets(masks)
    centres = pixel_centres(m)
    corners = np.stack(np.meshgrid(*[[-BOX_SIZE / 2, BOX_SIZE / 2]] * 3, indexing="ij"), -1).reshape(-1, 3)
    for v in range(views):
        silhouette = masks[v, 0] >= 0.5
        rows, cols = np.nonzero(silhouette)
        if len(rows) == 0:
            continue
        reach = corners @ affines[v, 2, :3] + affines[v, 2, 3]
        depths = np.linspace(reach.min(), reach.max(), RAY_SAMPLES)
        grid = np.stack(np.broadcast_arrays(centres[cols, None], centres[rows, None], depths[None, :]), -1)
        points = _in_frame(affines[v], grid.reshape(-1, 3))
        asked = (np.abs(points) <= BOX_SIZE / 2).all(axis=1)
        for u in range(views):
            if u != v:
                seen = points[asked] @ affines[u, :2, :3].T + affines[u, :2, 3]
                asked[asked] = mask_at(masks[u, 0], seen) >= 0.5
        logits = np.full(len(points), -np.inf, np.float32)
        logits[asked] = field(points[asked])
        logits = logits.reshape(len(rows), RAY_SAMPLES)
        empty = (logits > threshold_logit).sum(axis=1) < FILLED_SAMPLES
        kept = empty | _rim(silhouette)[rows, cols]
        sheets[v, 0, rows, cols] = kept & np.isfinite(logits.max(axis=1))
        sheets[v, 1, rows, cols] = depths[logits.argmax(axis=1)]
        sheets[v, :2] = _widened(sheets[v, :2])
    return sheets


def sheet_points(affines: np.ndarray, masks: np.ndarray, sheets: np.ndarray) -> np.ndarray:
    """(N, 3) points in the frame where every silhouette pixel's sheet lies: its centre at the sheet's depth (a lone
    picture's plane; with several, the depth of the ray's highest logit). They seed the extraction's search
    (`backend.surface.mise`), which a part thinner than its coarse cells (a strut one pixel wide) would escape."""
    centres = pixel_centres(masks.shape[-1])
    points = []
    for v in range(len(masks)):
        rows, cols = np.nonzero(masks[v, 0] >= 0.5)
        grid = np.stack([centres[cols], centres[rows], sheets[v, 1, rows, cols]], axis=1)
        points.append(_in_frame(affines[v], grid))
    return np.concatenate(points)


def _in_frame(affine: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(N, 3) float32 frame points of grid coordinates and depths (N, 3) of the view whose affine map is given."""
    linear, offset = affine[:, :3].astype(np.float64), affine[:, 3].astype(np.float64)
    return ((grid - offset) @ np.linalg.inv(linear).T).astype(np.float32)


def _rim(silhouette: np.ndarray) -> np.ndarray:
    """The silhouette's pixels (M, M bool) with a pixel beside them (not across a corner) outside it."""
    padded = np.pad(silhouette, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return silhouette & ~interior


def _widened(sheet: np.ndarray) -> np.ndarray:
    """A sheet (2, M, M) one pixel wider all round, at its neighbours' mean depth, and that depth carried one pixel
    further: a pixel's sheet then survives a grid coarser than the picture, and stays flat to its edge where the
    depth is read between pixels (a steep plate is thinner than it looks)."""
    weight, depth = sheet[0].copy(), sheet[1].copy()
    m = weight.shape[0]
    for ring in range(2):
        total, count = np.zeros_like(depth), np.zeros_like(depth)
        padded_weight, padded_depth = np.pad(weight, 1), np.pad(depth, 1)
        for dy in range(3):
            for dx in range(3):
                w = padded_weight[dy : dy + m, dx : dx + m]
                total += w * padded_depth[dy : dy + m, dx : dx + m]
                count += w
        grown = (weight == 0) & (count > 0)
        depth[grown] = total[grown] / count[grown]
        if ring == 0:
            weight[grown] = 1.0
    return np.stack([weight, depth])
