"""Point clouds as text: one point a line (.xyz, .txt, .pts, .csv), with an optional header naming the columns.

Columns are split by whitespace, commas or semicolons (the first data line decides; with semicolons a comma is the
decimal mark). The first line with content may be a preamble: a .pts point count, or a header naming the columns
(`X Y Z R G B`, CloudCompare's `//X,Y,Z,R,G,B`, `x;y;z;red;green;blue`). In a .pts or .csv any first line that is
not three numbers is a preamble; in an .xyz or .txt only a line of names followed by a line of numbers.

Which columns are what: a header's names say (x, y, z; r, g, b or red, green, blue or Rf, Gf, Bf; nx, ny, nz or
normal_x ...); without names x y z are the first three, and colour follows them (in a .pts with seven columns, after
an intensity: x y z i r g b), unless the three columns after x y z are unit vectors in every row: those are normals,
and colour may follow them (x y z nx ny nz r g b). Colour numbers are read by `rgb.from_values` (all within [0, 1]:
fractions; else 0-255; else 0-65535; anything else is not colour and is left out).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import rgb
from .observation import PointCloudInput

AXES = ("x", "y", "z")
NAMES = {  # header names (lower case), per meaning
    "x": {"x", "//x"},
    "y": {"y"},
    "z": {"z"},
    "r": {"r", "red", "rf", "diffuse_red", "color_red", "colour_red", "color_r", "colour_r"},
    "g": {"g", "green", "gf", "diffuse_green", "color_green", "colour_green", "color_g", "colour_g"},
    "b": {"b", "blue", "bf", "diffuse_blue", "color_blue", "colour_blue", "color_b", "colour_b"},
    "nx": {"nx", "normal_x", "normalx", "n_x"},
    "ny": {"ny", "normal_y", "normaly", "n_y"},
    "nz": {"nz", "normal_z", "normalz", "n_z"},
}
PREAMBLE_SUFFIXES = (".pts", ".csv")  # any first line that is not three numbers is a preamble


@dataclass(frozen=True)
class Layout:
    """How the file's lines are written: what splits columns, whether ',' is the decimal mark, how many lines
    np.loadtxt skips (through the preamble: it counts comments and blanks too), the header's names, and how many
    columns the first data line has."""

    delimiter: str | None
    decimal_comma: bool
    skip: int
    names: list[str] | None
    columns: int


def read_text_cloud(path: Path) -> PointCloudInput:
    """The points (float64, as written), with the normals and colour the columns hold, if any."""
    layout = _layout(path)
    named = _named_columns(layout.names) if layout.names else None
    xyz = [named[axis] for axis in AXES] if named else [0, 1, 2]
    usecols = sorted(set(named.values())) if named else list(range(_width(path, layout)))
    data = None
    if len(usecols) > 3:
        try:
            data = _load(path, layout, usecols)
        except ValueError:  # a later line without the extra columns: the points alone, if every line has them
            data = None
    if data is None:
        usecols = sorted(set(xyz))
        try:
            data = _load(path, layout, usecols)
        except ValueError as exc:
            raise InputError(_short_line(path, layout) or f"{path}: {exc}") from exc
    if data.size == 0:
        raise InputError(f"{path}: the file holds no points.")
    column = {index: i for i, index in enumerate(usecols)}
    points = np.ascontiguousarray(data[:, [column[index] for index in xyz]])
    if named:
        groups = [[column.get(named.get(key, -1)) for key in keys] for keys in (("nx", "ny", "nz"), "rgb")]
        normals, colors = (data[:, group] if None not in group else None for group in groups)
        return PointCloudInput(points, normals, None if colors is None else rgb.from_values(colors))
    extra = data[:, 3:]
    if path.suffix.lower() == ".pts" and extra.shape[1] == 4:  # Leica: x y z intensity r g b
        return PointCloudInput(points, None, rgb.from_values(extra[:, 1:]))
    if extra.shape[1] < 3:
        return PointCloudInput(points)
    if not rgb.looks_like_normals(extra[:, :3]):
        return PointCloudInput(points, None, rgb.from_values(extra[:, :3]))
    colors = rgb.from_values(extra[:, 3:6]) if extra.shape[1] >= 6 else None
    return PointCloudInput(points, np.ascontiguousarray(extra[:, :3]), colors)


def _load(path: Path, layout: Layout, usecols: list[int]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty file is reported by the caller, in words
        options = dict(delimiter=layout.delimiter, comments="#", ndmin=2, usecols=usecols, skiprows=layout.skip)
        if not layout.decimal_comma:
            return np.loadtxt(path, encoding="utf-8-sig", **options)
        with path.open(encoding="utf-8-sig", errors="replace") as lines:
            return np.loadtxt((line.replace(",", ".") for line in lines), **options)


def _content_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line with content, comments (#) cut off."""
    with path.open(encoding="utf-8-sig", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if text:
                yield number, text


def _delimiter(text: str) -> tuple[str | None, bool]:
    """What splits a data line's columns, and whether ',' is its decimal mark (only with ';')."""
    if ";" in text:
        return ";", "," in text
    return ("," if "," in text else None), False


def _fields(text: str, delimiter: str | None, decimal_comma: bool = False) -> list[str]:
    if decimal_comma:
        text = text.replace(",", ".")
    fields = [f.strip() for f in text.split(delimiter)] if delimiter else text.split()
    return fields[:-1] if fields and not fields[-1] else fields  # a line that ends with its delimiter


def _layout(path: Path) -> Layout:
    """Read from the first two lines with content: the first may be a preamble, the data starts at the next."""
    lines = _content_lines(path)
    head = [line for _, line in zip(range(2), lines, strict=False)]
    lines.close()
    if not head:
        return Layout(None, False, 0, None, 3)
    number, text = head[0]
    delimiter, decimal_comma = _delimiter(text)
    fields = _fields(text, delimiter, decimal_comma)
    if _leading_numbers(fields) == 3:
        return Layout(delimiter, decimal_comma, 0, None, len(fields))
    second = head[1] if len(head) > 1 else None
    if second is None:
        return Layout(delimiter, decimal_comma, 0, None, len(fields))
    data_delimiter, data_comma = _delimiter(second[1])
    data_fields = _fields(second[1], data_delimiter, data_comma)
    names = _names(text.removeprefix("//"), data_delimiter)
    is_header = names is not None and _leading_numbers(data_fields) == 3
    if not is_header and path.suffix.lower() not in PREAMBLE_SUFFIXES:
        return Layout(delimiter, decimal_comma, 0, None, len(fields))
    return Layout(data_delimiter, data_comma, number, names, len(data_fields))


def _names(text: str, delimiter: str | None) -> list[str] | None:
    """A header's column names (lower case, unquoted), or None when the line is not one: three names or more,
    none of them a number."""
    names = [name.strip().strip("\"'").strip().lower() for name in _fields(text, delimiter)]
    if len(names) < 3 or any(_leading_numbers([name]) for name in names):
        return None
    return names


def _named_columns(names: list[str]) -> dict[str, int]:
    """The columns a header names: x, y, z (the first three where it does not name them), and nx, ny, nz and
    r, g, b where it names all three of each."""
    found = {}
    for key, accepted in NAMES.items():
        index = next((i for i, name in enumerate(names) if name in accepted), None)
        if index is not None:
            found[key] = index
    wanted = {axis: found.get(axis, i) for i, axis in enumerate(AXES)}
    for group in (("nx", "ny", "nz"), ("r", "g", "b")):
        if all(key in found for key in group):
            wanted.update({key: found[key] for key in group})
    return wanted


def _width(path: Path, layout: Layout) -> int:
    """How many leading columns to read from a file without names: x y z, and up to six more that may be
    normals and colour (x y z nx ny nz r g b), or a .pts's x y z intensity r g b."""
    if path.suffix.lower() == ".pts" and layout.columns == 7:
        return 7
    return min(layout.columns, 9) if layout.columns >= 6 else 3


def _short_line(path: Path, layout: Layout) -> str | None:
    """The first line (past the preamble) that does not start with three numbers, as a message; None if none."""
    for number, text in _content_lines(path):
        fields = _fields(text, layout.delimiter, layout.decimal_comma)
        if number <= layout.skip or _leading_numbers(fields) == 3:
            continue
        if _leading_numbers(fields) < len(fields):
            return f"{path}: line {number} ('{' '.join(fields)[:40]}') does not start with three numbers (x y z)."
        return (
            f"{path}: line {number} holds {len(fields)} number{'s' * (len(fields) != 1)}; every line needs "
            "x y z (further columns are ignored)."
        )
    return None


def _leading_numbers(fields: list[str]) -> int:
    """How many of a line's first three fields are numbers, counted from the first."""
    for count, field in enumerate(fields[:3]):
        try:
            float(field)
        except ValueError:
            return count
    return min(len(fields), 3)
