"""View3D > Sidebar > OccNet: settings, Reconstruct, progress with Cancel, problems, Re-Extract and the blend
slider; and the running job's progress in the status bar."""

from __future__ import annotations

import textwrap

import bpy

from ..worker.jobs import JOBS
from ..worker.lifecycle import BACKEND, faster_engine_hint

STATE_ICONS = {"stopped": "RADIOBUT_OFF", "starting": "SORTTIME", "ready": "CHECKMARK", "failed": "ERROR"}
WRAP = 44


def _wrapped(layout, text: str, icon: str = "NONE") -> None:
    for i, line in enumerate(textwrap.wrap(text, WRAP) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


class OccNetPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "OccNet"


class OCCNET_PT_main(OccNetPanel, bpy.types.Panel):
    bl_label = "OccNet"

    def draw(self, context) -> None:
        layout = self.layout
        settings = context.scene.occnet
        box = layout.box()
        _wrapped(box, f"Backend: {BACKEND.summary()}", STATE_ICONS[BACKEND.state])
        if BACKEND.on_runtime:
            _wrapped(box, faster_engine_hint(), "INFO")
        if BACKEND.state == "failed":
            layout.operator("screen.userpref_show", text="Open Preferences", icon="PREFERENCES")
        layout.prop(settings, "model")
        layout.prop(settings, "resolution")
        row = layout.row(align=True)
        row.prop(settings, "use_model_threshold")
        sub = row.row(align=True)
        sub.enabled = not settings.use_model_threshold
        sub.prop(settings, "threshold", text="")
        layout.prop(settings, "min_piece", slider=True)
        job = JOBS.current
        if job is None:
            layout.operator("occnet.reconstruct", icon="MESH_ICOSPHERE")
        else:
            layout.progress(factor=job.fraction, type="BAR", text=f"{job.label}: {job.stage} {job.fraction:.0%}")
            if len(JOBS.queue) > 1:
                layout.label(text=f"{len(JOBS.queue) - 1} more queued")
            layout.operator("occnet.cancel", icon="CANCEL")
        if JOBS.problems:
            box = layout.box()
            for problem in JOBS.problems[:2]:
                _wrapped(box, problem, "ERROR")


class OCCNET_PT_advanced(OccNetPanel, bpy.types.Panel):
    bl_label = "Advanced"
    bl_parent_id = "OCCNET_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context) -> None:
        settings = context.scene.occnet
        pytorch_only = self.layout.column()
        pytorch_only.enabled = not BACKEND.on_runtime
        pytorch_only.prop(settings, "refine_steps")
        pytorch_only.prop(settings, "faces")
        if BACKEND.on_runtime:
            _wrapped(pytorch_only, "Refinement and the face budget need the PyTorch backend.", "INFO")
        self.layout.prop(settings, "snap")
        self.layout.prop(settings, "smooth")


class OCCNET_PT_blend(OccNetPanel, bpy.types.Panel):
    bl_label = "Blend"
    bl_parent_id = "OCCNET_PT_main"

    def draw(self, context) -> None:
        layout = self.layout
        obj = context.active_object
        if obj is not None and obj.occnet.kind == "BLEND":
            layout.label(text=f"{obj.occnet.blend_a}  ->  {obj.occnet.blend_b}")
            layout.prop(obj.occnet, "factor", slider=True)
            layout.operator("occnet.bake", icon="MESH_DATA")
            return
        if obj is not None and obj.occnet.kind == "RECONSTRUCTION":
            layout.label(text=f"{obj.occnet.model}, from {obj.occnet.source}")
            if obj.occnet.input_summary:
                icon = "IMAGE_DATA" if obj.occnet.input_kind == "image" else "POINTCLOUD_DATA"
                _wrapped(layout, obj.occnet.input_summary, icon)
            layout.operator("occnet.reextract", icon="FILE_REFRESH")
        layout.label(text="Select two reconstructions:")
        layout.operator("occnet.blend", icon="IPO_EASE_IN_OUT")


def status_bar(self, context) -> None:
    """The status bar, while a job runs: what it does, how far, and Cancel; so progress shows whichever editor is
    in front, not only in the sidebar. Drawn nowhere when nothing runs."""
    job = JOBS.current
    if job is None:
        return
    row = self.layout.row(align=True)
    more = f" (+{len(JOBS.queue) - 1})" if len(JOBS.queue) > 1 else ""
    row.progress(factor=job.fraction, type="BAR", text=f"OccNet {job.label}: {job.stage} {job.fraction:.0%}{more}")
    row.operator("occnet.cancel", text="", icon="CANCEL")


classes = (OCCNET_PT_main, OCCNET_PT_advanced, OCCNET_PT_blend)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.STATUSBAR_HT_header.append(status_bar)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(status_bar)
    _unregister_classes()
