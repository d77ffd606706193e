"""Marching cubes (scikit-image) on a padded grid, so surfaces touching the box border are still closed."""

from __future__ import annotations

import numpy as np
from skimage.measure import marching_cubes

from ..config import BOX_SIZE
from ..errors import EmptySurfaceError
from ..mesh import Mesh


def grid_to_mesh(values: np.ndarray, threshold_logit: float) -> Mesh:
    """Surface of {values >= threshold} with outward-facing triangles, in the canonical frame."""
    resolution = values.shape[0] - 1
    if not values.max() >= threshold_logit:
        raise EmptySurfaceError(
            "The predicted occupancy never reaches the threshold, so there is no surface. "
            "Try a lower threshold, or check that the input shows an object."
        )
    padded = np.pad(values, 1, mode="constant", constant_values=threshold_logit - 1e3)
    vertices, faces, _, _ = marching_cubes(padded, level=threshold_logit, gradient_direction="ascent")
    vertices = (vertices - 1.0) * (BOX_SIZE / resolution) - BOX_SIZE / 2
    return Mesh(vertices, faces)
