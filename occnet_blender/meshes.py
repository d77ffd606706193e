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
