"""The README picture: a real scan and three reference pictures beside their reconstructions, and a chair-to-sofa
blend."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import trimesh
from mathutils import Matrix
from PIL import Image

from occnet_blender.scene.meshes import flat_matrix, new_mesh_object


def _mesh_object(name: str, vertices: np.ndarray, faces: np.ndarray, location) -> bpy.types.Object:
    return new_mesh_object(name, vertices, faces, flat_matrix(Matrix.Translation(location)), [], smooth=True)


def _load(path: Path) -> trimesh.Trimesh | trimesh.PointCloud:
    return trimesh.load(path, process=False)


def _load_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    mesh = _load(path)
    return _on_ground(np.asarray(mesh.vertices)), np.asarray(mesh.faces)


def _on_ground(vertices: np.ndarray) -> np.ndarray:
    """Centred in X and Y and standing on Z = 0, so the row of objects lines up in the picture."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    return vertices - [(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]]


def _points_as_dots(points: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A small tetrahedron per point, so Workbench can draw the cloud."""
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64) * size
    vertices = (points[:, None, :] + corners[None]).reshape(-1, 3)
    base = np.arange(len(points))[:, None] * 4
    faces = (base[:, None, :] + np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])[None]).reshape(-1, 3)
    return vertices, faces


def _picture_plane(path: Path, location, size: float) -> None:
    """The picture on a square facing the camera, on white where it is transparent (Workbench draws the texture's
    colour alone)."""
    rgba = np.asarray(Image.open(path).convert("RGBA"), np.float64)
    alpha = rgba[:, :, 3:] / 255.0
    shown = path.with_name(f"{path.stem}_on_white.png")
    Image.fromarray((rgba[:, :, :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)).save(shown)
    image = bpy.data.images.load(str(shown.resolve()))
    plane_mesh = bpy.data.meshes.new(path.stem)
    h = size / 2
    plane_mesh.from_pydata([(-h, 0, -h), (h, 0, -h), (h, 0, h), (-h, 0, h)], [], [(0, 1, 2, 3)])
    plane_mesh.uv_layers.new().data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    material = bpy.data.materials.new(path.stem)
    material.use_nodes = True
    texture = material.node_tree.nodes.new("ShaderNodeTexImage")
    texture.image = image
    plane = bpy.data.objects.new(path.stem, plane_mesh)
    plane.data.materials.append(material)
    plane.location = location
    bpy.context.scene.collection.objects.link(plane)


def render_picture(out: Path, scan: Path, blend_from: Path, pictures: list[Path]) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    cloud = np.asarray(_load(scan).vertices)
    recon = _load(out / f"{scan.stem}.obj")
    # Shown 1.1 units long, scan and reconstruction by the same factor; the mesh lies where the scan was.
    low = cloud.min(axis=0)
    factor = 1.1 / float((cloud.max(axis=0) - low).max())
    lift = np.array([(cloud.min(0)[0] + cloud.max(0)[0]) / 2, (cloud.min(0)[1] + cloud.max(0)[1]) / 2, low[2]])
    _mesh_object("scan", *_points_as_dots((cloud - lift) * factor, 0.006), (-2.2, 0, 0))
    _mesh_object("skull.occnet", (np.asarray(recon.vertices) - lift) * factor, np.asarray(recon.faces), (-0.95, 0, 0))
    for i, path in enumerate(sorted(out.glob(f"{blend_from.stem}_to_*.obj"))):
        v, f = _load_obj(path)
        _mesh_object(f"blend{i}", v, f, (0.3 + i * 1.05, 0, 0))
    v, f = _load_obj(out / f"{pictures[0].stem}.obj")
    _mesh_object("part.occnet", v / float(np.ptp(v, axis=0).max()), f, (6.3, 0, 0))  # shown 1 unit tall or wide
    for i, path in enumerate(pictures):  # front, side and top, one above the other
        _picture_plane(path, (5.3, 0, 1.45 - 0.5 * i), 0.46)

    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 9.6
    camera.location = (2.0, -12.0, 4.45)  # the row in the middle of the picture
    camera.rotation_euler = (np.radians(72), 0, 0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "TEXTURE"
    scene.display.shading.show_cavity = True
    scene.render.resolution_x, scene.render.resolution_y = 1600, 420
    scene.render.film_transparent = False
    scene.world = bpy.data.worlds.new("world")
    scene.render.filepath = str((out / "demo.png").resolve())
    bpy.ops.render.render(write_still=True)
