"""Operators: Reconstruct, Cancel, Blend, Bake, Restart Backend. In background mode they run to the end."""

from __future__ import annotations

import bpy

from ..backend_parts import AUTO_MODEL
from ..scene import blend
from ..scene.gather import GatherError, Source, gather_file, gather_object, join_pictures
from ..scene.latents import LATENT_KEY
from ..scene.reconstruct import reconstruct_job, reextract_job
from ..worker.client import BackendError
from ..worker.extraction import extraction_options, snap_resolution
from ..worker.jobs import JOBS
from ..worker.lifecycle import BACKEND
from .properties import (
    min_piece_property,
    resolution_property,
    snap_property,
    threshold_property,
    use_model_threshold_property,
)


def _check_model(source: Source, model: str) -> None:
    info = BACKEND.model_info(model) if model != AUTO_MODEL else None
    if info is not None and info.input_kind != source.kind:
        raise GatherError(
            f"'{source.name}' is a {source.kind} input but the model '{model}' reads {info.input_kind} input. "
            "Pick a matching model, or Automatic."
        )


def _one_object_from_views(sources: list[Source], model: str) -> list[Source]:
    """Reference images selected together are views of one object (a blueprint's front, side and top) for a model
    that reads several; a model that reads one picture reconstructs each on its own."""
    pictures = [source for source in sources if source.kind == "image" and "views" in source.arrays]
    info = BACKEND.model_info(model) if model != AUTO_MODEL else None
    if len(pictures) < 2 or (info is not None and info.architecture != "views"):
        return sources
    return [source for source in sources if all(source is not p for p in pictures)] + [join_pictures(pictures)]


class OCCNET_OT_reconstruct(bpy.types.Operator):
    """Reconstruct a clean mesh from each selected point cloud, mesh or reference image"""

    bl_idname = "occnet.reconstruct"
    bl_label = "Reconstruct"
    # Neither REGISTER nor UNDO: the operator only starts jobs. Its redo panel would start them all again, and
    # its undo step would hold nothing; each result pushes its own step when it is added (Job.undo_message).

    filepath: bpy.props.StringProperty(
        name="File",
        description="Reconstruct this image or scan file instead of the selection",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
    )

    def execute(self, context):
        settings = context.scene.occnet
        if not settings.model:
            self.report({"ERROR"}, "The model picked is no longer in the list. Pick a model in the OccNet panel.")
            return {"CANCELLED"}
        sources, problems = [], []
        if self.filepath:
            candidates = [lambda: gather_file(self.filepath, context.scene.cursor.location)]
        else:
            depsgraph = context.evaluated_depsgraph_get()
            candidates = [lambda obj=obj: gather_object(obj, depsgraph) for obj in context.selected_objects]
        if not candidates:
            self.report({"ERROR"}, "Nothing is selected. Select a point cloud, a mesh or a reference image.")
            return {"CANCELLED"}
        for gather in candidates:
            try:
                source = gather()
                _check_model(source, settings.model)
                sources.append(source)
            except GatherError as exc:
                problems.append(str(exc))
        for problem in problems:
            JOBS.report(problem)
        if not sources:
            self.report({"ERROR"}, " ".join(problems))
            return {"CANCELLED"}
        if problems:
            self.report({"WARNING"}, f"Skipped {len(problems)}: " + " ".join(problems))
        sources = _one_object_from_views(sources, settings.model)
        jobs = [reconstruct_job(source, settings) for source in sources]
        if not bpy.app.background:
            for job in jobs:
                JOBS.start(job)
            self.report({"INFO"}, f"Reconstructing {len(jobs)} object(s); Cancel in the OccNet panel stops it.")
            return {"FINISHED"}
        failures = []
        for job in jobs:
            try:
                JOBS.run_now(job)
            except BackendError as exc:
                failures.append(f"{job.label}: {exc}")
                JOBS.report(failures[-1])
        if failures:
            self.report({"ERROR"}, " ".join(failures))
        return {"FINISHED"} if len(failures) < len(jobs) else {"CANCELLED"}


class OCCNET_OT_cancel(bpy.types.Operator):
    """Stop the running and queued reconstructions; nothing is added to the scene"""

    bl_idname = "occnet.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        count = JOBS.cancel()
        self.report({"INFO"}, f"Cancelled {count} job(s)." if count else "Nothing was running.")
        return {"FINISHED"}


def _allowed(operator: type[bpy.types.Operator], problem: str | None) -> bool:
    """poll() with its reason: Blender shows the message on the greyed-out button."""
    if problem:
        operator.poll_message_set(problem)
    return not problem


class OCCNET_OT_blend(bpy.types.Operator):
    """Blend the two selected reconstructions: a new object whose Factor slider morphs one into the other"""

    bl_idname = "occnet.blend"
    bl_label = "Blend"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context) -> bool:
        return _allowed(cls, blend.blend_problem(context.selected_objects))

    def execute(self, context):
        selected = list(context.selected_objects)
        active = context.active_object
        a, b = (active, next(o for o in selected if o != active)) if active in selected else selected
        try:
            obj = blend.create_blend(a, b)
        except blend.BlendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Created '{obj.name}': drag its Factor in the OccNet panel.")
        return {"FINISHED"}


