"""Whether a mesh file Blender's exporters wrote is whole. They log a failed write (a full disk: "could not close
file") and return normally, so the batch reads back what each format declares of itself before the file replaces
anything: its counts, its length. Standard library only, and only the file's own structure is read."""

from __future__ import annotations

import struct
from pathlib import Path

from .backend_parts import read_ply_header

PLY_SIZES = {
    **dict.fromkeys(("char", "uchar", "int8", "uint8"), 1),
    **dict.fromkeys(("short", "ushort", "int16", "uint16"), 2),
    **dict.fromkeys(("int", "uint", "float", "int32", "uint32", "float32"), 4),
    **dict.fromkeys(("double", "float64"), 8),
}


def written_problem(path: str | Path, vertices: int, faces: int) -> str | None:
    """What is wrong with an exported mesh of `vertices` and `faces` (polygons), or None when the file is whole."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return "the file is empty"
    check = {".obj": _obj, ".ply": _ply, ".stl": _stl, ".glb": _glb}.get(path.suffix.lower())
    if check is None:
        return None
    return check(path.read_bytes(), vertices, faces)


def _obj(data: bytes, vertices: int, faces: int) -> str | None:
    if not data.endswith(b"\n"):
        return "its last line is cut short"
    lines = b"\n" + data
    found = lines.count(b"\nv "), lines.count(b"\nf ")
    if found != (vertices, faces):
        return f"{found[0]} vertices and {found[1]} faces of {vertices} and {faces}"
    return None


def _ply(data: bytes, vertices: int, faces: int) -> str | None:
    header = read_ply_header(data)
    if header is None:
        return "its header is cut short"
    if header.ascii:
        return None  # text PLY: its length declares nothing
    if header.count("face") != faces:
        return f"its header declares {header.count('face')} faces of {faces}"
    size = header.length
    for count, properties in header.elements.values():
        for words in properties:  # a list property holds at least a triangle's three indices
            sizes = [PLY_SIZES.get(w, 0) for w in words[1:3]] if words[0] == "list" else [PLY_SIZES.get(words[0], 0)]
            size += count * (sizes[0] + 3 * sum(sizes[1:]))
    if len(data) < size:
        return f"{len(data):,} of at least {size:,} bytes"
    return None


def _stl(data: bytes, vertices: int, faces: int) -> str | None:
    triangles = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else -1
    if len(data) == 84 + 50 * triangles:
        return None if triangles >= faces else f"{triangles} triangles for {faces} faces"
    if data.startswith(b"solid") and data.rstrip().rsplit(b"\n", 1)[-1].strip().startswith(b"endsolid"):
        return None  # text STL, ended
    return "its length does not match its triangle count" if triangles >= 0 else "its header is cut short"


def _glb(data: bytes, vertices: int, faces: int) -> str | None:
    if len(data) < 12 or data[:4] != b"glTF":
        return "its header is cut short"
    (declared,) = struct.unpack_from("<I", data, 8)
    return None if declared == len(data) else f"{len(data):,} of {declared:,} bytes"
