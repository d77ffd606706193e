"""The three kinds of observation, and the similarity transform that maps a source into the canonical frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .rgb import from_stored


@dataclass(frozen=True)
class Frame:
    """canonical = (source - center) / scale, so a mesh goes back with vertices * scale + center."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def __post_init__(self) -> None:
        """Wherever a frame comes from (a latent file, the worker, the API), it places a shape, or is refused: a
        zero, negative or infinite scale would collapse, mirror or blow up the mesh, a NaN centre lose it."""
        if len(self.center) != 3 or not np.isfinite(self.center).all():
            raise InputError(f"A shape's centre must be three finite numbers (x, y, z), not {self.center}.")
        if not 0 < self.scale < np.inf:
            raise InputError(f"A shape's scale must be a finite number above 0, not {self.scale}.")

    @classmethod
    def of(cls, center, scale) -> Frame:
        """From any sequence of three numbers and a number (arrays, JSON lists, npz entries)."""
        return cls(tuple(float(c) for c in np.asarray(center).reshape(3)), float(scale))

    def as_array(self) -> np.ndarray:
        """The center in float64, as the frame holds it: float32 would move a georeferenced scan by metres."""
        return np.asarray(self.center, dtype=np.float64)


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
    kind: str = field(default="image", init=False)


@dataclass
class VoxelInput:
    grid: np.ndarray  # (R, R, R) occupancy covering the unit cube [-0.5, 0.5]^3
    kind: str = field(default="voxels", init=False)


Observation = PointCloudInput | ImageInput | VoxelInput
