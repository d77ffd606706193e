"""A latent: the code a model made of a shape, the model's name and the source's frame; saving, loading and
blending them. numpy only, so both engines (the PyTorch worker and the built-in CPU runtime) share it.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..errors import InputError, OutputError
from ..formats import LATENT_MARKER
from ..outputs import atomic_write
from .frame import Frame


@dataclass
class Latent:
    """A shape as the network sees it: the code, the model that made it, and where the source was.

    Codes of one size blend value by value (a global code, feature planes). A point-attention code holds its
    input points, whose number and order differ between shapes, so it `blends_by_field`: a blend is then the
    weighted sum of its `parts`' occupancy logits, which reproduces each end exactly."""

    code: np.ndarray
    model: str
    frame: Frame = field(default_factory=Frame)
    blends_by_field: bool = False
    parts: tuple[tuple[float, Latent], ...] = ()  # a blend of fields: (weight, latent) pairs
    source: dict = field(default_factory=dict)  # what the encoder kept of the input (points used, thinned), not saved

    def codes(self) -> list[np.ndarray]:
        """The codes a decoder reads: its own, or each part's for a blend of fields."""
        return [part.code for _, part in self.parts] if self.parts else [self.code]

    def save(self, path: str | Path) -> Path:
        if self.parts:
            raise InputError("A blend of two shapes is not saved as a latent; save the latents of its two ends.")
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise OutputError(f"{path}: latents are saved as .npz; name the file {path.stem}.npz.")
        with atomic_write(path) as partial, partial.open("wb") as file:  # a file object: numpy adds no suffix
            np.savez(
                file,
                **{LATENT_MARKER: np.int32(1)},
                code=self.code.astype(np.float32),
                model=np.str_(self.model),
                center=np.asarray(self.frame.center, np.float64),
                scale=np.float64(self.frame.scale),
                blends_by_field=np.bool_(self.blends_by_field),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Latent:
        """A latent saved with `save`; a damaged or incomplete file is an InputError that says so."""
        data = _read_npz(path, (LATENT_MARKER, *_LATENT_KEYS, "blends_by_field"))
        if LATENT_MARKER not in data:
            raise InputError(f"{path}: not a saved latent (write one with 'reconstruct --save-latent').")
        missing = [key for key in _LATENT_KEYS if key not in data]
        problem = f"it lacks {', '.join(repr(k) for k in missing)}" if missing else _latent_problem(data)
        if problem:
            raise InputError(
                f"{path}: not a usable latent ({problem}). Save it again with 'reconstruct --save-latent'."
            )
        frame = Frame.of(data["center"], data["scale"])
        by_field = bool(data.get("blends_by_field", False))
        return cls(data["code"].astype(np.float32), str(data["model"]), frame, blends_by_field=by_field)

    @staticmethod
    def is_latent_file(path: str | Path) -> bool:
        path = Path(path)
        return path.suffix.lower() == ".npz" and path.is_file() and LATENT_MARKER in _read_npz(path, (LATENT_MARKER,))


_LATENT_KEYS = ("code", "model", "center", "scale")


def _read_npz(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Those of `keys` that an .npz archive holds; a truncated or damaged one is an InputError, not a traceback."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in keys if key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(
            f"{path}: the .npz file is damaged or truncated ({exc}). Write it again "
            "(a latent with 'reconstruct --save-latent')."
        ) from exc


def _latent_problem(data: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a saved latent's values, in words, or None."""
    code, model, center, scale = (data[key] for key in _LATENT_KEYS)
    if code.dtype.kind not in "fiu" or code.size == 0 or not np.isfinite(code).all():
        return "its 'code' is not a list of finite numbers"
    if model.dtype.kind != "U" or model.ndim != 0 or not str(model):
        return "its 'model' is not a model name"
    if center.dtype.kind not in "fiu" or center.size != 3 or not np.isfinite(center).all():
        return "its 'center' is not three finite numbers"
    if scale.dtype.kind not in "fiu" or scale.size != 1 or not np.isfinite(scale).all() or float(scale.ravel()[0]) <= 0:
        return "its 'scale' is not a positive number"
    return None


def check_latent(latent: Latent, model: str, config: ModelConfig) -> None:
    """Only the model that made a latent can decode it: another one, even with codes of the same length
    (a point-cloud and an image model), reads the numbers as a different shape."""
    if latent.model != model:
        raise InputError(
            f"The latent was made by model '{latent.model}', so model '{model}' cannot decode it. "
            f"Use model '{latent.model}' (or reconstruct the shape again with '{model}')."
        )
    for code in latent.codes():
        if problem := config.latent_size_problem(code.size):
            raise InputError(
                f"The latent does not fit model '{model}' ({problem}); it was made by model '{latent.model}'."
            )


def interpolate(a: Latent, b: Latent, t: float, method: str = "linear") -> Latent:
    """The latent a fraction t of the way from a to b; the placement blends too, so the shape moves between.

    'spherical' turns the code's direction along the great circle and blends its length linearly,
    which keeps the blend's magnitude typical of real codes when a and b point different ways.
    Latents that blend by field (point attention) become a blend of their fields, whatever the method.
    """
    if not 0.0 <= t <= 1.0:  # NaN too
        raise InputError(f"The blend factor must lie between 0 (the first shape) and 1 (the second), not {t}.")
    center = (1 - t) * a.frame.as_array() + t * b.frame.as_array()
    scale = float(a.frame.scale ** (1 - t) * b.frame.scale**t)
    if a.model == b.model and (a.blends_by_field or b.blends_by_field):
        parts = tuple((w * weight, part) for w, end in ((1 - t, a), (t, b)) for weight, part in _parts(end))
        return Latent(np.zeros(0, np.float32), a.model, Frame.of(center, scale), True, parts)
    if a.model != b.model:
        raise InputError(
            f"Cannot blend shapes from different models ('{a.model}' and '{b.model}'); reconstruct both with one model."
        )
    if a.code.size != b.code.size:
        raise InputError(
            f"The two shapes' codes differ in length ({a.code.size:,} and {b.code.size:,} values) although both name "
            f"model '{a.model}': one was made by another version of it. Reconstruct both again."
        )
    if method == "linear":
        code = (1 - t) * a.code.astype(np.float32) + t * b.code.astype(np.float32).reshape(a.code.shape)
    elif method == "spherical":
        code = _slerp(a.code.astype(np.float64).ravel(), b.code.astype(np.float64).ravel(), t).reshape(a.code.shape)
    else:
        raise ValueError(f"method must be 'linear' or 'spherical', not {method!r}")
    return Latent(code.astype(np.float32), a.model, Frame.of(center, scale))


def _parts(latent: Latent) -> tuple[tuple[float, Latent], ...]:
    return latent.parts or ((1.0, latent),)


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return (1 - t) * a + t * b
    ua, ub = a / na, b / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    if omega < 1e-6:
        direction = ua
    else:
        direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return direction * ((1 - t) * na + t * nb)
