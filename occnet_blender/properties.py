"""Settings: what the artist picks on the scene (`scene.occnet`) and what a result remembers (`obj.occnet`).

A latent is longer than 32 floats, so it is stored as an ID property (`obj[LATENT_KEY]`), next to the
PropertyGroup that carries the provenance. A feature-plane latent has 393,216 values (3 x 32 x 64 x 64), so it
is kept as half-precision bytes with its shape, not as a list of doubles (see `store_latent`).
"""

from __future__ import annotations

import math

import bpy
import idprop
import numpy as np

from . import connection
from .shared import RESOLUTIONS

LATENT_KEY = "occnet_latent"
LATENT_DTYPE = np.dtype("<f2")  # little-endian float16: the same bytes on every platform Blender runs on
_HALF_MAX = float(np.finfo(np.float16).max)
BLEND_LATENT_KEYS = ("occnet_latent_a", "occnet_latent_b")
BLEND_MATRIX_KEYS = ("occnet_matrix_a", "occnet_matrix_b")
BASE_RESOLUTION, MAX_RESOLUTION = RESOLUTIONS[0], RESOLUTIONS[-1]
PREVIEW_RESOLUTION = 32


def snap_resolution(value: int) -> int:
    """MISE doubles from 32, so the grid is 32, 64, 128, 256 or 512: the nearest of those."""
    steps = round(math.log2(max(value, BASE_RESOLUTION) / BASE_RESOLUTION))
    return min(BASE_RESOLUTION * 2**steps, MAX_RESOLUTION)


def extraction_fields(resolution: int, threshold: float | None, refine_steps: int, faces: int) -> dict:
    """Extraction settings as the worker's request fields; threshold None is the model's own. Blender
    computes the normals, so the worker does not."""
    return {
        "resolution": int(resolution),
        "threshold": None if threshold is None else float(threshold),
        "refine_steps": int(refine_steps),
        "faces": int(faces),
        "normals": False,
    }


def _model_items(self, context):
    return connection.BACKEND.model_items()


def _factor_changed(self, context) -> None:
    from . import blend

    blend.factor_changed(self.id_data)


class OCCNET_PG_scene(bpy.types.PropertyGroup):
    model: bpy.props.EnumProperty(
        name="Model", description="Trained network; each reads one kind of input", items=_model_items
    )
    resolution: bpy.props.IntProperty(
        name="Resolution",
        description="Grid resolution of the extracted surface (32, 64, 128, 256 or 512; other values snap)",
        default=128,
        min=BASE_RESOLUTION,
        max=MAX_RESOLUTION,
    )
    use_model_threshold: bpy.props.BoolProperty(
        name="Model's Threshold", description="Use the threshold the model was validated with", default=True
    )
    threshold: bpy.props.FloatProperty(
        name="Threshold",
        description="Occupancy probability of the surface: lower gives thicker shapes, higher thinner ones",
        default=0.5,
        min=0.0,
        max=1.0,
    )
    refine_steps: bpy.props.IntProperty(
        name="Refinement Steps",
        description="Gradient steps that move vertices onto the surface (0 = off; slower, sharper)",
        default=0,
        min=0,
        max=50,
    )
    faces: bpy.props.IntProperty(
        name="Face Budget", description="Simplify to at most this many faces (0 = keep all)", default=0, min=0
    )
    smooth: bpy.props.BoolProperty(name="Smooth Shading", default=True)

    def request_fields(self) -> dict:
        threshold = None if self.use_model_threshold else self.threshold
        return extraction_fields(snap_resolution(self.resolution), threshold, self.refine_steps, self.faces)


class OCCNET_PG_object(bpy.types.PropertyGroup):
    kind: bpy.props.EnumProperty(
        name="OccNet Kind",
        items=[
            ("NONE", "None", "Not made by OccNet"),
            ("RECONSTRUCTION", "Reconstruction", "Reconstructed from a source object or file"),
            ("BLEND", "Blend", "Interpolates between two reconstructions"),
        ],
        default="NONE",
    )
    model: bpy.props.StringProperty(name="Model")
    input_kind: bpy.props.StringProperty(name="Input")
    source: bpy.props.StringProperty(name="Source", description="Object or file it was reconstructed from")
    resolution: bpy.props.IntProperty(name="Resolution", default=128)
    threshold: bpy.props.FloatProperty(name="Threshold", default=-1.0, description="-1: the model's own")
    refine_steps: bpy.props.IntProperty(name="Refinement Steps", default=0)
    faces: bpy.props.IntProperty(name="Face Budget", default=0)
    frame_center: bpy.props.FloatVectorProperty(name="Frame Center", size=3)
    frame_scale: bpy.props.FloatProperty(name="Frame Scale", default=1.0)
    blend_a: bpy.props.StringProperty(name="From")
    blend_b: bpy.props.StringProperty(name="To")
    factor: bpy.props.FloatProperty(
        name="Factor",
        description="0 shows the first shape, 1 the second; keyframe it to animate the blend",
        default=0.5,
        min=0.0,
        max=1.0,
        update=_factor_changed,
        options={"ANIMATABLE"},
    )
    shown_factor: bpy.props.FloatProperty(default=-1.0, options={"HIDDEN", "SKIP_SAVE"})
    shown_resolution: bpy.props.IntProperty(default=0, options={"HIDDEN", "SKIP_SAVE"})

    def settings_fields(self) -> dict:
        threshold = None if self.threshold < 0 else self.threshold
        return extraction_fields(self.resolution, threshold, self.refine_steps, self.faces)


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


classes = (OCCNET_PG_scene, OCCNET_PG_object)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.occnet = bpy.props.PointerProperty(type=OCCNET_PG_scene)
    bpy.types.Object.occnet = bpy.props.PointerProperty(type=OCCNET_PG_object)


def unregister() -> None:
    del bpy.types.Object.occnet
    del bpy.types.Scene.occnet
    _unregister_classes()
