"""Training pictures for the views model's depth head (`backend.models.view_depth`): a stored shape rendered from
one direction as a user's reference picture is (128 pixels, the picture's plane through the middle of the
object's depth), prepared as `backend.inputs.views` prepares one (masked, cropped), with the depth of the object's
front and back at every pixel of the crop, from the shape's surface samples."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..inputs.views import PreparedViews, View, prepare_views
from .ortho_views import render_view
from .view_examples import draw_directions, draw_look, framed_view

PIXELS = 128  # the rendered picture, as the held-out reference pictures are rendered (scripts/render_views.py)


def depth_example(
    surface: np.ndarray, normals: np.ndarray, size: int, mask_size: int, rng: np.random.Generator
) -> tuple[PreparedViews, np.ndarray] | None:
    """The prepared picture of a shape's surface samples (N, 3) with outward normals, seen from a direction drawn as
    the views model's training draws them, and its front and back depths (2, S, S) in the crop, NaN where no sample
    fell in a pixel; None when the object shows too little to crop."""
    surface = np.asarray(surface, np.float64)
    ((azimuth, elevation),) = draw_directions(1, rng)
    framed = framed_view(surface, azimuth, elevation, PIXELS)
    towards = framed.axes[2]
    depth = surface @ towards
    centre = np.asarray(framed.centre) + towards * (depth.min() + depth.max()) / 2
    view = View(tuple(centre), framed.right, framed.up)
    rgba, _ = render_view(surface, normals, view, PIXELS, *draw_look(rng))
    try:
        prepared = prepare_views([((rgba * 255).round().astype(np.uint8), view)], size, mask_size)
    except InputError:  # a sliver seen edge-on: nothing left to crop
        return None
    affine = prepared.affines[0].astype(np.float64)
    local = ((surface - np.asarray(prepared.frame.center)) / prepared.frame.scale) @ affine[:, :3].T + affine[:, 3]
    return prepared, front_and_back(local, size)


def front_and_back(local: np.ndarray, size: int) -> np.ndarray:
    """(2, S, S) the highest and lowest depth of the points (N, 3: grid x right, y down, depth) in each pixel of a
    crop S pixels across, NaN where none falls."""
    cols = np.floor((local[:, 0] + 1) / 2 * size).astype(np.int64)
    rows = np.floor((local[:, 1] + 1) / 2 * size).astype(np.int64)
    inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    cell, depth = rows[inside] * size + cols[inside], local[inside, 2]
    front, back = np.full(size * size, -np.inf), np.full(size * size, np.inf)
    np.maximum.at(front, cell, depth)
    np.minimum.at(back, cell, depth)
    maps = np.stack([front, back]).reshape(2, size, size)
    maps[:, ~np.isfinite(front.reshape(size, size))] = np.nan
    return maps.astype(np.float32)
