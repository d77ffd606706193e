"""Readers for mesh formats that registry packages ship and trimesh does not read.

- 3D Studio (.3ds): the triangle meshes of every object (games' and benchmarks' models);
- DreamChess meshes (.dcm): text, vertices then normals, texture coordinates, and triangles or strips;
- GIFTI surfaces (.gii, .gii.gz): the point set and triangles of a brain surface (ASCII, base64, gzip+base64);
- OFF (.off) through trimesh, so that every format comes out as a trimesh.Trimesh the same way.

Each reader takes the file's bytes and returns one unprocessed trimesh.Trimesh holding all of the file's triangles.
"""

from __future__ import annotations

import base64
import gzip
import io
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable

import numpy as np
import trimesh


class MeshFormatError(ValueError):
    """The bytes are not a mesh of the format the reader expects."""


def read_3ds(data: bytes) -> trimesh.Trimesh:
    """All triangle meshes of a 3D Studio file, in the file's coordinates (3DS stores vertices already placed)."""
    if len(data) < 6 or struct.unpack_from("<H", data)[0] != 0x4D4D:
        raise MeshFormatError("not a 3D Studio file (no 0x4D4D main chunk)")
    parts: list[dict[str, np.ndarray]] = []

    def walk(start: int, end: int) -> None:
        pos = start
        while pos + 6 <= end:
            chunk, length = struct.unpack_from("<HI", data, pos)
            if length < 6 or pos + length > end:
                break  # a truncated or padded tail
            body = pos + 6
            if chunk in (0x4D4D, 0x3D3D):  # main, 3-D editor
                walk(body, pos + length)
            elif chunk == 0x4000:  # a named object
                walk(data.index(b"\0", body) + 1, pos + length)
            elif chunk == 0x4100:  # its triangle mesh
                parts.append({})
                walk(body, pos + length)
            elif chunk == 0x4110 and parts:
                (count,) = struct.unpack_from("<H", data, body)
                parts[-1]["vertices"] = np.frombuffer(data, "<f4", count * 3, body + 2).reshape(-1, 3)
            elif chunk == 0x4120 and parts:
                (count,) = struct.unpack_from("<H", data, body)
                faces = np.frombuffer(data, "<u2", count * 4, body + 2).reshape(-1, 4)[:, :3]
                parts[-1]["faces"] = faces.astype(np.int64)
            pos += length

    walk(0, len(data))
    return _joined([(p["vertices"], p["faces"]) for p in parts if "vertices" in p and "faces" in p])


def read_dcm(data: bytes) -> trimesh.Trimesh:
    """A DreamChess mesh: 'DCM 0100', n, 3n coordinates, 3n normals, 2n texture coordinates, then primitives."""
    tokens = data.split()
    if tokens[:2] != [b"DCM", b"0100"]:
        raise MeshFormatError("not a DreamChess mesh (no 'DCM 0100' header)")
    n = int(tokens[2])
    vertices = np.array(tokens[3 : 3 + 3 * n], dtype=np.float64).reshape(-1, 3)
    pos = 3 + 8 * n  # past the normals and texture coordinates
    faces = []
    for _ in range(int(tokens[pos])):
        kind, count = tokens[pos + 1], int(tokens[pos + 2])
        indices = np.array(tokens[pos + 3 : pos + 3 + count], dtype=np.int64)
        pos += 2 + count
        if kind == b"TRIANGLES":
            faces.append(indices.reshape(-1, 3))
        elif kind == b"STRIP":
            faces.append(_strip(indices))
        else:
            raise MeshFormatError(f"unknown primitive {kind!r}")
    return _joined([(vertices, np.concatenate(faces))])


def _strip(indices: np.ndarray) -> np.ndarray:
    """The triangles of a triangle strip, every second one turned so all face the same way; none degenerate."""
    i = np.arange(len(indices) - 2)
    a, b, c = indices[i], indices[i + 1], indices[i + 2]
    odd = i % 2 == 1
    a, b = np.where(odd, b, a), np.where(odd, a, b)
    faces = np.stack([a, b, c], axis=1)
    return faces[(a != b) & (b != c) & (a != c)]


GIFTI_TYPES = {
    "NIFTI_TYPE_FLOAT32": "f4",
    "NIFTI_TYPE_FLOAT64": "f8",
    "NIFTI_TYPE_INT32": "i4",
    "NIFTI_TYPE_UINT8": "u1",
}


def read_gifti(data: bytes) -> trimesh.Trimesh:
    """The point set and triangles of a GIFTI surface (.gii, or gzipped .gii.gz)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise MeshFormatError(f"not a GIFTI file ({exc})") from exc
    arrays = {}
    for array in root.iter("DataArray"):
        shape = tuple(int(array.get(f"Dim{d}")) for d in range(int(array.get("Dimensionality", "1"))))
        endian = "<" if array.get("Endian", "LittleEndian") == "LittleEndian" else ">"
        dtype = np.dtype(endian + GIFTI_TYPES[array.get("DataType")])
        text = array.findtext("Data") or ""
        encoding = array.get("Encoding")
        if encoding == "ASCII":
            values = np.array(text.split(), dtype=dtype)
        else:
            raw = base64.b64decode(text)
            values = np.frombuffer(zlib.decompress(raw) if encoding == "GZipBase64Binary" else raw, dtype)
        order = "F" if array.get("ArrayIndexingOrder") == "ColumnMajorOrder" else "C"
        arrays[array.get("Intent")] = values.reshape(shape, order=order)
    if "NIFTI_INTENT_POINTSET" not in arrays or "NIFTI_INTENT_TRIANGLE" not in arrays:
        raise MeshFormatError("a GIFTI file without a point set and triangles")
    return _joined([(arrays["NIFTI_INTENT_POINTSET"], arrays["NIFTI_INTENT_TRIANGLE"])])


def read_off(data: bytes) -> trimesh.Trimesh:
    mesh = trimesh.load(io.BytesIO(data), file_type="off", force="mesh", process=False)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshFormatError("an OFF file without triangles")
    return mesh


READERS: dict[str, Callable[[bytes], trimesh.Trimesh]] = {
    ".3ds": read_3ds,
    ".dcm": read_dcm,
    ".gii": read_gifti,
    ".gii.gz": read_gifti,
    ".off": read_off,
}


def reader_for(name: str) -> Callable[[bytes], trimesh.Trimesh] | None:
    """The reader for a file name, by its ending (case-blind), or None."""
    lower = name.lower()
    return next((read for suffix, read in READERS.items() if lower.endswith(suffix)), None)


def _joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> trimesh.Trimesh:
    parts = [(np.asarray(v, np.float64).reshape(-1, 3), np.asarray(f, np.int64).reshape(-1, 3)) for v, f in parts]
    parts = [(v, f) for v, f in parts if len(v) and len(f)]
    if not parts:
        raise MeshFormatError("no triangles")
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    vertices = np.concatenate([v for v, _ in parts])
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets, strict=True)])
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshFormatError("face indices outside the vertex list")
    return trimesh.Trimesh(vertices, faces, process=False)
