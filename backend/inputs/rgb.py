"""Per-point colour as files store it (8-bit, 16-bit, fractions, packed words), as RGB floats in [0, 1]."""

from __future__ import annotations

import numpy as np


def from_stored(rgb: np.ndarray) -> np.ndarray | None:
    """(N, 3) colour of a typed field (PLY, PCD, LAS) as float32 in [0, 1]. 8-bit integers are divided by 255;
    16-bit and wider integers by 65535, unless no value exceeds 255 (8-bit colour widened into 16-bit fields, as
    many LAS and PLY writers store it), then by 255. Floats go by `from_values`. None when the values are no colour."""
    rgb = np.asarray(rgb)
    if rgb.dtype.kind not in "iu":
        return from_values(rgb)
    if len(rgb) and (rgb.min() < 0 or rgb.max() > 65535):
        return None
    top = 255.0 if rgb.dtype.itemsize == 1 or rgb.max(initial=0) <= 255 else 65535.0
    return (rgb / top).astype(np.float32)


def from_values(rgb: np.ndarray) -> np.ndarray | None:
    """(N, 3) colour numbers of unknown type (text columns, float fields) as float32 in [0, 1], decided by their
    values: all within [0, 1] are fractions (so integer columns holding only 0 and 1 are black and white, not
    nearly black); else all within [0, 255] are 8-bit; else all within [0, 65535] are 16-bit. None when any value is
    negative, not finite or above 65535: those columns hold something else (normals, intensity)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 2 or rgb.shape[1] != 3 or not np.isfinite(rgb).all():
        return None
    if len(rgb) == 0:
        return rgb.astype(np.float32)
    low, high = rgb.min(), rgb.max()
    if low < 0 or high > 65535:
        return None
    top = 1.0 if high <= 1 else 255.0 if high <= 255 else 65535.0
    return (rgb / top).astype(np.float32)


def from_packed(words: np.ndarray) -> np.ndarray:
    """PCL's packed colour: a 32-bit word 0xAARRGGBB (its `rgb` or `rgba` field, stored as float or uint32 bits)."""
    words = np.ascontiguousarray(words).reshape(-1)
    words = words.view(np.uint32) if words.dtype.itemsize == 4 else words.astype(np.uint32)
    channels = np.stack([(words >> 16) & 255, (words >> 8) & 255, words & 255], axis=1)
    return (channels / 255.0).astype(np.float32)


def looks_like_normals(columns: np.ndarray) -> bool:
    """Whether three columns are unit vectors in every row (within 1e-3): normals, not colour."""
    columns = np.asarray(columns, dtype=np.float64)
    if columns.ndim != 2 or columns.shape[1] != 3 or not len(columns) or not np.isfinite(columns).all():
        return False
    return bool(np.abs(np.linalg.norm(columns, axis=1) - 1).max() < 1e-3)
