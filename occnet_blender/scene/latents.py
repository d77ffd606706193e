"""Where a result keeps its latents, and how: the ID-property keys and the compact float16 storage.

A latent is longer than 32 floats, so it is stored as an ID property (`obj[LATENT_KEY]`), next to the
PropertyGroup that carries the provenance. A feature-plane latent has 393,216 values (3 x 32 x 64 x 64), so it
is kept as half-precision bytes with its shape, not as a list of doubles (see `store_latent`).
"""

from __future__ import annotations

import bpy
import idprop
import numpy as np
from mathutils import Matrix, Vector

LATENT_KEY = "occnet_latent"
LATENT_DTYPE = np.dtype("<f2")  # little-endian float16: the same bytes on every platform Blender runs on
_HALF_MAX = float(np.finfo(np.float16).max)
BLEND_LATENT_KEYS = ("occnet_latent_a", "occnet_latent_b")
BLEND_MATRIX_KEYS = ("occnet_matrix_a", "occnet_matrix_b")
FRAME_KEYS = ("occnet_frame_a", "occnet_frame_b")
FRAME_KEY = "occnet_frame"  # a result's latent frame, centre and scale, as doubles (its PropertyGroup keeps float32)
OFFSET_KEY = "occnet_offset"  # where the mesh's local origin sits in the latent's (source's) coordinates, doubles


def store_offset(obj: bpy.types.Object, offset: np.ndarray) -> None:
    """A result whose mesh was moved around its own centre (see meshes.centered) keeps the move in doubles, so a
    re-extraction or a blend, which the worker returns in the source's coordinates, is moved the same way."""
    obj[OFFSET_KEY] = [float(v) for v in offset]


def offset_of(obj: bpy.types.Object) -> np.ndarray:
    return np.array(obj[OFFSET_KEY], np.float64) if OFFSET_KEY in obj else np.zeros(3)


def store_frame(obj: bpy.types.Object, center: tuple[float, ...], scale: float) -> None:
    """The frame in doubles too: far from the origin a float32 centre would move a re-extracted mesh."""
    obj[FRAME_KEY] = [*(float(v) for v in center), float(scale)]


def frame_of(obj: bpy.types.Object) -> tuple[tuple[float, float, float], float]:
    """The latent's frame (centre, scale): the doubles where stored, else the PropertyGroup's float32 values."""
    if FRAME_KEY in obj:
        values = [float(v) for v in obj[FRAME_KEY]]
        return (values[0], values[1], values[2]), values[3]
    return tuple(obj.occnet.frame_center), float(obj.occnet.frame_scale)


def source_matrix(obj: bpy.types.Object) -> Matrix:
    """The matrix that places the worker's meshes for this result (in its source's coordinates): the object's
    own, less the move of its origin onto the mesh."""
    return obj.matrix_world @ Matrix.Translation(-Vector(offset_of(obj)))


def store_latent(obj: bpy.types.Object, code: np.ndarray, key: str = LATENT_KEY) -> None:
    """Keep a latent on the object as {"float16": bytes, "shape": [...]}.

    Half precision is plenty for decoding (the blend tests check the ends still match), and a bytes ID property
    is written, saved, undone and read back as one block: a (3, 32, 64, 64) latent takes 768 KiB instead of a
    3 MB list of doubles that costs a Python float per value. The shape travels back to the worker with it.
    """
    code = np.asarray(code, dtype=np.float32)
    half = np.clip(code, -_HALF_MAX, _HALF_MAX).astype(LATENT_DTYPE)
    obj[key] = {"float16": half.tobytes(), "shape": [int(n) for n in code.shape]}


def latent_of(obj: bpy.types.Object, key: str = LATENT_KEY, as_stored: bool = False) -> np.ndarray:
    """The latent in its own shape, as float32; `as_stored` leaves float16 latents as they are, which halves
    what goes to the worker (it converts to float32 itself)."""
    value = obj[key]
    if isinstance(value, idprop.types.IDPropertyGroup):
        code = np.frombuffer(value["float16"], dtype=LATENT_DTYPE).reshape([int(n) for n in value["shape"]])
    else:  # a 1-D array of doubles: how versions before compact latents stored a global code
        code = np.asarray(value, dtype=np.float32)
    return code if as_stored else code.astype(np.float32)
