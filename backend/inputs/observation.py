"""The three kinds of observation an Occupancy Network conditions on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .rgb import from_stored
from .views import View


@dataclass
class PointCloudInput:
    points: np.ndarray  # (N, 3), any frame
    normals: np.ndarray | None = None  # (N, 3) outward normals when the scan or mesh has them
    colors: np.ndarray | None = None  # (N, 3) float32 RGB in [0, 1] (as stored: sRGB) when the scan has colour
    kind: str = field(default="pointcloud", init=False)

    def __post_init__(self) -> None:
        """Colours must pair with the points one to one, or the mesh would be painted from the wrong places."""
        if self.colors is None:
            return
        colors = np.asarray(self.colors)
        if colors.shape != (len(self.points), 3) or colors.dtype.kind not in "fiu":
            raise InputError(
                f"The colours must be one RGB row per point, ({len(self.points)}, 3) numbers; got an array of shape "
                f"{colors.shape} ({colors.dtype}). Give them in the points' order, or leave them out."
            )
        if colors.dtype.kind == "f" and not (np.isfinite(colors).all() and colors.min() >= 0 and colors.max() <= 1):
            raise InputError("Colours given as floats must lie between 0 and 1 (divide 8-bit colours by 255).")
        if colors.dtype.kind in "iu":  # 8-bit, or 16-bit (LAS) when any value exceeds 255: the files' own rule
            colors = from_stored(colors)
            if colors is None:
                raise InputError("Integer colours must lie between 0 and 65535 (8-bit: 0 to 255).")
        self.colors = colors.astype(np.float32)


@dataclass
class ImageInput:
    pixels: np.ndarray  # (H, W), (H, W, C) with C in 1..4; uint8, uint16, bool or float in [0, 1]
    view: View | None = None  # where the picture lies in the world (a reference image empty); None: the front view
    more: tuple[tuple[np.ndarray, View], ...] = ()  # further pictures of the same object, each with its view
    kind: str = field(default="image", init=False)

    def pictures(self) -> list[tuple[np.ndarray, View]]:
        """Every picture with its view: one without a view is seen from the front, its longer side one unit."""
        if self.more and self.view is None:
            raise InputError("With several reference images, each needs its view (front, side, top or AZ,EL).")
        first = self.view
        if first is None:
            h, w = np.asarray(self.pixels).shape[:2]
            first = View.named("front", w / max(h, 1))
        return [(self.pixels, first), *self.more]


@dataclass
class VoxelInput:
    grid: np.ndarray  # (R, R, R) occupancy covering the unit cube [-0.5, 0.5]^3
    kind: str = field(default="voxels", init=False)


Observation = PointCloudInput | ImageInput | VoxelInput
