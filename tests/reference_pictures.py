"""Orthographic pictures of a mesh from Blender's named views, as reference images show it."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.data.ortho_views import render_view
from backend.inputs.views import View


def pictures_of(
    mesh: trimesh.Trimesh, names: list[str], centre=(0.0, 0.0, 0.0), size: float = 1.0, pixels: int = 128
) -> list[tuple[np.ndarray, View]]:
    """RGBA uint8 renders of `mesh` from each named view, each picture `size` wide and centred on `centre`."""
    points, faces = trimesh.sample.sample_surface(mesh, 200_000, seed=0)
    normals = mesh.face_normals[faces]
    out = []
    for name in names:
        axes = View.named(name).axes
        view = View(tuple(float(c) for c in centre), tuple(axes[0] * size), tuple(axes[1] * size))
        rgba, _ = render_view(points, normals, view, pixels)
        out.append(((rgba * 255).round().astype(np.uint8), view))
    return out
