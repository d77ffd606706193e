"""The mesh every part of the backend hands around (both engines), and writing it in any format trimesh knows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import OutputError
from ..formats import MESH_OUTPUT_SUFFIXES
from ..outputs import atomic_write

PLY_TYPES = {"<f8": "double", "<f4": "float", "<u1": "uchar"}

if TYPE_CHECKING:
    import trimesh


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32 in the canonical frame; float64 (kept as given) in a source's own frame
    faces: np.ndarray  # (F, 3) int32
    normals: np.ndarray | None = None  # (V, 3) float32, unit length
    colors: np.ndarray | None = None  # (V, 3) float32 RGB in [0, 1], when the input had colour

    def __post_init__(self) -> None:
        dtype = np.float64 if np.asarray(self.vertices).dtype == np.float64 else np.float32
        self.vertices = np.ascontiguousarray(self.vertices, dtype=dtype).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)
        if self.normals is not None:
            self.normals = np.ascontiguousarray(self.normals, dtype=np.float32).reshape(-1, 3)
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(-1, 3)

    def face_area_normals(self) -> np.ndarray:
        """(V, 3) unit vertex normals, each the area-weighted mean of its faces' normals (faces wound outward)."""
        corners = self.vertices[self.faces].astype(np.float64)
        weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length: twice the area
        normals = np.stack(
            [np.bincount(self.faces.ravel(), np.repeat(weighted[:, i], 3), len(self.vertices)) for i in range(3)], 1
        )
        return (normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)).astype(np.float32)

    def to_trimesh(self) -> trimesh.Trimesh:
        import trimesh  # not at the top: the built-in engine runs in Blender, where there is no trimesh

        colors = None if self.colors is None else self.rgba8()
        return trimesh.Trimesh(
            self.vertices, self.faces, vertex_normals=self.normals, vertex_colors=colors, process=False
        )

    def rgba8(self) -> np.ndarray:
        """(V, 4) uint8 colours, opaque: how PLY, OBJ and glTF files store them."""
        rgb = np.round(np.clip(self.colors, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)

    def transformed(self, center: np.ndarray, scale: float) -> Mesh:
        """Map from the canonical frame back to the source's frame (x * scale + center), in float64: a scan
        far from the origin (georeferenced, at y = 5.4e6) would be rounded to half a metre in float32."""
        vertices = self.vertices.astype(np.float64) * float(scale) + np.asarray(center, np.float64)
        return Mesh(vertices, self.faces, self.normals, self.colors)

    def save(self, path: str | Path) -> Path:
        """Write atomically: a failed or interrupted export leaves an existing file at `path` untouched. OBJ, OFF
        and PLY keep float64 vertices exactly; glTF stores float32 vertices, so its mesh is written around its own
        centre and placed by the node's translation (float64 in the JSON): a georeferenced result keeps its detail.
        STL has no such place and stores float32 (at 5.4e6, to half a metre). Colours go to PLY, OBJ and glTF."""
        path = Path(path)
        suffix = check_mesh_suffix(path)
        # In memory first: trimesh's own file writing truncates the target before exporting. A .gltf keeps
        # its buffers inside, so the one file is the whole mesh.
        if suffix == "ply":
            data = self._ply_bytes()
        elif suffix in ("glb", "gltf"):
            data = self._gltf_scene().export(file_type=suffix, **({"embed_buffers": True} if suffix == "gltf" else {}))
        else:
            data = self.to_trimesh().export(file_type=suffix, **({"embed_buffers": True} if suffix == "gltf" else {}))
        if isinstance(data, dict):
            (data,) = data.values()
        with atomic_write(path) as partial:
            partial.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def _gltf_scene(self) -> trimesh.Scene:
        """One node holding the mesh around its bounding box's centre, translated there."""
        import trimesh

        vertices = self.vertices.astype(np.float64)
        center = (vertices.min(axis=0) + vertices.max(axis=0)) / 2 if len(vertices) else np.zeros(3)
        local = Mesh(vertices - center, self.faces, self.normals, self.colors).to_trimesh()
        scene = trimesh.Scene()
        scene.add_geometry(local, node_name="occnet", transform=trimesh.transformations.translation_matrix(center))
        return scene

    def _ply_bytes(self) -> bytes:
        """Binary PLY with the vertices' own precision (double for float64): trimesh writes float32 only."""
        columns = {axis: self.vertices[:, i] for i, axis in enumerate("xyz")}
        if self.normals is not None:
            columns.update({axis: self.normals[:, i] for i, axis in enumerate(("nx", "ny", "nz"))})
        if self.colors is not None:
            rgba = self.rgba8()
            columns.update({name: rgba[:, i] for i, name in enumerate(("red", "green", "blue"))})
        kinds = {name: "<u1" if c.dtype == np.uint8 else f"<f{c.itemsize}" for name, c in columns.items()}
        vertex = np.empty(len(self.vertices), dtype=list(kinds.items()))
        for name, column in columns.items():
            vertex[name] = column
        face = np.empty(len(self.faces), dtype=[("count", "u1"), ("index", "<i4", (3,))])
        face["count"], face["index"] = 3, self.faces
        header = [
            "ply",
            "format binary_little_endian 1.0",
            f"element vertex {len(vertex)}",
            *(f"property {PLY_TYPES[kind]} {name}" for name, kind in kinds.items()),
            f"element face {len(face)}",
            "property list uchar int vertex_indices",
            "end_header",
        ]
        return ("\n".join(header) + "\n").encode("ascii") + vertex.tobytes() + face.tobytes()


def check_mesh_suffix(path: str | Path) -> str:
    """The format of a mesh output ('obj'), or a message naming the ones that can be written."""
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_OUTPUT_SUFFIXES:
        raise OutputError(
            f"{path}: cannot write '{suffix or Path(path).name}' meshes. Use one of: {', '.join(MESH_OUTPUT_SUFFIXES)}."
        )
    return suffix.lstrip(".")
