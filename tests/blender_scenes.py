"""Building the objects an artist would select, and measuring results in world space."""

from __future__ import annotations

import math

import bpy
import numpy as np
from PIL import Image

from backend.data.procedural import canonical_shape, occupancy, shape_id, shape_mesh, surface_samples
from backend.data.render import render
from backend.metrics import iou, mesh_contains, solid_iou


def held_out(category: str, index: int):
    return canonical_shape(category, int(shape_id("test", index)))


def link(obj: bpy.types.Object, collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    (collection or bpy.context.scene.collection).objects.link(obj)
    return obj


def vertex_cloud(name: str, points: np.ndarray) -> bpy.types.Object:
    """A mesh with vertices only: how an imported scan arrives."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", np.asarray(points, np.float32).ravel())
    return link(bpy.data.objects.new(name, mesh))


def scan_of(shape, count: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cloud, _ = surface_samples(shape, shape_mesh(shape), count, rng)
    return cloud + rng.normal(scale=0.005, size=cloud.shape)


def image_empty(name: str, shape, folder, size: float = 2.0) -> bpy.types.Object:
    path = folder / f"{name}.png"
    Image.fromarray(render(shape, math.radians(40), math.radians(25), 128), "RGBA").save(path)
    return image_empty_of(name, path, size)


def image_empty_of(name: str, path, size: float = 2.0) -> bpy.types.Object:
    """A reference-image empty showing the picture at `path`."""
    obj = bpy.data.objects.new(name, None)
    obj.empty_display_type = "IMAGE"
    obj.empty_display_size = size
    obj.data = bpy.data.images.load(str(path))
    return link(obj)


def select(*objects: bpy.types.Object) -> None:
    bpy.context.view_layer.update()
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in objects)
    bpy.context.view_layer.objects.active = objects[0] if objects else None


def world_mesh(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    mesh = obj.data
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", vertices)
    mesh.calc_loop_triangles()
    faces = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", faces)
    matrix = np.array(obj.matrix_world)
    world = vertices.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    return world, faces.reshape(-1, 3)


def world_iou(obj: bpy.types.Object, shape, placement: np.ndarray, count: int = 40_000) -> float:
    """IoU in world space against `shape` placed by the 4x4 `placement` (its canonical -> world map)."""
    local = np.random.default_rng(1).uniform(-0.6, 0.6, (count, 3))
    world = local @ placement[:3, :3].T + placement[:3, 3]
    vertices, faces = world_mesh(obj)
    return iou(mesh_contains(vertices, faces, world), occupancy(shape, local))


def other_iou(a: bpy.types.Object, b: bpy.types.Object, count: int = 40_000) -> float:
    """IoU of two results in world space, on points around both."""
    return solid_iou(world_mesh(a), world_mesh(b), count, seed=2)


def is_closed(obj: bpy.types.Object) -> bool:
    """Every edge is shared by exactly two faces: watertight."""
    _, faces = world_mesh(obj)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return len(faces) > 0 and bool(np.all(counts == 2))
