"""Blend objects: a mesh that shows the interpolation of two reconstructions' latents at `obj.occnet.factor`.

Dragging the slider is latest-wins: one job per blend in flight, a coarse preview while the factor keeps
changing and the full resolution once it has settled. Keyframed factors are followed on frame change;
in background runs and renders every update is synchronous, so each frame shows its exact shape.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..backend_parts import InterpolateRequest, LatentInfo, MeshReply
from ..worker.client import BackendError
from ..worker.extraction import PREVIEW_RESOLUTION
from ..worker.jobs import JOBS, Job
from .latents import (
    BLEND_LATENT_KEYS,
    BLEND_MATRIX_KEYS,
    FRAME_KEYS,
    LATENT_KEY,
    latent_of,
    source_matrix,
    store_latent,
)
from .meshes import as_matrix, collection_names, fill_mesh, flat_matrix, new_mesh_object

SETTLE_SECONDS = 0.3
_rendering = False


class BlendError(Exception):
    """The selection cannot be blended; the message says why."""


@dataclass
class Pending:
    changed_at: float
    job: Job | None = None
    failed: tuple[float, int] | None = None


_pending: dict[str, Pending] = {}


def blend_problem(selected: list[bpy.types.Object]) -> str:
    """Why these objects cannot be blended, "" if they can: the Blend button's tooltip and its error."""
    if len(selected) != 2:
        return f"Select exactly two reconstructions to blend ({len(selected)} selected)."
    for obj in selected:
        if obj.occnet.kind != "RECONSTRUCTION":
            return f"'{obj.name}' is not an OccNet reconstruction. Reconstruct it first, then blend."
    return ""


def bake_problem(obj: bpy.types.Object | None) -> str:
    """Why this object cannot be baked, "" if it can: the Bake button's tooltip and its error."""
    if obj is None:
        return "No active object. Click a blend object to bake it."
    if obj.occnet.kind != "BLEND":
        return f"'{obj.name}' is not an OccNet blend. Select a blend object (made with Blend) to bake."
    return ""


def create_blend(a: bpy.types.Object, b: bpy.types.Object, factor: float = 0.5) -> bpy.types.Object:
    problem = blend_problem([a, b])
    if problem:
        raise BlendError(problem)
    if a.occnet.model != b.occnet.model:
        raise BlendError(
            f"'{a.name}' was made by '{a.occnet.model}' and '{b.name}' by '{b.occnet.model}': only shapes from "
            "the same model can be blended. Reconstruct both with one model."
        )
    codes = [latent_of(end, LATENT_KEY) for end in (a, b)]
    if codes[0].size != codes[1].size and not (a.occnet.blends_by_field and b.occnet.blends_by_field):
        raise BlendError(
            f"'{a.name}' and '{b.name}' hold latents of different sizes ({codes[0].size} and {codes[1].size} values): "
            f"the model '{a.occnet.model}' changed between them. Reconstruct both again, then blend."
        )
    empty = np.zeros((0, 3))
    start = flat_matrix(source_matrix(a))  # the worker's meshes are in the sources' coordinates
    obj = new_mesh_object(f"{a.name} to {b.name}", empty, empty, start, collection_names(a), True)
    state = obj.occnet
    state.kind, state.model, state.input_kind = "BLEND", a.occnet.model, a.occnet.input_kind
    state.blend_a, state.blend_b = a.name, b.name
    for key in ("resolution", "threshold", "refine_steps", "faces"):
        setattr(state, key, getattr(a.occnet, key))
    for end, code, latent_key, matrix_key, frame_key in zip(
        (a, b), codes, BLEND_LATENT_KEYS, BLEND_MATRIX_KEYS, FRAME_KEYS, strict=True
    ):
        store_latent(obj, code, latent_key)
        obj[matrix_key] = flat_matrix(source_matrix(end))
        obj[frame_key] = [*end.occnet.frame_center, end.occnet.frame_scale]
    state.factor = factor  # runs factor_changed: the first shape
    return obj


def factor_changed(obj: bpy.types.Object) -> None:
    """The slider moved (or a frame changed it): show the new shape."""
    if obj.occnet.kind != "BLEND":
        return
    if synchronous():
        update_now(obj)
        return
    pending = _pending.setdefault(obj.name, Pending(time.monotonic()))
    pending.changed_at, pending.failed = time.monotonic(), None
    JOBS.ensure_polling()


