"""Orthographic pictures of stored shapes, as a Blender reference image shows an object (`backend.inputs.views.View`),
for training and evaluating the view model.

Rendered by splatting the shape's dense surface sample (pointcloud.npz: points and normals) into a z-buffer on
numpy alone: any training shape renders in milliseconds, with no ray tracer. Each sample covers the pixel it falls
in, so silhouettes keep their size; samples facing away or seen edge-on are dropped (where the front surface
happens to have no sample, the back would show through), and an empty pixel between two covered ones (across,
down or diagonally) is a gap between samples and takes their nearer surface.
"""

from __future__ import annotations

import numpy as np

from ..inputs.views import View

GAP_PASSES = 3  # gaps a few pixels wide between sparse samples close from both sides
# Samples must face the viewer by this much (the cosine): those facing away are hidden by the surface in front, and
# faces seen edge-on would mark the pixels their edge merely touches (a box's bottom face, one row below its outline)
FACING = 0.02


def render_view(
    points: np.ndarray,
    normals: np.ndarray,
    view: View,
    pixels: int,
    colour=(0.75, 0.75, 0.75),
    light=(-0.4, 0.6, 1.0),
    ambient: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """RGBA float32 (pixels, pixels, 4) in [0, 1], transparent where nothing is seen, and depth (pixels, pixels)
    towards the viewer (-inf where empty), of a square view of a surface sample with outward normals: Lambert
    shading of `colour` under `light` (a direction in the view's frame: right, up, towards the viewer)."""
    axes = view.axes
    light = np.asarray(light, np.float64) / np.linalg.norm(light)
    half = float(np.linalg.norm(view.right)) / 2
    projected = (np.asarray(points, np.float64) - np.asarray(view.centre)) @ axes.T / half
    columns = np.floor((projected[:, 0] + 1) / 2 * pixels).astype(np.int64)
    rows = np.floor((1 - projected[:, 1]) / 2 * pixels).astype(np.int64)
    turned = np.asarray(normals, np.float64) @ axes.T
    shade = ambient + (1 - ambient) * np.clip(turned @ light, 0.0, None)
    inside = (rows >= 0) & (rows < pixels) & (columns >= 0) & (columns < pixels) & (turned[:, 2] > FACING)
    cell, depth, shade = (rows * pixels + columns)[inside], projected[inside, 2], shade[inside]
    order = np.lexsort((-depth, cell))  # per pixel, the sample nearest the viewer first
    cell, depth, shade = cell[order], depth[order], shade[order]
    first = np.ones(len(cell), bool)
    first[1:] = cell[1:] != cell[:-1]
    buffer = np.full(pixels * pixels, -np.inf)
    buffer[cell[first]] = depth[first]
    grey = np.zeros(pixels * pixels)
    grey[cell[first]] = shade[first]
    buffer, grey = buffer.reshape(pixels, pixels), grey.reshape(pixels, pixels)
    for _ in range(GAP_PASSES):
        buffer, grey = _fill_gaps(buffer, grey)
    alpha = np.isfinite(buffer)
    rgb = np.clip(grey[:, :, None] * np.asarray(colour, np.float64), 0.0, 1.0) * alpha[:, :, None]
    return np.concatenate([rgb, alpha[:, :, None]], axis=2).astype(np.float32), buffer.astype(np.float32)


def _fill_gaps(depth: np.ndarray, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empty pixels covered on two opposite sides (across, down or diagonally) take the nearer of those."""
    padded = np.pad(depth, 1, constant_values=-np.inf)
    shades = np.pad(grey, 1)
    pairs = (((1, 0), (1, 2)), ((0, 1), (2, 1)), ((0, 0), (2, 2)), ((0, 2), (2, 0)))  # offsets into the padding
    depth, grey = depth.copy(), grey.copy()
    empty = ~np.isfinite(depth)
    h, w = depth.shape
    for (ra, ca), (rb, cb) in pairs:
        a, b = padded[ra : ra + h, ca : ca + w], padded[rb : rb + h, cb : cb + w]
        gap = empty & np.isfinite(a) & np.isfinite(b)
        nearer = np.where(a >= b, a, b)
        shade = np.where(a >= b, shades[ra : ra + h, ca : ca + w], shades[rb : rb + h, cb : cb + w])
        depth[gap], grey[gap] = nearer[gap], shade[gap]
        empty &= ~gap
    return depth, grey
