"""OccNet for Blender, the add-on half: runs inside Blender with bpy, numpy and the standard library only.

Never imports torch: the network runs in a backend worker process (see worker/). The add-on's parts, by role:
ui/ (panels, operators, properties, preferences), worker/ (the worker link: client, lifecycle, jobs, installer)
and scene/ (reading the selection, writing result objects, latents and blends).
"""

from __future__ import annotations

from .scene import blend
from .ui import operators, panels, preferences, properties
from .worker import installer, jobs, lifecycle

_MODULES = (preferences, properties, lifecycle, jobs, installer, operators, panels, blend)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
