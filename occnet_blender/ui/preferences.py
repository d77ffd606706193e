"""Add-on preferences: which Python runs the backend, on which device, and where extra models live."""

from __future__ import annotations

import bpy

from ..identity import ADDON_ID, preferences
from ..worker import installer
from ..worker.jobs import JOBS
from ..worker.lifecycle import BACKEND

__all__ = ["OCCNET_AP_preferences", "preferences"]


def _launch_changed(self, context) -> None:
    """A new interpreter, device or models folder takes effect with the next worker; stop an idle one now."""
    if not JOBS.queue:
        BACKEND.stop()


class OCCNET_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    backend_python: bpy.props.StringProperty(
        name="Backend Python",
        description=(
            "A Python interpreter that has PyTorch, for GPU speed (empty: the installed backend, then Blender's own "
            "Python, then the built-in CPU runtime)"
        ),
        subtype="FILE_PATH",
        update=_launch_changed,
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=[
            ("auto", "Auto", "CUDA when there is a GPU, otherwise the CPU (the built-in runtime always uses the CPU)"),
            ("cuda", "CUDA", "An NVIDIA GPU"),
            ("cpu", "CPU", "The processor: slower, works everywhere"),
        ],
        default="auto",
        update=_launch_changed,
    )
    models_dir: bpy.props.StringProperty(
        name="Extra Models",
        description="A folder with more .safetensors models (for example your own)",
        subtype="DIR_PATH",
        update=_launch_changed,
    )
    install_build: bpy.props.EnumProperty(
        name="PyTorch Build",
        items=[
            ("cpu", "CPU", "Works on every machine (about 200 MB)"),
            ("cuda", "CUDA", "For NVIDIA GPUs (several GB)"),
        ],
        default="cpu",
    )

    def draw(self, context) -> None:
        layout = self.layout
        layout.prop(self, "backend_python")
        layout.prop(self, "device")
        layout.prop(self, "models_dir")
        box = layout.box()
        box.label(text=f"Backend: {BACKEND.summary()}")
        if bpy.app.online_access:
            box.label(text="Optional: download PyTorch for GPU speed (the built-in CPU runtime needs nothing).")
            row = box.row()
            row.prop(self, "install_build", expand=True)
            row.operator("occnet.install_backend", icon="IMPORT")
        else:
            box.label(text="For GPU speed, set Backend Python to a Python that has PyTorch.", icon="INFO")
            box.label(text="(Allow online access in Preferences > System to offer a PyTorch download.)")
        box.operator("occnet.restart_backend", icon="FILE_REFRESH")
        if installer.INSTALL.message:
            box.label(text=installer.INSTALL.message)


classes = (OCCNET_AP_preferences,) if ADDON_ID else ()

register, unregister = bpy.utils.register_classes_factory(classes)