def synchronous() -> bool:
    """Background runs and renders have no timers to wait for: every update finishes before returning."""
    return bpy.app.background or _rendering


def update_now(obj: bpy.types.Object) -> None:
    """Synchronous update at full resolution; errors are reported, never raised into Blender."""
    state = obj.occnet
    job = _job(obj, state.factor, state.resolution)
    try:
        JOBS.run_now(job)
    except BackendError as exc:
        JOBS.report(f"{obj.name}: {exc}")


def tick() -> bool:
    """From the poller: start the next job of each blend whose shown shape is behind its slider."""
    now, busy = time.monotonic(), False
    for name, pending in list(_pending.items()):
        obj = bpy.data.objects.get(name)
        if obj is None or obj.occnet.kind != "BLEND":
            del _pending[name]
            continue
        if pending.job is not None:
            busy = True
            continue
        state = obj.occnet
        settled = now - pending.changed_at >= SETTLE_SECONDS
        resolution = state.resolution if settled else min(PREVIEW_RESOLUTION, state.resolution)
        wanted = (round(state.factor, 6), resolution)
        if wanted == (round(state.shown_factor, 6), state.shown_resolution) or wanted == pending.failed:
            if settled:
                del _pending[name]
            else:
                busy = True
            continue
        pending.job = _job(obj, state.factor, resolution, pending)
        JOBS.start(pending.job)
        busy = True
    return busy


def _job(obj: bpy.types.Object, factor: float, resolution: int, pending: Pending | None = None) -> Job:
    state = obj.occnet
    name = obj.name
    a, b = (LatentInfo(state.model, tuple(obj[key][:3]), float(obj[key][3])) for key in FRAME_KEYS)
    code_a, code_b = (latent_of(obj, key, as_stored=True) for key in BLEND_LATENT_KEYS)  # float16: half the bytes
    options = dataclasses.replace(state.options(), resolution=resolution)
    request = InterpolateRequest(
        model=state.model, a=a, b=b, code_a=code_a, code_b=code_b, t=float(factor), options=options
    )

    def apply(reply: MeshReply) -> None:
        if pending is not None:
            pending.job = None
        target = bpy.data.objects.get(name)
        if target is not None:
            show(target, reply, factor, resolution)

    def failed(error: BackendError) -> None:
        if pending is not None:
            pending.job, pending.failed = None, (round(factor, 6), resolution)

    return Job(name, request, apply, failed)


def show(obj: bpy.types.Object, reply: MeshReply, factor: float, resolution: int) -> None:
    fill_mesh(obj.data, reply.vertices, reply.faces, smooth=True)
    a, b = (as_matrix(list(obj[key])) for key in BLEND_MATRIX_KEYS)
    obj.matrix_world = a.lerp(b, factor)
    obj.occnet.shown_factor, obj.occnet.shown_resolution = factor, resolution


def bake(obj: bpy.types.Object) -> bpy.types.Object:
    """A plain mesh copy of what the blend shows now; the blend itself stays."""
    problem = bake_problem(obj)
    if problem:
        raise BlendError(problem)
    baked = bpy.data.objects.new(f"{obj.name}.baked", obj.data.copy())
    baked.matrix_world = obj.matrix_world.copy()
    for collection in obj.users_collection:
        collection.objects.link(baked)
    return baked


@persistent
def _follow_frame(scene: bpy.types.Scene, depsgraph=None) -> None:
    for obj in scene.objects:
        state = obj.occnet
        if state.kind == "BLEND" and (
            abs(state.factor - state.shown_factor) > 1e-6 or state.shown_resolution != state.resolution
        ):
            factor_changed(obj)


@persistent
def _render_started(*args) -> None:
    global _rendering
    _rendering = True


@persistent
def _render_ended(*args) -> None:
    global _rendering
    _rendering = False


_HANDLERS = (
    (bpy.app.handlers.frame_change_post, _follow_frame),
    (bpy.app.handlers.render_init, _render_started),
    (bpy.app.handlers.render_complete, _render_ended),
    (bpy.app.handlers.render_cancel, _render_ended),
)


def register() -> None:
    JOBS.ticks.append(tick)
    for handlers, handler in _HANDLERS:
        handlers.append(handler)


def unregister() -> None:
    for handlers, handler in _HANDLERS:
        if handler in handlers:
            handlers.remove(handler)
    if tick in JOBS.ticks:
        JOBS.ticks.remove(tick)
    _pending.clear()
