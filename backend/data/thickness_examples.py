"""Training pictures for the views model's thickness head (`backend.models.thickness`): a stored shape rendered from
one direction as a user's reference picture is (128 pixels, the picture's plane through the middle of the
object's depth), prepared as `backend.inputs.views` prepares one (masked, cropped), with the IoU that the lone
picture's result, its silhouette inflated round, would score at each of the thickness scales."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..inputs.views import PreparedViews, View, prepare_views
from ..metrics import iou
from ..surface.silhouettes import SHEET, THICKNESS_SCALES, inflation, mask_at
from .dataset import Shape
from .ortho_views import render_view
from .view_examples import draw_directions, draw_look, framed_view

PIXELS = 128  # the rendered picture, as the held-out reference pictures are rendered (scripts/render_views.py)
SCORED_POINTS = 20_000  # of the shape's uniform points, on which each scale's IoU is measured


def thickness_example(
    shape: Shape, size: int, mask_size: int, rng: np.random.Generator
) -> tuple[PreparedViews, np.ndarray] | None:
    """The prepared picture of a shape seen from a direction drawn as the views model's training draws them, and
    the IoU of its inflation at each thickness scale (len(THICKNESS_SCALES),); None when the object shows too
    little to crop."""
    surface = np.asarray(shape.surface, np.float64)
    ((azimuth, elevation),) = draw_directions(1, rng)
    framed = framed_view(surface, azimuth, elevation, PIXELS)
    towards = framed.axes[2]
    depth = surface @ towards
    view = View(tuple(np.asarray(framed.centre) + towards * (depth.min() + depth.max()) / 2), framed.right, framed.up)
    rgba, _ = render_view(surface, shape.normals, view, PIXELS, *draw_look(rng))
    try:
        prepared = prepare_views([((rgba * 255).round().astype(np.uint8), view)], size, mask_size)
    except InputError:  # a sliver seen edge-on: nothing left to crop
        return None
    picked = rng.permutation(shape.n_uniform)[:SCORED_POINTS]
    points, labels = np.asarray(shape.points[picked], np.float64), shape.labels[picked]
    return prepared, inflation_ious(prepared, points, labels)


def inflation_ious(prepared: PreparedViews, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(len(THICKNESS_SCALES),) IoU against labels of points (N, 3, in the shape's frame) of a lone picture's
    result at each scale: inside its silhouette, and within the inflation's scaled half-thickness of the
    picture's plane (at least a plate's, at most the crop's half-width, as the views decoder keeps it)."""
    affine, mask = prepared.affines[0].astype(np.float64), prepared.masks[0, 0]
    local = ((points - np.asarray(prepared.frame.center)) / prepared.frame.scale) @ affine[:, :3].T + affine[:, 3]
    seen = mask_at(mask, local[:, :2]) >= 0.5
    half = mask_at(inflation(mask).astype(np.float32), local[:, :2])
    depth = np.abs(local[:, 2])
    return np.array(
        [iou(seen & (depth <= np.clip(scale * half, SHEET, 1.0)), labels) for scale in THICKNESS_SCALES], np.float32
    )
