"""Training examples for the view model: a stored shape seen in one to three orthographic pictures, framed as
`backend.inputs.views` frames a user's reference images (cropped to the object, depth from the picture's plane for
one view, from the visual hull's middle for several), in varied colours and light."""

from __future__ import annotations

import numpy as np

from ..inputs.image import CROP_MARGIN
from ..inputs.views import View, grid_affine, hull_box
from ..surface.silhouettes import plain_sheets
from .ortho_views import render_view

AXIS_VIEWS = ((0.0, 0.0), (90.0, 0.0), (0.0, 90.0))  # front, side, top: a blueprint's views
AXIS_SHARE = 0.5  # examples seen from a blueprint's views; the rest from random directions
ELEVATIONS = (-30.0, 80.0)  # random views look from within these elevations (degrees)
GREY_SHARE = 0.3  # pictures in the plain grey of a reference render; the rest in a random colour


def draw_directions(count: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """`count` (azimuth, elevation) pairs in degrees: a blueprint's views, or directions at random."""
    if rng.random() < AXIS_SHARE:
        chosen = rng.choice(len(AXIS_VIEWS), count, replace=False)
        return [((AXIS_VIEWS[i][0] + 180.0 * rng.integers(0, 2)) % 360, AXIS_VIEWS[i][1]) for i in chosen]
    return [(float(rng.uniform(0, 360)), float(rng.uniform(*ELEVATIONS))) for _ in range(count)]


def draw_look(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """A picture's colour, light direction (in the view's frame) and ambient share: a reference render's grey or a
    random colour, under a random light."""
    colour = np.full(3, 0.75) if rng.random() < GREY_SHARE else rng.uniform(0.15, 1.0, 3)
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.2, 1.0)])
    return colour, light, float(rng.uniform(0.1, 0.5))


def framed_view(points: np.ndarray, azimuth: float, elevation: float, pixels: int) -> View:
    """The square view from a direction that frames the points as `backend.inputs.views` crops a picture: the
    object's extent and CROP_MARGIN of it on each side, about two pixels more."""
    axes = View.turned(azimuth, elevation).axes
    across = points @ axes[:2].T
    low, high = across.min(axis=0), across.max(axis=0)
    side = float((high - low).max()) * (1 + 2 * CROP_MARGIN) * pixels / (pixels - 2)
    middle = (low + high) / 2
    centre = middle[0] * axes[0] + middle[1] * axes[1]
    return View(tuple(centre), tuple(axes[0] * side), tuple(axes[1] * side))


def view_example(
    surface: np.ndarray,
    normals: np.ndarray,
    directions: list[tuple[float, float]],
    pixels: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Pictures (V, 4, S, S), masks (V, 1, S, S), sheets (V, 3, S, S) and affines (V, 3, 4) from the shape's frame,
    as the network reads them (`backend.inputs.views.PreparedViews`; the sheets before any are found)."""
    surface = np.asarray(surface, np.float64)
    pictures, affines = [], []
    for azimuth, elevation in directions:
        view = framed_view(surface, azimuth, elevation, pixels)
        rgba, _ = render_view(surface, normals, view, pixels, *draw_look(rng))
        pictures.append(rgba.transpose(2, 0, 1))
        affines.append(grid_affine(view))
    affines = np.stack(affines)
    masks = np.stack([p[3] for p in pictures])
    if len(directions) == 1:  # depth from the middle of the object's depth: a lone picture's plane
        depth = surface @ affines[0, 2, :3]
        affines[0, 2, 3] = -(depth.min() + depth.max()) / 2
    else:  # from the middle of the visual hull
        low, high = hull_box(list(affines), list(masks))
        affines[:, 2, 3] = -(affines[:, 2, :3] @ ((low + high) / 2))
    masks = masks[:, None].astype(np.float32)
    return {
        "images": np.stack(pictures),
        "masks": masks,
        "sheets": plain_sheets(masks),
        "affines": affines.astype(np.float32),
    }
