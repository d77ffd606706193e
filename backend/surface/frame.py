"""The coordinate frame a shape was normalised in: how a mesh in the canonical unit box goes back to its source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


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
