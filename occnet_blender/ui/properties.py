"""Settings: what the artist picks on the scene (`scene.occnet`) and what a result remembers (`obj.occnet`).

The latents a result keeps live next to this PropertyGroup as ID properties (see scene/latents.py).
"""

from __future__ import annotations

import zlib

import bpy

from ..backend_parts import AUTO_MODEL, DEFAULT_RESOLUTION, MIN_PIECE, ExtractOptions
from ..scene import blend
from ..worker import lifecycle
from ..worker.extraction import BASE_RESOLUTION, MAX_RESOLUTION, extraction_options, snap_resolution

_model_enum_items: list[tuple[str, str, str, str, int]] = []


def model_number(name: str) -> int:
    """Blender keeps a dynamic enum's choice as its item's number. One derived from the model's name (31 bits,
    as Blender's numbers are signed ints) keeps the choice when the list changes: a model added before it, or
    the running worker's list replacing the disk scan. Automatic keeps 0, the number it had when it was the
    list's first item, so scenes saved before keep it."""
    if name == AUTO_MODEL:
        return 0
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _model_items(self, context) -> list[tuple[str, str, str, str, int]]:
    global _model_enum_items
    _model_enum_items = [  # kept referenced, as Blender requires of dynamic items
        (name, label, description, "NONE", model_number(name))
        for name, label, description in lifecycle.BACKEND.model_items()
    ]
    return _model_enum_items


def _factor_changed(self, context) -> None:
    blend.factor_changed(self.id_data)


def resolution_property() -> bpy.props._PropertyDeferred:
    """The extraction settings the panel and the Re-Extract operator share: declared once, here."""
    return bpy.props.IntProperty(
        name="Resolution",
        description="Grid resolution of the extracted surface (32, 64, 128, 256 or 512; other values snap)",
        default=DEFAULT_RESOLUTION,
        min=BASE_RESOLUTION,
        max=MAX_RESOLUTION,
    )


def use_model_threshold_property() -> bpy.props._PropertyDeferred:
    return bpy.props.BoolProperty(
        name="Model's Threshold", description="Use the threshold the model was validated with", default=True
    )


def threshold_property() -> bpy.props._PropertyDeferred:
    return bpy.props.FloatProperty(
        name="Threshold",
        description="Occupancy probability of the surface: lower gives thicker shapes, higher thinner ones",
        default=0.5,
        min=0.0,
        max=1.0,
    )


def snap_property() -> bpy.props._PropertyDeferred:
    return bpy.props.BoolProperty(
        name="Snap to Scan",
        description="Move vertices near a dense scan (about 5,000 points or more) onto its points: finer detail",
        default=True,
    )


def min_piece_property() -> bpy.props._PropertyDeferred:
    return bpy.props.FloatProperty(
        name="Drop Small Pieces",
        description="Drop loose pieces (floating blobs, crumbs) with less surface than this share of the largest "
        "piece; 0 keeps every piece",
        default=MIN_PIECE,
        min=0.0,
        max=1.0,
        precision=3,
        subtype="FACTOR",
    )


class OCCNET_PG_scene(bpy.types.PropertyGroup):
    model: bpy.props.EnumProperty(
        name="Model",
        description="Trained network; each reads one kind of input",
        items=_model_items,
        default=model_number(AUTO_MODEL),
    )
    resolution: resolution_property()
    use_model_threshold: use_model_threshold_property()
    threshold: threshold_property()
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
    min_piece: min_piece_property()
    snap: snap_property()

    def options(self) -> ExtractOptions:
        threshold = None if self.use_model_threshold else self.threshold
        resolution = snap_resolution(self.resolution)
        return extraction_options(resolution, threshold, self.refine_steps, self.faces, self.min_piece, self.snap)


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
    resolution: bpy.props.IntProperty(name="Resolution", default=DEFAULT_RESOLUTION)
    threshold: bpy.props.FloatProperty(name="Threshold", default=-1.0, description="-1: the model's own")
    refine_steps: bpy.props.IntProperty(name="Refinement Steps", default=0)
    faces: bpy.props.IntProperty(name="Face Budget", default=0)
    min_piece: bpy.props.FloatProperty(name="Drop Small Pieces", default=MIN_PIECE, min=0.0, max=1.0)
    snap: snap_property()
    frame_center: bpy.props.FloatVectorProperty(name="Frame Center", size=3)
    frame_scale: bpy.props.FloatProperty(name="Frame Scale", default=1.0)
    input_summary: bpy.props.StringProperty(name="Input", description="What the model read of its input")
    blends_by_field: bpy.props.BoolProperty(
        name="Blends by Field", description="The latent holds the input's points, so blends mix the two shapes' fields"
    )
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

    def options(self) -> ExtractOptions:
        threshold = None if self.threshold < 0 else self.threshold
        return extraction_options(self.resolution, threshold, self.refine_steps, self.faces, self.min_piece)


classes = (OCCNET_PG_scene, OCCNET_PG_object)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.occnet = bpy.props.PointerProperty(type=OCCNET_PG_scene)
    bpy.types.Object.occnet = bpy.props.PointerProperty(type=OCCNET_PG_object)
    bpy.types.WindowManager.occnet_progress = bpy.props.FloatProperty(  # see jobs._show_status
        name="OccNet Progress", default=-1.0, options={"HIDDEN", "SKIP_SAVE"}
    )


def unregister() -> None:
    del bpy.types.WindowManager.occnet_progress
    del bpy.types.Object.occnet
    del bpy.types.Scene.occnet
    _unregister_classes()
