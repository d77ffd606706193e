"""The add-on's identity and its preferences as data: a leaf module, so that everything reading a setting
(the worker's lifecycle, the installer) depends on it and not on the preferences UI, which depends on them."""

from __future__ import annotations

import bpy

ADDON_ID = __package__.rpartition(".")[0]  # the extension's module, e.g. "bl_ext.user_default.occnet"
ENV_FOLDER = "backend-env"


def preferences() -> bpy.types.AddonPreferences | None:
    """The add-on's preferences, or None when it runs from a source checkout (the batch script)."""
    addon = bpy.context.preferences.addons.get(ADDON_ID) if ADDON_ID else None
    return addon.preferences if addon is not None else None
