"""Where a result keeps its latents, and how: the ID-property keys and the compact float16 storage.

A latent is longer than 32 floats, so it is stored as an ID property (`obj[LATENT_KEY]`), next to the
PropertyGroup that carries the provenance. A feature-plane latent has 393,216 values (3 x 32 x 64 x 64), so it
is kept as half-precision bytes with its shape, not as a list of doubles (see `store_latent`).
"""

from __future__ import annotations

import bpy
import idprop
import numpy as np

LATENT_KEY = "occnet_latent"
LATENT_DTYPE = np.dtype("<f2")  # little-endian float16: the same bytes on every platform Blender runs on
_HALF_MAX = float(np.finfo(np.float16).max)
BLEND_LATENT_KEYS = ("occnet_latent_a", "occnet_latent_b")
BLEND_MATRIX_KEYS = ("occnet_matrix_a", "occnet_matrix_b")
FRAME_KEYS = ("occnet_frame_a", "occnet_frame_b")


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
