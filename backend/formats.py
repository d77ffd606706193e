"""Which files the backend reads, by extension. Standard library only: the add-on shares it without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
TEXT_CLOUD_SUFFIXES = {".xyz", ".txt", ".pts", ".csv"}
MESH_SUFFIXES = {".ply", ".obj", ".stl", ".off", ".glb", ".gltf"}
ARRAY_SUFFIXES = {".npy", ".npz"}
# Scanner formats: LiDAR (laspy; .laz also needs lazrs), terrestrial scanners (pye57), PCL (read in numpy alone).
SCANNER_SUFFIXES = {".las", ".laz", ".e57", ".pcd"}
SUPPORTED = sorted(IMAGE_SUFFIXES | TEXT_CLOUD_SUFFIXES | MESH_SUFFIXES | ARRAY_SUFFIXES | SCANNER_SUFFIXES)
# Formats trimesh writes a triangle mesh to without optional packages (.3mf needs lxml, .dae pycollada).
MESH_OUTPUT_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
LATENT_MARKER = "occnet_latent"  # the entry that marks a saved latent (.npz): a shape's code, not an input


def input_kind(path: str | Path) -> str:
    """The model input a file gives: "image" for pictures, "pointcloud" for clouds, meshes and arrays."""
    return "image" if Path(path).suffix.lower() in IMAGE_SUFFIXES else "pointcloud"


@dataclass(frozen=True)
class PlyHeader:
    """What a PLY header declares: its length in bytes (the end_header line included), whether the body is text,
    and per element its count and its properties' words (['float', 'x'], ['list', 'uchar', 'uint', 'indices'])."""

    length: int
    ascii: bool
    elements: dict[str, tuple[int, list[list[str]]]]

    def count(self, element: str) -> int | None:
        return self.elements[element][0] if element in self.elements else None


def read_ply_header(head: bytes) -> PlyHeader | None:
    """The PLY header at the start of `head` (a file's first bytes), or None when `head` holds none whole. Read by the
    backend before a file's body and by the add-on to check what Blender's exporter wrote: written once, here."""
    end = head.find(b"end_header")
    line_end = head.find(b"\n", end)
    if not head.startswith(b"ply") or end < 0 or line_end < 0:
        return None
    elements: dict[str, tuple[int, list[list[str]]]] = {}
    element, is_ascii = None, False
    for line in head[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if words[:2] == ["format", "ascii"]:
            is_ascii = True
        elif words[:1] == ["element"] and len(words) == 3 and words[2].isdigit():
            element = words[1]
            elements[element] = (int(words[2]), [])
        elif words[:1] == ["property"] and element:
            elements[element][1].append(words[1:])
    return PlyHeader(line_end + 1, is_ascii, elements)
