"""numpy -> Blender meshes with foreach_set (no Python loop over vertices), and the objects that hold them."""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix


def fill_mesh(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray, smooth: bool = True) -> None:
    """Replace the mesh's geometry; the datablock (and every object and keyframe using it) stays.

    Writes the position and corner-vertex attributes directly (Blender 4.2+): for a million triangles that
    is less than half the time of `loops.foreach_set("vertex_index")`, see bench/addon.py.
    """
    vertices = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1)
    faces = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1)
    count = len(faces) // 3
    mesh.clear_geometry()
    if not len(vertices):
        return
    mesh.vertices.add(len(vertices) // 3)
    mesh.attributes["position"].data.foreach_set("vector", vertices)
    mesh.loops.add(len(faces))
    mesh.attributes[".corner_vert"].data.foreach_set("value", faces)
    mesh.polygons.add(count)
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(faces), 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    if smooth:
        mesh.shade_smooth()
    else:
        mesh.shade_flat()


COLOR_ATTRIBUTE = "Col"  # the name Blender's PLY importer gives a scan's colours


def set_colors(mesh: bpy.types.Mesh, colors: np.ndarray | None) -> None:
    """Give each vertex its colour (sRGB in [0, 1]) as the mesh's active and default colour attribute, so Solid
    view's Attribute colour and renders show it; None (a scan without colour) leaves the mesh without one.

    BYTE_COLOR: scan colours are 8-bit sRGB, which it stores as they are (a quarter of FLOAT_COLOR's memory), and
    `color_srgb` writes them without a round trip through linear values."""
    old = mesh.color_attributes.get(COLOR_ATTRIBUTE)
    if old is not None:
        mesh.color_attributes.remove(old)
    if colors is None or not len(colors) or len(colors) != len(mesh.vertices):
        return
    rgba = np.ones((len(colors), 4), np.float32)
    rgba[:, :3] = np.clip(np.asarray(colors, np.float32).reshape(-1, 3), 0.0, 1.0)
    attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "BYTE_COLOR", "POINT")
    attribute.data.foreach_set("color_srgb", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index


def centered(vertices: np.ndarray, matrix: list[float]) -> tuple[np.ndarray, list[float], np.ndarray]:
    """The vertices around their bounding box's centre and the matrix that puts them back: a result far from the
    origin (a georeferenced scan) keeps its shape in a float32 mesh, and its origin sits on it. The centre is
    rounded to float32 first, so the object's location holds it exactly. Returns (local, matrix, centre)."""
    vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
    if not len(vertices):
        return vertices, matrix, np.zeros(3)
    center = ((vertices.min(axis=0) + vertices.max(axis=0)) / 2).astype(np.float32).astype(np.float64)
    placed = np.array(matrix, np.float64).reshape(4, 4)
    placed[:3, 3] += placed[:3, :3] @ center
    return vertices - center, [float(v) for v in placed.ravel()], center


def new_mesh_object(
    name: str, vertices: np.ndarray, faces: np.ndarray, matrix: list[float], collections: list[str], smooth: bool
) -> bpy.types.Object:
    """A new object in the named collections (the scene's own if none of them exists any more)."""
    mesh = bpy.data.meshes.new(name)
    fill_mesh(mesh, vertices, faces, smooth)
    obj = bpy.data.objects.new(name, mesh)
    obj.matrix_world = as_matrix(matrix)
    targets = [bpy.data.collections[c] for c in collections if c in bpy.data.collections]
    for collection in targets or [bpy.context.scene.collection]:
        collection.objects.link(obj)
    return obj


def as_matrix(flat: list[float]) -> Matrix:
    return Matrix([flat[0:4], flat[4:8], flat[8:12], flat[12:16]])


def flat_matrix(matrix: Matrix) -> list[float]:
    """Row-major floats: how matrices travel in jobs and ID properties."""
    return [float(value) for row in matrix for value in row]


def collection_names(obj: bpy.types.Object) -> list[str]:
    return [c.name for c in obj.users_collection]
