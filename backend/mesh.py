"""The mesh every part of the backend hands around, and writing it in any format trimesh knows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from .errors import OutputError
from .formats import MESH_OUTPUT_SUFFIXES
from .outputs import atomic_write


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32
    normals: np.ndarray | None = None  # (V, 3) float32, unit length

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)
        if self.normals is not None:
            self.normals = np.ascontiguousarray(self.normals, dtype=np.float32).reshape(-1, 3)

    def to_trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, vertex_normals=self.normals, process=False)

    def transformed(self, center: np.ndarray, scale: float) -> Mesh:
        """Map from the canonical frame back to the source's frame (x * scale + center)."""
        return Mesh(self.vertices * np.float32(scale) + np.asarray(center, np.float32), self.faces, self.normals)

    def save(self, path: str | Path) -> Path:
        """Write atomically: a failed or interrupted export leaves an existing file at `path` untouched."""
        path = Path(path)
        suffix = check_mesh_suffix(path)
        # In memory first: trimesh's own file writing truncates the target before exporting. A .gltf keeps
        # its buffers inside, so the one file is the whole mesh.
        data = self.to_trimesh().export(file_type=suffix, **({"embed_buffers": True} if suffix == "gltf" else {}))
        if isinstance(data, dict):
            (data,) = data.values()
        with atomic_write(path) as partial:
            partial.write_bytes(data.encode() if isinstance(data, str) else data)
        return path


def check_mesh_suffix(path: str | Path) -> str:
    """The format of a mesh output ('obj'), or a message naming the ones that can be written."""
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_OUTPUT_SUFFIXES:
        raise OutputError(
            f"{path}: cannot write '{suffix or Path(path).name}' meshes. Use one of: {', '.join(MESH_OUTPUT_SUFFIXES)}."
        )
    return suffix.lstrip(".")
