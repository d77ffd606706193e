"""Reference images as Blender holds them: each an orthographic view along its empty's local -Z, at the empty's place,
rotation and size. One or several views become one input: each picture cropped to its object, the affine map from
the result's frame to the picture's coordinates, and the frame itself, the box of what every silhouette allows
(the visual hull). numpy only, so both engines prepare views alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..errors import InputError
from ..surface.frame import Frame
from ..surface.silhouettes import mask_at
from .image import CROP_MARGIN, box_mean, object_mask, resize_square, to_rgb_and_alpha

HULL_GRID = 48  # the visual hull's box is found on a grid this fine across the region the views allow
NAMED_VIEWS = {"front": (0.0, 0.0), "back": (180.0, 0.0), "side": (90.0, 0.0), "right": (90.0, 0.0),
               "left": (-90.0, 0.0), "top": (0.0, 90.0), "bottom": (0.0, -90.0)}  # fmt: skip


DISAGREE = (
    "The reference images' silhouettes share no point in space: the views disagree. Check that every image empty "
    "shows the same object at the same place, scale and turn (front, side and top views line up as in a blueprint)."
)


@dataclass(frozen=True)
class View:
    """Where a picture lies in the world: the middle of its image plane, and the vectors spanning its width (to
    the right) and height (up), their lengths the picture's size in world units. It is seen along
    -(right x up), as Blender shows an image empty along its local -Z."""

    centre: tuple[float, float, float]
    right: tuple[float, float, float]
    up: tuple[float, float, float]

    def __post_init__(self) -> None:
        values = np.array([self.centre, self.right, self.up], np.float64)
        if values.shape != (3, 3) or not np.isfinite(values).all():
            raise InputError("A view is its picture's centre, right and up vectors: three finite (x, y, z) each.")
        if np.linalg.norm(np.cross(self.right, self.up)) < 1e-9 * max(1e-30, _length(self.right) * _length(self.up)):
            raise InputError("A view's picture has no area (its width or height is zero, or they are parallel).")

    @classmethod
    def turned(
        cls, azimuth: float, elevation: float, width: float = 1.0, height: float = 1.0, centre=(0, 0, 0)
    ) -> View:
        """A view from azimuth (degrees about +Z: 0 is Blender's front view, from -Y looking along +Y; 90 its right
        view, from +X) and elevation (degrees; 90 is the top view, looking down with +Y up the picture)."""
        az, el = math.radians(azimuth), math.radians(elevation)
        back = np.array([math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az), math.sin(el)])
        right = np.array([math.cos(az), math.sin(az), 0.0])
        up = np.cross(back, right)
        return cls(_triple(centre), _triple(right * width), _triple(up * height))

    @classmethod
    def named(cls, text: str, aspect: float = 1.0) -> View:
        """'front', 'side' (Blender's right view), 'top', 'back', 'left', 'bottom', or 'AZ,EL' in degrees; the
        picture's longer side spans one unit, as an image empty of size 1 shows it."""
        key = text.strip().lower()
        if key in NAMED_VIEWS:
            azimuth, elevation = NAMED_VIEWS[key]
        elif match := re.fullmatch(r"\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*", key):
            azimuth, elevation = float(match[1]), float(match[2])
            if not -90 <= elevation <= 90:
                raise InputError(f"A view's elevation lies between -90 and 90 degrees, not {elevation:g}.")
        else:
            raise InputError(
                f"Unknown view {text!r}: name one of {', '.join(NAMED_VIEWS)}, or give azimuth and elevation in "
                "degrees as 'AZ,EL' (for example '45,30')."
            )
        width, height = (1.0, 1.0 / aspect) if aspect >= 1 else (aspect, 1.0)
        return cls.turned(azimuth, elevation, width, height)

    @classmethod
    def of_matrix(cls, matrix: np.ndarray, width: float, height: float, offset=(-0.5, -0.5)) -> View:
        """The view of a Blender image empty: its 4x4 world matrix, the picture's width and height in the empty's
        local units (the display size on the longer side) and Blender's image offset (-0.5, -0.5: centred)."""
        matrix = np.asarray(matrix, np.float64).reshape(4, 4)
        local_centre = np.array([(offset[0] + 0.5) * width, (offset[1] + 0.5) * height, 0.0, 1.0])
        return cls(
            _triple((matrix @ local_centre)[:3]), _triple(matrix[:3, 0] * width), _triple(matrix[:3, 1] * height)
        )

    @property
    def axes(self) -> np.ndarray:
        """Rows: the unit right, up and towards-the-viewer directions (right-handed even for a mirrored empty)."""
        right, up = np.asarray(self.right), np.asarray(self.up)
        back = np.cross(right, up)
        return np.stack([right / _length(right), up / _length(up), back / _length(back)])


@dataclass
class PreparedViews:
    """What the network reads of V views: the cropped pictures (V, 4, S, S: RGB times the mask, then the mask),
    the masks for carving (V, 1, M, M) and each view's affine map (V, 3, 4) from the canonical frame to the crop's
    grid coordinates (x right, y down, both -1 to 1 across the crop, as torch's grid_sample reads) and depth
    towards the viewer in the same units; with the frame that maps results back to the world."""

    images: np.ndarray
    masks: np.ndarray
    affines: np.ndarray
    frame: Frame
    source: dict


def prepare_views(pictures: list[tuple[np.ndarray, View]], size: int, mask_size: int) -> PreparedViews:
    """Each picture masked (`object_mask`) and cropped to its object; the frame is the box of the visual hull,
    centred on the pictures' plane along the depth one view cannot tell."""
    if not pictures:
        raise InputError("No reference image given.")
    crops, sources = [], []
    for pixels, view in pictures:
        color, alpha = to_rgb_and_alpha(pixels)
        coverage, source = object_mask(color, alpha)
        crops.append(_crop(color, coverage, view, size, mask_size))
        sources.append(source)
    hull_min, hull_max = hull_box([c.affine for c in crops], [c.mask for c in crops])
    centre = (hull_min + hull_max) / 2
    scale = float((hull_max - hull_min).max())
    affines = np.stack([c.affine for c in crops])
    canonical = affines.copy()  # world = centre + scale * canonical
    canonical[:, :, :3] = affines[:, :, :3] * scale
    canonical[:, :2, 3] = affines[:, :2, :3] @ centre + affines[:, :2, 3]
    canonical[:, 2, 3] = 0.0  # depth counts from the hull's middle: for a lone view, the picture's plane
    summary = sources[0] if len(sources) == 1 else {"views": len(sources), "masks": [s["mask"] for s in sources]}
    return PreparedViews(
        np.stack([c.image for c in crops]),
        np.stack([c.mask for c in crops])[:, None],
        canonical.astype(np.float32),
        Frame.of(centre, scale),
        {**summary, "views": len(sources), "hull_size": [round(float(v), 4) for v in hull_max - hull_min]},
    )


@dataclass
class _Crop:
    image: np.ndarray  # (4, S, S)
    mask: np.ndarray  # (M, M)
    affine: np.ndarray  # (3, 4): world point -> grid x, grid y, depth from the picture's plane (crop half-sizes)


def _crop(color: np.ndarray, coverage: np.ndarray, view: View, size: int, mask_size: int) -> _Crop:
    """The object's square (its mask's bounding box, CROP_MARGIN of its size around it) resampled to `size` for the
    network and `mask_size` for carving, and the map from world points to it."""
    h, w = coverage.shape
    rows, cols = np.nonzero((coverage > 0.5).any(axis=1))[0], np.nonzero((coverage > 0.5).any(axis=0))[0]
    if len(rows) == 0:
        rows, cols = np.nonzero(coverage.any(axis=1))[0], np.nonzero(coverage.any(axis=0))[0]
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    side = int(math.ceil(side * (1 + 2 * CROP_MARGIN))) + 2
    row_mid, col_mid = (rows[0] + rows[-1] + 1) / 2, (cols[0] + cols[-1] + 1) / 2
    top, left = int(round(row_mid - side / 2)), int(round(col_mid - side / 2))
    layers = np.concatenate([color * coverage[:, :, None], coverage[:, :, None]], axis=2)
    square = np.zeros((side, side, 4), np.float32)
    r0, r1, c0, c1 = max(top, 0), min(top + side, h), max(left, 0), min(left + side, w)
    square[r0 - top : r1 - top, c0 - left : c1 - left] = layers[r0:r1, c0:c1]
    image, mask = _shrink(square, size), _shrink(square[:, :, 3:], mask_size)[:, :, 0]
    pixel_w, pixel_h = _length(view.right) / w, _length(view.up) / h  # world units per pixel
    if abs(pixel_w - pixel_h) > 1e-3 * max(pixel_w, pixel_h):
        raise InputError("A reference image's pixels must be square in the world: give width and height in the "
                         "picture's own proportions.")  # fmt: skip
    axes = view.axes
    # the crop's centre in the world: from the picture's centre, across and up (rows count down)
    centre = (np.asarray(view.centre) + axes[0] * (left + side / 2 - w / 2) * pixel_w
              - axes[1] * (top + side / 2 - h / 2) * pixel_w)  # fmt: skip
    square_view = View(_triple(centre), _triple(axes[0] * side * pixel_w), _triple(axes[1] * side * pixel_w))
    affine = grid_affine(square_view)
    return _Crop(image.transpose(2, 0, 1).copy(), mask, affine)


def grid_affine(view: View) -> np.ndarray:
    """(3, 4): a world point to a square view's grid x (right) and y (down), -1 to 1 across the picture, and its
    depth towards the viewer from the picture's plane, in half the picture's width."""
    axes = view.axes
    rows = np.stack([axes[0], -axes[1], axes[2]]) / (_length(view.right) / 2)
    return np.concatenate([rows, -(rows @ np.asarray(view.centre))[:, None]], axis=1)


def _shrink(square: np.ndarray, size: int) -> np.ndarray:
    """A square (N, N, K) picture at (size, size, K), anti-aliased as `backend.inputs.image` resizes."""
    factor = square.shape[0] // (2 * size)
    if factor > 1:
        square = box_mean(square, factor, 0.0)
    return resize_square(square, size)


def hull_box(affines: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The box (min, max) of the points every view's mask covers, in the frame the affines map from: the views'
    crops bound a region (views that all look one way reach as deep as the first crop is wide, on either side of
    its plane), and a grid over it is carved by each mask."""
    slabs = [(a[0], -1.0, 1.0) for a in affines] + [(a[1], -1.0, 1.0) for a in affines]
    directions = np.stack([a[:2, :3] for a in affines]).reshape(-1, 3)
    if np.linalg.matrix_rank(directions, tol=1e-6 * np.abs(directions).max()) < 3:  # parallel views: bound depth
        slabs.append((affines[0][2], -1.0, 1.0))
    low, high = _slab_box(slabs)
    steps = [np.linspace(lo, hi, HULL_GRID) for lo, hi in zip(low, high, strict=True)]
    grid = np.stack(np.meshgrid(*steps, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = np.ones(len(grid), bool)
    for affine, mask in zip(affines, masks, strict=True):
        inside &= mask_at(mask, grid @ affine[:2, :3].T + affine[:2, 3]) >= 0.5
    if not inside.any():
        raise InputError(DISAGREE)
    cell = (high - low) / (HULL_GRID - 1)
    found = grid[inside]
    return np.maximum(found.min(axis=0) - cell, low), np.minimum(found.max(axis=0) + cell, high)


def _slab_box(slabs: list[tuple[np.ndarray, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the region lo <= a . p + b <= hi for every slab (a row of an affine: a, b): the
    extreme corners where three of the slabs' planes meet."""
    planes = [(row[:3], bound - row[3]) for row, lo, hi in slabs for bound in (lo, hi)]
    corners = []
    for (a1, c1), (a2, c2), (a3, c3) in combinations(planes, 3):
        matrix = np.stack([a1, a2, a3])
        if abs(np.linalg.det(matrix)) < 1e-12 * np.abs(matrix).max() ** 3:
            continue
        point = np.linalg.solve(matrix, [c1, c2, c3])
        if all(lo - 1e-6 <= row[:3] @ point + row[3] <= hi + 1e-6 for row, lo, hi in slabs):
            corners.append(point)
    if not corners:
        raise InputError(DISAGREE)
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def _length(vector) -> float:
    return float(np.linalg.norm(vector))


def _triple(values) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.asarray(values, np.float64).reshape(3))
