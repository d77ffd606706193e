"""Reconstruction jobs: one per source, each giving a new `<source>.occnet` object in the source's place; and
re-extraction: a result's mesh made again from its stored latent at other settings, with no encoder run."""

from __future__ import annotations

import bpy
import numpy as np

from ..backend_parts import (
    ExtractOptions,
    ExtractRequest,
    LatentInfo,
    MeshReply,
    ReconstructReply,
    ReconstructRequest,
    input_summary,
    neighbour_colors,
)
from ..worker.jobs import Job
from .gather import Source
from .latents import frame_of, latent_of, offset_of, store_frame, store_latent, store_offset
from .meshes import centered, fill_mesh, new_mesh_object, set_colors

RESULT_SUFFIX = ".occnet"


def reconstruct_job(source: Source, settings, model: str | None = None) -> Job:
    """`settings` is the scene's OCCNET_PG_scene, read now so later edits do not change the job; `model`
    overrides its model (the batch script names any model, not only those in the panel's list)."""
    request = ReconstructRequest(
        model=model or settings.model, options=settings.options(), **source.fields, **source.arrays
    )
    smooth = settings.smooth

    def apply(reply: ReconstructReply) -> bpy.types.Object:
        return add_result(source, reply, request, smooth)

    return Job(source.name, request, apply, undo_message=f"OccNet Reconstruct {source.name}")


def add_result(
    source: Source, reply: ReconstructReply, request: ReconstructRequest | ExtractRequest, smooth: bool
) -> bpy.types.Object:
    vertices, matrix, offset = reply.vertices, source.matrix, None
    if source.recenter:
        vertices, matrix, offset = centered(vertices, matrix)
    obj = new_mesh_object(source.name + RESULT_SUFFIX, vertices, reply.faces, matrix, source.collections, smooth)
    set_colors(obj.data, reply.colors)
    if offset is not None:
        store_offset(obj, offset)
    state = obj.occnet
    state.kind = "RECONSTRUCTION"
    state.model = reply.latent.latent_model
    state.input_kind = source.kind
    state.source = source.name
    remember_settings(state, request)
    state.frame_center = reply.latent.center
    state.frame_scale = reply.latent.scale
    store_frame(obj, reply.latent.center, reply.latent.scale)
    state.blends_by_field = reply.latent.blends_by_field
    state.input_summary = input_summary(reply.stats) or ""
    store_latent(obj, reply.code)
    return obj


def latent_job(name: str, frame: LatentInfo, code: np.ndarray, settings) -> Job:
    """A saved latent's mesh (no encoder run) as a new result, like a reconstruction's: it keeps the latent, so
    it can be re-extracted and blended, and its origin sits at its own centre. `settings`: the scene's."""
    request = ExtractRequest(model=frame.latent_model, latent=frame, code=code, options=settings.options())
    source = Source(name, "latent", [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0], [], recenter=True)
    smooth = settings.smooth

    def apply(reply: MeshReply) -> bpy.types.Object:
        whole = ReconstructReply(
            vertices=reply.vertices, faces=reply.faces, colors=reply.colors, stats=reply.stats, latent=frame, code=code
        )
        return add_result(source, whole, request, smooth)

    return Job(name, request, apply, undo_message=f"OccNet Extract {name}")


def remember_settings(state, request: ExtractRequest | ReconstructRequest) -> None:
    """The extraction settings a result was made with, which Re-Extract starts from and blends use."""
    options = request.options
    state.resolution = options.resolution
    state.threshold = -1.0 if options.threshold is None else options.threshold
    state.refine_steps = options.refine_steps
    state.faces = options.faces
    state.min_piece = options.min_piece
    state.snap = options.snap


def extract_request(obj: bpy.types.Object, options: ExtractOptions) -> ExtractRequest:
    """The request that makes `obj`'s mesh again from its stored latent with these extraction options."""
    state = obj.occnet
    center, scale = frame_of(obj)
    frame = LatentInfo(state.model, center, scale, state.blends_by_field)
    return ExtractRequest(model=state.model, latent=frame, code=latent_of(obj, as_stored=True), options=options)


def reextract_job(obj: bpy.types.Object, options: ExtractOptions, smooth: bool = True) -> Job:
    """Re-extract `obj` (a reconstruction) in place: same object, same datablock, new mesh. Colours the worker
    cannot give (an extraction has no input to take them from) are carried from the old mesh's nearest vertex."""
    request = extract_request(obj, options)
    name = obj.name

    def apply(reply: MeshReply) -> bpy.types.Object | None:
        target = bpy.data.objects.get(name)
        if target is None:
            return None
        replace_mesh(target, reply, smooth)
        remember_settings(target.occnet, request)
        target.occnet.input_summary = input_summary(reply.stats) or target.occnet.input_summary
        return target

    return Job(name, request, apply, undo_message=f"OccNet Re-Extract {name}")


def replace_mesh(obj: bpy.types.Object, reply: MeshReply, smooth: bool) -> None:
    mesh = obj.data
    colors = reply.colors
    if colors is None:
        old = _vertex_colors(mesh)
        if old is not None:
            old_vertices = np.empty(len(mesh.vertices) * 3, np.float32)
            mesh.vertices.foreach_get("co", old_vertices)
            local = np.asarray(reply.vertices, np.float64) - offset_of(obj)
            colors = nearest_colors(old_vertices.reshape(-1, 3), old, local)
    fill_mesh(mesh, np.asarray(reply.vertices, np.float64) - offset_of(obj), reply.faces, smooth)
    set_colors(mesh, colors)


def _vertex_colors(mesh: bpy.types.Mesh) -> np.ndarray | None:
    from .gather import color_attribute, read_colors

    attribute = color_attribute(mesh)
    if attribute is None or attribute.domain != "POINT" or not len(mesh.vertices):
        return None
    return read_colors(attribute)


def nearest_colors(points: np.ndarray, colors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query takes the colour of the nearest point: the backend's exact neighbour search, on numpy alone."""
    return neighbour_colors(points, colors, queries, k=1)
