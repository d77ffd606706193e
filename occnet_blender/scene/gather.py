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

from ..backend_parts import input_kind
from .meshes import collection_names, flat_matrix

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
    # The result's origin goes to its own centre (a file's coordinates may be millions of units from 0, where a
    # float32 mesh rounds); an object's result keeps its source's origin and transform instead.
    recenter: bool = False


def gather_object(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> Source:
    """The object as the user sees it: modifiers applied, Geometry Nodes points and instances included."""
    if obj.type in ("MESH", "POINTCLOUD"):
        arrays, matrix, kind = _evaluated_points(obj, depsgraph), obj.matrix_world, "pointcloud"
    elif obj.type == "EMPTY" and obj.empty_display_type == "IMAGE":
        pixels = _image_pixels(obj)
        matrix, kind = _upright_matrix(obj), "image"
        arrays = {"pixels": pixels, "views": picture_view(obj, pixels.shape, matrix)[None]}
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
    return Source(file.stem, input_kind(file), matrix, [], fields={"input_path": str(file)}, recenter=True)


@dataclass
class _Part:
    """Points of one geometry component in the object's local frame, with their normals and sRGB colours."""

    points: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    sampled: bool = False  # surface samples (not the object's own points): instances of it are thinned


def _evaluated_points(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> dict[str, np.ndarray]:
    """Points of every component the evaluated object holds (mesh, point cloud, instances), joined. Normals and
    colours travel only when every component has them."""
    evaluated = obj.evaluated_get(depsgraph)
    if not evaluated.is_evaluated:  # added since the depsgraph was last evaluated
        depsgraph.update()
        evaluated = obj.evaluated_get(depsgraph)
    if not evaluated.is_evaluated:
        raise GatherError(
            f"'{obj.name}' is not in the view layer (is its collection excluded?). Include it, then reconstruct."
        )
    geometry = evaluated.evaluated_geometry()
    parts = [part for part in _geometry_parts(geometry, depsgraph, 0) if len(part.points)]
    if not parts:
        what = "point cloud" if obj.type == "POINTCLOUD" else "mesh"
        raise GatherError(
            f"'{obj.name}' is an empty {what}: it has no vertices or points to reconstruct from "
            "(with its modifiers applied)."
        )
    arrays = {"points": np.concatenate([p.points for p in parts]).astype(np.float32)}
    if all(p.normals is not None for p in parts):
        arrays["point_normals"] = np.concatenate([p.normals for p in parts]).astype(np.float32)
    if all(p.colors is not None for p in parts):
        arrays["point_colors"] = np.concatenate([p.colors for p in parts]).astype(np.float32)
    return arrays


MAX_INSTANCE_DEPTH = 4


def _geometry_parts(geometry, depsgraph: bpy.types.Depsgraph, depth: int) -> list[_Part]:
    parts = []
    mesh = geometry.mesh
    if mesh is not None and len(mesh.vertices):
        parts.append(_mesh_part(mesh))
    cloud = geometry.pointcloud
    if cloud is not None and len(cloud.points):
        parts.append(_cloud_part(cloud))
    if depth < MAX_INSTANCE_DEPTH:
        parts += _instance_parts(geometry, depsgraph, depth)
    return parts


def _instance_parts(geometry, depsgraph: bpy.types.Depsgraph, depth: int) -> list[_Part]:
    """Instanced geometry (Instance on Points, Collection Info), each reference's points placed by every instance
    of it. Rotation and scale move the normals too (inverse transpose)."""
    instances = geometry.instances_pointcloud()
    if instances is None or not len(instances.points):
        return []
    count = len(instances.points)
    transforms = np.empty(count * 16, np.float32)
    instances.attributes["instance_transform"].data.foreach_get("value", transforms)
    transforms = transforms.reshape(count, 4, 4).transpose(0, 2, 1)  # stored by columns
    indices = np.zeros(count, np.int32)
    if ".reference_index" in instances.attributes:
        instances.attributes[".reference_index"].data.foreach_get("value", indices)
    parts = []
    for index, reference in enumerate(geometry.instance_references()):
        placed = transforms[indices == index]
        if not len(placed):
            continue
        for part in _reference_parts(reference, depsgraph, depth):
            points = np.einsum("kij,nj->kni", placed[:, :3, :3], part.points) + placed[:, None, :3, 3]
            normals = None
            if part.normals is not None:
                inverse = np.linalg.inv(placed[:, :3, :3]).transpose(0, 2, 1)
                normals = np.einsum("kij,nj->kni", inverse, part.normals)
                normals /= np.maximum(np.linalg.norm(normals, axis=2, keepdims=True), 1e-30)
                normals = normals.reshape(-1, 3)
            colors = None if part.colors is None else np.tile(part.colors, (len(placed), 1))
            placed_part = _Part(points.reshape(-1, 3), normals, colors, part.sampled)
            if part.sampled and len(placed_part.points) > SURFACE_SAMPLES:  # one mesh's worth of samples in all
                keep = np.random.default_rng(0).choice(len(placed_part.points), SURFACE_SAMPLES, replace=False)
                placed_part = _Part(
                    placed_part.points[keep],
                    None if normals is None else normals[keep],
                    None if colors is None else colors[keep],
                    True,
                )
            parts.append(placed_part)
    return parts


def _reference_parts(reference, depsgraph: bpy.types.Depsgraph, depth: int) -> list[_Part]:
    if isinstance(reference, bpy.types.Object):
        if reference.type not in ("MESH", "POINTCLOUD"):
            return []
        evaluated = reference if reference.is_evaluated else reference.evaluated_get(depsgraph)
        return _geometry_parts(evaluated.evaluated_geometry(), depsgraph, depth + 1)
    if isinstance(reference, bpy.types.Collection):
        parts = []
        for member in reference.all_objects:
            for part in _reference_parts(member, depsgraph, depth):
                matrix = np.array(member.matrix_world, np.float32)  # relative to the collection's origin
                part.points = part.points @ matrix[:3, :3].T + matrix[:3, 3]
                part.normals = None  # rare enough not to carry the object's rotation into them
                parts.append(part)
        return parts
    if reference is None:
        return []
    return _geometry_parts(reference, depsgraph, depth + 1)  # a GeometrySet


def _mesh_part(mesh: bpy.types.Mesh) -> _Part:
    """The points of a scan (a mesh of vertices only), or surface samples of a mesh with faces and their normals
    (when the faces are consistently wound, so the normals can be trusted), with the colours where it has them."""
    count = len(mesh.vertices)
    vertices = np.empty(count * 3, np.float32)
    mesh.attributes["position"].data.foreach_get("vector", vertices)
    vertices = vertices.reshape(-1, 3)
    attribute = color_attribute(mesh)
    if not mesh.polygons:  # an imported scan: the vertices are the points
        colors = read_colors(attribute) if attribute is not None and attribute.domain == "POINT" else None
        return _Part(vertices, colors=colors)
    mesh.calc_loop_triangles()
    triangles = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", triangles)
    triangles = triangles.reshape(-1, 3)
    corner_colors = None
    if attribute is not None and attribute.domain == "POINT":
        corner_colors = read_colors(attribute)[triangles]
    elif attribute is not None and attribute.domain == "CORNER":  # each face's own colour at a seam
        loops = np.empty(len(mesh.loop_triangles) * 3, np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        corner_colors = read_colors(attribute)[loops.reshape(-1, 3)]
    return _surface_samples(vertices, triangles, corner_colors)


def _cloud_part(cloud: bpy.types.PointCloud) -> _Part:
    count = len(cloud.points)
    points = np.empty(count * 3, np.float32)
    cloud.attributes["position"].data.foreach_get("vector", points)
    attribute = color_attribute(cloud)
    colors = read_colors(attribute) if attribute is not None and attribute.domain == "POINT" else None
    return _Part(points.reshape(-1, 3), colors=colors)


def color_attribute(data: bpy.types.Mesh | bpy.types.PointCloud) -> bpy.types.Attribute | None:
    """The colour the user sees: the active colour attribute, else the default (render) one, else one named
    "Col" (what importers name it), else the first."""
    colors = data.color_attributes
    if not len(colors):
        return None
    for name in (getattr(colors, "active_color_name", ""), getattr(colors, "default_color_name", ""), "Col"):
        if name and colors.get(name) is not None:
            return colors[name]
    return colors[0]


def read_colors(attribute: bpy.types.Attribute) -> np.ndarray:
    """(N, 3) sRGB in [0, 1], whatever the attribute stores: BYTE_COLOR keeps sRGB bytes, FLOAT_COLOR linear
    floats, and Blender's `color_srgb` gives both in the sRGB a scan file and the backend's colours use."""
    values = np.empty(len(attribute.data) * 4, np.float32)
    attribute.data.foreach_get("color_srgb", values)
    return np.clip(values.reshape(-1, 4)[:, :3], 0.0, 1.0)


def _surface_samples(vertices: np.ndarray, triangles: np.ndarray, corner_colors: np.ndarray | None = None) -> _Part:
    """Area-weighted points on the surface, seeded so the same mesh gives the same result, and their faces'
    outward normals where the winding can be trusted. `corner_colors` (T, 3, 3): each triangle corner's colour,
    interpolated to the samples."""
    corners = vertices[triangles]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    if not areas.sum() > 0:
        colors = None
        if corner_colors is not None:  # a flat mesh: each vertex its corners' mean colour
            sums = np.zeros((len(vertices), 3))
            np.add.at(sums, triangles.ravel(), corner_colors.reshape(-1, 3))
            hits = np.bincount(triangles.ravel(), minlength=len(vertices))[:, None]
            colors = np.where(hits > 0, sums / np.maximum(hits, 1), 0.5).astype(np.float32)
        return _Part(vertices, colors=colors)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(triangles), SURFACE_SAMPLES, p=areas / areas.sum())
    u, v = rng.random((2, SURFACE_SAMPLES, 1), dtype=np.float32)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    a, b, c = corners[chosen, 0], corners[chosen, 1], corners[chosen, 2]
    part = _Part((a + u * (b - a) + v * (c - a)).astype(np.float32), sampled=True)
    outward = _outward_sign(triangles, corners)
    if outward:
        normals = cross[chosen] / np.maximum(np.linalg.norm(cross[chosen], axis=1, keepdims=True), 1e-30)
        part.normals = (outward * normals).astype(np.float32)
    if corner_colors is not None:
        ca, cb, cc = corner_colors[chosen, 0], corner_colors[chosen, 1], corner_colors[chosen, 2]
        part.colors = np.clip(ca + u * (cb - ca) + v * (cc - ca), 0.0, 1.0).astype(np.float32)
    return part


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
    """An image result's frame: the empty's place and size, not its (view-facing) rotation, so that a model of one
    picture predicts an upright object there."""
    location, _, scale = obj.matrix_world.decompose()
    size = obj.empty_display_size * float(np.mean(np.abs(scale)))
    return Matrix.Translation(location) @ Matrix.Scale(size, 4)


def picture_view(obj: bpy.types.Object, shape: tuple[int, ...], frame: Matrix) -> np.ndarray:
    """(3, 3): where an image empty shows its picture, in `frame` (the result's): the picture's centre and the
    vectors spanning its width and height (the longer side is the display size; the offset places the picture
    about the empty's origin, -0.5 centring it). The views model matches the silhouette seen along them."""
    height, width = shape[:2]
    longer = max(width, height)
    size = obj.empty_display_size
    w, h = size * width / longer, size * height / longer
    offset = obj.empty_image_offset
    local = np.array(frame.inverted() @ obj.matrix_world, dtype=np.float64)
    centre = local @ np.array([(offset[0] + 0.5) * w, (offset[1] + 0.5) * h, 0.0, 1.0])
    return np.stack([centre[:3], local[:3, 0] * w, local[:3, 1] * h])


def join_pictures(sources: list[Source]) -> Source:
    """Several reference images of one object as one input, in the first's frame."""
    first = sources[0]
    into_first = np.linalg.inv(np.array(first.matrix, np.float64).reshape(4, 4))
    views = []
    for source in sources:
        to_first = into_first @ np.array(source.matrix, np.float64).reshape(4, 4)
        centre, right, up = source.arrays["views"][0]
        views.append([(to_first @ np.append(centre, 1.0))[:3], to_first[:3, :3] @ right, to_first[:3, :3] @ up])
    more = [source.arrays["pixels"] for source in sources[1:]]
    arrays = {
        "pixels": first.arrays["pixels"],
        "views": np.array(views),
        "more_pixels": np.concatenate([p.ravel() for p in more]),
        "more_shapes": np.array([p.shape for p in more], np.int64),
    }
    name = " + ".join(source.name for source in sources)
    return Source(name, "image", first.matrix, first.collections, arrays=arrays)
