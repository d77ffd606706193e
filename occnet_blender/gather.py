"""Selection -> observations for the worker: point arrays, surface samples, image pixels or file paths.

Geometry is read in the object's local frame (what the modifiers make of it), so the result, placed with
the source's world matrix, lands exactly on the source whatever its location, rotation and scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from .meshes import collection_names, flat_matrix
from .shared import input_kind

SURFACE_SAMPLES = 20_000


class GatherError(Exception):
    """The object or file cannot be reconstructed; the message says why and what to do."""


@dataclass
class Source:
    name: str
    kind: str  # "pointcloud" or "image", as the models' input_kind
    matrix: list[float]  # 4x4 row-major world matrix the result gets
    collections: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    fields: dict = field(default_factory=dict)


def gather_object(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> Source:
    if obj.type == "MESH":
        arrays, matrix, kind = _mesh_points(obj, depsgraph), obj.matrix_world, "pointcloud"
    elif obj.type == "POINTCLOUD":
        arrays, matrix, kind = {"points": _cloud_points(obj, depsgraph)}, obj.matrix_world, "pointcloud"
    elif obj.type == "EMPTY" and obj.empty_display_type == "IMAGE":
        arrays, matrix, kind = {"pixels": _image_pixels(obj)}, _upright_matrix(obj), "image"
    elif obj.type == "EMPTY":
        raise GatherError(
            f"'{obj.name}' is an empty without a picture. Use Add > Image > Reference to bring in a reference image."
        )
    else:
        raise GatherError(
            f"'{obj.name}' is a {obj.type.lower().replace('_', ' ')}: OccNet reconstructs meshes, point clouds "
            "and image empties. Select one of those."
        )
    return Source(obj.name, kind, flat_matrix(matrix), collection_names(obj), arrays=arrays)


def gather_file(path: str, location) -> Source:
    """An image or scan file, read by the worker; the result is placed at `location` (the 3-D cursor)."""
    file = Path(bpy.path.abspath(path))
    if not file.is_file():
        raise GatherError(f"{file}: no such file. Check the path.")
    matrix = flat_matrix(Matrix.Translation(location))
    return Source(file.stem, input_kind(file), matrix, [], fields={"input_path": str(file)})


def _mesh_points(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> dict[str, np.ndarray]:
    """The points of a scan (a mesh of vertices only), or surface samples of a mesh with faces and their normals
    (when the faces are consistently wound, so the normals can be trusted)."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        count = len(mesh.vertices)
        if count == 0:
            raise GatherError(f"'{obj.name}' is an empty mesh: it has no vertices to reconstruct from.")
        vertices = np.empty(count * 3, np.float32)
        mesh.vertices.foreach_get("co", vertices)
        vertices = vertices.reshape(-1, 3)
        if not mesh.polygons:  # an imported scan: the vertices are the points
            return {"points": vertices}
        mesh.calc_loop_triangles()
        triangles = np.empty(len(mesh.loop_triangles) * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", triangles)
        return _surface_samples(vertices, triangles.reshape(-1, 3))
    finally:
        evaluated.to_mesh_clear()


def _surface_samples(vertices: np.ndarray, triangles: np.ndarray) -> dict[str, np.ndarray]:
    """Area-weighted points on the surface, seeded so the same mesh gives the same result, and their faces'
    outward normals where the winding can be trusted."""
    corners = vertices[triangles]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    if not areas.sum() > 0:
        return {"points": vertices}
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(triangles), SURFACE_SAMPLES, p=areas / areas.sum())
    u, v = rng.random((2, SURFACE_SAMPLES, 1), dtype=np.float32)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    a, b, c = corners[chosen, 0], corners[chosen, 1], corners[chosen, 2]
    arrays = {"points": (a + u * (b - a) + v * (c - a)).astype(np.float32)}
    outward = _outward_sign(triangles, corners)
    if outward:
        normals = cross[chosen] / np.maximum(np.linalg.norm(cross[chosen], axis=1, keepdims=True), 1e-30)
        arrays["point_normals"] = (outward * normals).astype(np.float32)
    return arrays


def _outward_sign(triangles: np.ndarray, corners: np.ndarray) -> int:
    """+1 when the faces' normals point out of the object, -1 when a closed mesh is inside out, 0 when the
    winding is inconsistent (some edge walked the same way by two faces) and the normals cannot be trusted."""
    edges = triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    if len(np.unique(edges, axis=0)) < len(edges):
        return 0
    reverse = np.unique(edges[:, ::-1], axis=0)
    closed = len(np.unique(np.concatenate([edges, reverse]), axis=0)) == len(edges)
    volume = float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum())
    return -1 if closed and volume < 0 else 1


def _cloud_points(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> np.ndarray:
    cloud = obj.evaluated_get(depsgraph).data
    positions = cloud.attributes.get("position")
    if positions is None or len(positions.data) == 0:
        raise GatherError(f"'{obj.name}' is an empty point cloud: it has no points to reconstruct from.")
    points = np.empty(len(positions.data) * 3, np.float32)
    positions.data.foreach_get("vector", points)
    return points.reshape(-1, 3)


def _image_pixels(obj: bpy.types.Object) -> np.ndarray:
    image = obj.data
    if image is None:
        raise GatherError(f"'{obj.name}' shows no image. Open one in its Object Data properties.")
    width, height = image.size
    if width == 0 or height == 0:
        where = bpy.path.abspath(image.filepath) if image.filepath else "no file"
        raise GatherError(
            f"The image '{image.name}' of '{obj.name}' cannot be read ({where}). "
            "Re-link the file or open another image."
        )
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, image.channels)[::-1]  # Blender stores rows bottom-up
    return np.ascontiguousarray(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _upright_matrix(obj: bpy.types.Object) -> Matrix:
    """Image models predict an upright object: the empty's place and size, not its (view-facing) rotation."""
    location, _, scale = obj.matrix_world.decompose()
    size = obj.empty_display_size * float(np.mean(np.abs(scale)))
    return Matrix.Translation(location) @ Matrix.Scale(size, 4)
