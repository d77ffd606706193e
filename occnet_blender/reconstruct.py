"""Reconstruction jobs: one per source, each giving a new `<source>.occnet` object in the source's place."""

from __future__ import annotations

import bpy

from .client import Message
from .gather import Source
from .jobs import Job
from .latents import store_latent
from .meshes import new_mesh_object

RESULT_SUFFIX = ".occnet"


def reconstruct_job(source: Source, settings, model: str | None = None) -> Job:
    """`settings` is the scene's OCCNET_PG_scene, read now so later edits do not change the job; `model`
    overrides its model (the batch script names any model, not only those in the panel's list)."""
    fields = {"model": model or settings.model, **settings.request_fields(), **source.fields}
    smooth = settings.smooth

    def apply(message: Message) -> bpy.types.Object:
        return add_result(source, message, fields, smooth)

    return Job(
        source.name, "reconstruct", fields, source.arrays, apply, undo_message=f"OccNet Reconstruct {source.name}"
    )


def add_result(source: Source, message: Message, fields: dict, smooth: bool) -> bpy.types.Object:
    arrays = message.arrays
    obj = new_mesh_object(
        source.name + RESULT_SUFFIX, arrays["vertices"], arrays["faces"], source.matrix, source.collections, smooth
    )
    state = obj.occnet
    state.kind = "RECONSTRUCTION"
    state.model = message.fields["latent_model"]
    state.input_kind = source.kind
    state.source = source.name
    state.resolution = fields["resolution"]
    state.threshold = -1.0 if fields["threshold"] is None else fields["threshold"]
    state.refine_steps = fields["refine_steps"]
    state.faces = fields["faces"]
    state.frame_center = message.fields["center"]
    state.frame_scale = message.fields["scale"]
    store_latent(obj, arrays["code"])
    return obj
