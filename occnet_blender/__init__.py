"""OccNet for Blender, the add-on half: runs inside Blender with bpy, numpy and the standard library only.

Never imports torch: the network runs in a backend worker process (see client.py and connection.py).
"""

from __future__ import annotations

from . import blend, connection, installer, jobs, operators, panels, preferences, properties

_MODULES = (preferences, properties, connection, jobs, installer, operators, panels, blend)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
