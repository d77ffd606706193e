"""PCL's point cloud files (.pcd, format 0.7 and older): ascii, binary and binary_compressed (LZF), in numpy alone.

Written here rather than taken from a package: pypcd4, the kept reader on PyPI, needs pydantic and python-neo-lzf,
and the latter has no wheel for every platform the extension zips target (none for Windows on ARM), where this
reader runs as it is. LZF decoding is short and done in pure Python: about half a second for a million points.

Points are returned as stored: the header's VIEWPOINT is the sensor's pose at acquisition, which PCL keeps beside
the cloud and does not apply on loading, so neither is it applied here. Points without coordinates (NaN, the
placeholders of an organised cloud, HEIGHT > 1) are dropped, with their normals and colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rgb
from .observation import PointCloudInput

HEADER_BYTES = 1 << 16  # a PCD header longer than this is not one
TYPES = {"F": "f", "I": "i", "U": "u"}
NORMALS = ("normal_x", "normal_y", "normal_z")
CHANNELS = (("r", "g", "b"), ("red", "green", "blue"))


@dataclass(frozen=True)
class PcdHeader:
    fields: list[str]
    dtypes: list[np.dtype]
    counts: list[int]
    points: int
    data: str  # ascii, binary or binary_compressed
    length: int  # bytes, up to and including the DATA line

    @property
    def record(self) -> np.dtype:
        """One point's bytes in a binary file; repeated names ('_' padding) are told apart by their place."""
        names = [f"{i}:{name}" for i, name in enumerate(self.fields)]
        shapes = [(count,) if count > 1 else () for count in self.counts]
        return np.dtype([(n, t, s) for n, t, s in zip(names, self.dtypes, shapes, strict=True)])


def read_pcd(path: Path) -> PointCloudInput:
    """x y z (float64), normal_x ... when stored, colour from a packed `rgb`/`rgba` word or r g b fields.
    A damaged file raises ValueError saying what is wrong (the caller words it)."""
    with path.open("rb") as file:
        raw = file.read()
    header = parse_header(raw[:HEADER_BYTES])
    body = memoryview(raw)[header.length :]
    if header.data == "ascii":
        columns = _ascii_columns(header, bytes(body))
    elif header.data == "binary":
        columns = _binary_columns(header, body)
    elif header.data == "binary_compressed":
        columns = _compressed_columns(header, body)
    else:
        raise ValueError(f"unknown DATA '{header.data}' (ascii, binary or binary_compressed)")
    if not {"x", "y", "z"} <= set(columns):
        raise ValueError(f"no x y z fields (it has {' '.join(header.fields)})")
    points = np.stack([columns[axis].astype(np.float64) for axis in "xyz"], axis=1)
    normals = (
        np.stack([columns[k] for k in NORMALS], axis=1).astype(np.float64) if set(NORMALS) <= set(columns) else None
    )
    colors = _colors(columns)
    keep = np.isfinite(points).all(axis=1)
    if not keep.all():
        points = points[keep]
        normals = None if normals is None else normals[keep]
        colors = None if colors is None else colors[keep]
    return PointCloudInput(points, normals, colors)


def parse_header(head: bytes) -> PcdHeader:
    """The header at the start of a file: FIELDS, SIZE, TYPE, COUNT, WIDTH, HEIGHT, POINTS, DATA."""
    entries: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = head.find(b"\n", offset)
        if end < 0:
            raise ValueError("no DATA line: not a PCD header, or cut short inside it")
        words = head[offset:end].decode("ascii", "replace").split()
        offset = end + 1
        if not words or words[0].startswith("#"):
            continue
        entries[words[0].upper()] = words[1:]
        if words[0].upper() == "DATA":
            break
    fields = entries.get("FIELDS") or entries.get("COLUMNS")  # COLUMNS: format 0.5
    if not fields:
        raise ValueError("no FIELDS line in the header")
    sizes = entries.get("SIZE", ["4"] * len(fields))
    types = entries.get("TYPE", ["F"] * len(fields))
    counts = entries.get("COUNT", ["1"] * len(fields))
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise ValueError("FIELDS, SIZE, TYPE and COUNT do not list the same number of fields")
    try:
        dtypes = [np.dtype(f"<{TYPES[t.upper()]}{int(s)}") for t, s in zip(types, sizes, strict=True)]
        counts_ = [int(c) for c in counts]
        width, height = int(entries.get("WIDTH", ["0"])[0]), int(entries.get("HEIGHT", ["1"])[0])
        points = int(entries["POINTS"][0]) if "POINTS" in entries else width * height
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"a header line is not what PCD allows ({exc})") from exc
    data = (entries["DATA"] or [""])[0].lower()
    if points < 0 or min(counts_) < 1:
        raise ValueError("a negative point count or a field COUNT below 1")
    return PcdHeader(fields, dtypes, counts_, points, data, offset)