class OCCNET_OT_bake(bpy.types.Operator):
    """Make a plain mesh copy of what the active blend shows now"""

    bl_idname = "occnet.bake"
    bl_label = "Bake Blend"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context) -> bool:
        return _allowed(cls, blend.bake_problem(context.active_object))

    def execute(self, context):
        obj = context.active_object
        try:
            baked = blend.bake(obj)
        except blend.BlendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Baked '{obj.name}' into '{baked.name}'.")
        return {"FINISHED"}


def reextract_problem(obj: bpy.types.Object | None) -> str:
    """Why this object cannot be re-extracted, "" if it can: the button's tooltip and its error."""
    if obj is None:
        return "No active object. Click a reconstruction to re-extract it."
    if obj.occnet.kind != "RECONSTRUCTION" or LATENT_KEY not in obj:
        return f"'{obj.name}' is not an OccNet reconstruction with a stored shape. Reconstruct it first."
    return ""


class OCCNET_OT_reextract(bpy.types.Operator):
    """Make the active reconstruction's mesh again from its stored shape at another threshold or resolution; the
    network's encoder does not run again"""

    bl_idname = "occnet.reextract"
    bl_label = "Re-Extract"
    # REGISTER and UNDO: the redo panel (F9) changes the settings and runs it again. So execute() waits for the mesh
    # (an extraction only, seconds) instead of queueing a job that would land after the redo step closed.
    bl_options = {"REGISTER", "UNDO"}

    resolution: resolution_property()
    use_model_threshold: use_model_threshold_property()
    threshold: threshold_property()
    min_piece: min_piece_property()
    snap: snap_property()

    @classmethod
    def poll(cls, context) -> bool:
        return _allowed(cls, reextract_problem(context.active_object))

    def invoke(self, context, event):
        self._start_from(context.active_object, every=True)
        return self.execute(context)

    def _start_from(self, obj: bpy.types.Object, every: bool) -> None:
        """The settings the result was made with, for those not given (by the caller or the redo panel)."""
        state = obj.occnet
        stored = {
            "resolution": state.resolution,
            "use_model_threshold": state.threshold < 0,
            "threshold": state.threshold if state.threshold >= 0 else self.threshold,
            "min_piece": state.min_piece,
            "snap": state.snap,
        }
        given = {name for name in stored if not every and self.properties.is_property_set(name)}
        for name, value in stored.items():
            if name not in given:
                setattr(self, name, value)
        if "threshold" in given and "use_model_threshold" not in given:  # a threshold given is the one wanted
            self.use_model_threshold = False

    def draw(self, context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "resolution")
        layout.prop(self, "use_model_threshold")
        row = layout.row()
        row.enabled = not self.use_model_threshold
        row.prop(self, "threshold")
        layout.prop(self, "min_piece")
        layout.prop(self, "snap")

    def execute(self, context):
        obj = context.active_object
        self._start_from(obj, every=False)
        state = obj.occnet
        threshold = None if self.use_model_threshold else self.threshold
        options = extraction_options(
            snap_resolution(self.resolution), threshold, state.refine_steps, state.faces, self.min_piece, self.snap
        )
        job = reextract_job(obj, options, smooth=context.scene.occnet.smooth)
        manager = None if bpy.app.background else context.window_manager
        if manager is not None:  # the UI waits for this one: the cursor shows how far it is
            manager.progress_begin(0, 100)

        def progress(stage: str, fraction: float) -> None:
            if manager is not None:
                manager.progress_update(int(100 * fraction))

        try:
            JOBS.run_now(job, progress)
        except BackendError as exc:
            self.report({"ERROR"}, f"{obj.name}: {exc}")
            return {"CANCELLED"}
        finally:
            if manager is not None:
                manager.progress_end()
        self.report({"INFO"}, f"Re-extracted '{obj.name}': {len(obj.data.vertices):,} vertices.")
        return {"FINISHED"}


class OCCNET_OT_restart_backend(bpy.types.Operator):
    """Stop the backend worker (freeing its memory, GPU memory included) and start it again"""

    bl_idname = "occnet.restart_backend"
    bl_label = "Restart Backend"

    def execute(self, context):
        JOBS.cancel()
        try:
            BACKEND.restart()
        except BackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        JOBS.ensure_polling()
        return {"FINISHED"}


classes = (
    OCCNET_OT_reconstruct,
    OCCNET_OT_cancel,
    OCCNET_OT_blend,
    OCCNET_OT_bake,
    OCCNET_OT_reextract,
    OCCNET_OT_restart_backend,
)


def object_menu(self, context) -> None:
    """View3D > Object: where Blender users look for an operation on the selection, and what F3 search lists."""
    layout = self.layout
    layout.separator()
    layout.operator(OCCNET_OT_reconstruct.bl_idname, text="OccNet Reconstruct", icon="MESH_ICOSPHERE")
    layout.operator(OCCNET_OT_reextract.bl_idname, text="OccNet Re-Extract", icon="FILE_REFRESH")


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.VIEW3D_MT_object.append(object_menu)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object.remove(object_menu)
    _unregister_classes()
