"""Extraction settings as the worker reads them: the grid resolutions MISE can reach and the options requests carry."""

from __future__ import annotations

import math

from ..backend_parts import MIN_PIECE, RESOLUTIONS, ExtractOptions

BASE_RESOLUTION, MAX_RESOLUTION = RESOLUTIONS[0], RESOLUTIONS[-1]
PREVIEW_RESOLUTION = 32


def snap_resolution(value: int) -> int:
    """MISE doubles from 32, so the grid is 32, 64, 128, 256 or 512: the nearest of those."""
    steps = round(math.log2(max(value, BASE_RESOLUTION) / BASE_RESOLUTION))
    return min(BASE_RESOLUTION * 2**steps, MAX_RESOLUTION)


def extraction_options(
    resolution: int,
    threshold: float | None,
    refine_steps: int,
    faces: int,
    min_piece: float = MIN_PIECE,
    snap: bool = True,
) -> ExtractOptions:
    """Extraction settings as a request carries them; threshold None is the model's own. Blender computes the
    normals, so the worker does not. `min_piece`: loose pieces with less surface than this share of the largest
    are dropped (0 keeps all). `snap`: vertices near a dense scan move onto its points."""
    return ExtractOptions(
        resolution=int(resolution),
        threshold=None if threshold is None else float(threshold),
        refine_steps=int(refine_steps),
        faces=int(faces),
        normals=False,
        min_piece=float(min_piece),
        snap=bool(snap),
    )