def _ascii_columns(header: PcdHeader, body: bytes) -> dict[str, np.ndarray]:
    lines = [line for line in body.decode("ascii", "replace").splitlines() if line.strip()]
    if len(lines) < header.points:
        raise ValueError(f"the file is cut short: it declares {header.points:,} points and holds {len(lines):,}")
    width = sum(header.counts)
    values = np.loadtxt(lines[: header.points], ndmin=2) if header.points else np.zeros((0, width))
    if values.shape[1] < width:
        raise ValueError(f"a line holds {values.shape[1]} values where the FIELDS need {width}")
    columns, start = {}, 0
    for name, dtype, count in zip(header.fields, header.dtypes, header.counts, strict=True):
        if count == 1 and name not in columns:
            columns[name] = values[:, start]
            if name in ("rgb", "rgba"):  # the word's bits, written as a float (PCL) or as an integer
                columns[name] = columns[name].astype(np.float32 if dtype.kind == "f" else np.uint32)
        start += count
    return columns


def _binary_columns(header: PcdHeader, body: memoryview) -> dict[str, np.ndarray]:
    record = header.record
    need = header.points * record.itemsize
    if len(body) < need:
        raise ValueError(f"the file is cut short: {header.points:,} points need {need:,} bytes, it holds {len(body):,}")
    table = np.frombuffer(body[:need], dtype=record)
    return _single(header, {name: table[key] for name, key in zip(header.fields, record.names, strict=True)})


def _compressed_columns(header: PcdHeader, body: memoryview) -> dict[str, np.ndarray]:
    """binary_compressed: two uint32 (compressed and raw sizes), then LZF data; once decompressed, each field's
    values for every point, one field after another."""
    if len(body) < 8:
        raise ValueError("the file is cut short before its compressed data")
    packed, size = (int(n) for n in np.frombuffer(body[:8], dtype="<u4"))
    if len(body) - 8 < packed:
        raise ValueError(f"the file is cut short: {packed:,} compressed bytes declared, {len(body) - 8:,} held")
    record = header.record
    if size != header.points * record.itemsize:
        raise ValueError(f"{size:,} bytes once decompressed, where {header.points:,} points need more or fewer")
    raw = lzf_decompress(body[8 : 8 + packed], size)
    columns, start = {}, 0
    for name, key in zip(header.fields, record.names, strict=True):
        field = record.fields[key][0]
        length = header.points * field.itemsize
        columns.setdefault(name, np.frombuffer(raw, dtype=field, count=header.points, offset=start))
        start += length
    return _single(header, columns)


def _single(header: PcdHeader, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fields of one value per point (those this reader uses), by name."""
    return {n: columns[n] for n, c in zip(header.fields, header.counts, strict=True) if c == 1 and n in columns}


def _colors(columns: dict[str, np.ndarray]) -> np.ndarray | None:
    for packed in ("rgb", "rgba"):
        if packed in columns:
            return rgb.from_packed(columns[packed])
    for names in CHANNELS:
        if set(names) <= set(columns):
            return rgb.from_stored(np.stack([columns[name] for name in names], axis=1))
    return None


def lzf_decompress(data: bytes | memoryview, size: int) -> bytes:
    """LZF (liblzf's lzf_decompress): runs of literal bytes, and back references into what was already written.
    Raises ValueError on data that does not decode to exactly `size` bytes."""
    data = bytes(data)
    out = bytearray()
    i, end_of_data = 0, len(data)
    while i < end_of_data:
        control = data[i]
        i += 1
        if control < 32:  # control + 1 literal bytes follow
            end = i + control + 1
            if end > end_of_data:
                raise ValueError("the compressed data is cut short inside a literal run")
            out += data[i:end]
            i = end
            continue
        length = control >> 5
        if length == 7:
            if i >= end_of_data:
                raise ValueError("the compressed data is cut short inside a back reference")
            length += data[i]
            i += 1
        if i >= end_of_data:
            raise ValueError("the compressed data is cut short inside a back reference")
        start = len(out) - ((control & 31) << 8) - data[i] - 1
        i += 1
        length += 2
        if start < 0:
            raise ValueError("the compressed data refers to bytes before its start")
        if start + length <= len(out):
            out += out[start : start + length]
        else:  # the copy overlaps what it writes: the same bytes repeated
            chunk = out[start:]
            out += (chunk * (length // len(chunk) + 1))[:length]
        if len(out) > size:
            break
    if len(out) != size:
        raise ValueError(f"the compressed data decodes to {len(out):,} bytes, not the {size:,} declared")
    return bytes(out)
