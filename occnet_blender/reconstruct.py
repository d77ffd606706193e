"""Reconstruction jobs: one per source, each giving a new `<source>.occnet` object in the source's place."""

from __future__ import annotations

import bpy

from .gather import Source
from .jobs import Job
from .latents import store_latent
from .meshes import new_mesh_object
from .shared import ReconstructReply, ReconstructRequest, input_summary

RESULT_SUFFIX = ".occnet"


def reconstruct_job(source: Source, settings, model: str | None = None) -> Job:
    """`settings` is the scene's OCCNET_PG_scene, read now so later edits do not change the job; `model`
    overrides its model (the batch script names any model, not only those in the panel's list)."""
    request = ReconstructRequest(
        model=model or settings.model, **settings.request_fields(), **source.fields, **source.arrays
    )
    smooth = settings.smooth

    def apply(reply: ReconstructReply) -> bpy.types.Object:
        return add_result(source, reply, request, smooth)

    return Job(source.name, request, apply, undo_message=f"OccNet Reconstruct {source.name}")


def add_result(source: Source, reply: ReconstructReply, request: ReconstructRequest, smooth: bool) -> bpy.types.Object:
    obj = new_mesh_object(
        source.name + RESULT_SUFFIX, reply.vertices, reply.faces, source.matrix, source.collections, smooth
    )
    state = obj.occnet
    state.kind = "RECONSTRUCTION"
    state.model = reply.latent.latent_model
    state.input_kind = source.kind
    state.source = source.name
    state.resolution = request.resolution
    state.threshold = -1.0 if request.threshold is None else request.threshold
    state.refine_steps = request.refine_steps
    state.faces = request.faces
    state.frame_center = reply.latent.center
    state.frame_scale = reply.latent.scale
    state.blends_by_field = reply.latent.blends_by_field
    state.input_summary = input_summary(reply.stats) or ""
    store_latent(obj, reply.code)
    return obj
