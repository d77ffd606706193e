"""Scanner formats read through their own packages: LiDAR's .las/.laz (laspy, with lazrs for LAZ) and terrestrial
scanners' .e57 (pye57). Each is imported when such a file comes, so the backend runs without them; a missing one is
an InputError naming the package and the fix.

Coordinates come back in the file's own frame as float64: LAS stores integers with a scale and an offset (applied
here, so georeferenced values such as 5.4e6 keep their millimetres); an E57 scan stores points in the scanner's frame
with a pose (rotation quaternion w x y z, translation), applied here, so several scans land together.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import rgb
from .observation import PointCloudInput

LAS_COLOR_FIELDS = ("red", "green", "blue")
E57_COLOR_FIELDS = ("colorRed", "colorGreen", "colorBlue")
BLENDER_HINT = "in Blender: Preferences > Add-ons > OccNet > Install Backend, whose PyTorch backend has it"


def missing_package(path: Path, package: str, what: str, other: str = ".ply") -> InputError:
    return InputError(
        f"{path}: reading {what} needs the {package} package, which is not installed: pip install {package} "
        f"({BLENDER_HINT}); or convert the file to {other} first."
    )


def _module(path: Path, name: str, what: str, other: str = ".ply"):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise missing_package(path, name, what, other) from None


def read_las(path: Path) -> PointCloudInput:
    """LAS or LAZ: x y z with the header's scale and offset applied (float64), and RGB where the point format
    has it (formats 2, 3, 5, 7, 8, 10): 16-bit per the specification, or 8-bit values in the 16-bit fields (then no
    value exceeds 255, see `rgb.from_stored`). Damage raises ValueError; a LAZ without lazrs, InputError."""
    laspy = _module(path, "laspy", ".las and .laz files")
    with path.open("rb") as file:
        try:
            reader = laspy.open(file)
        except Exception as exc:  # laspy raises its own errors, or struct's and numpy's, on a damaged header
            raise ValueError(_first_line(exc)) from exc
        with reader:
            header = reader.header
            if header.are_points_compressed and not laspy.LazBackend.detect_available():
                raise missing_package(path, "lazrs", ".laz (compressed LAS) files", ".las or .ply")
            declared = header.point_count
            if not header.are_points_compressed:  # the points' bytes are counted before they are read
                held = max(path.stat().st_size - header.offset_to_point_data, 0) // max(header.point_format.size, 1)
                _check_count(declared, held)
            try:
                las = reader.read()
            except Exception as exc:
                raise ValueError(_first_line(exc)) from exc
    _check_count(declared, len(las.points))
    points = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1).astype(np.float64)
    names = set(las.point_format.dimension_names)
    colors = None
    if set(LAS_COLOR_FIELDS) <= names:
        colors = rgb.from_stored(np.stack([np.asarray(las[name]) for name in LAS_COLOR_FIELDS], axis=1))
    return PointCloudInput(points, None, colors)


def _check_count(declared: int, held: int) -> None:
    if held < declared:
        raise ValueError(f"the file is cut short: {declared:,} points declared, {held:,} held")


def read_e57(path: Path) -> PointCloudInput:
    """Every scan of an E57 file, each moved by its pose into the file's frame (float64), without the points its
    invalid-state field marks as no return; colour (colorRed ...) scaled by the file's colour limits when every
    scan has it. Damage raises ValueError."""
    pye57 = _module(path, "pye57", ".e57 files", ".ply or .las")
    try:
        e57 = pye57.E57(str(path))
    except Exception as exc:  # libE57's E57Exception, or pye57's own (it can fail while cleaning up, NameError)
        raise ValueError(_first_line(exc)) from exc
    try:
        scans = [_e57_scan(pye57, e57, index) for index in range(len(e57.data3d))]
    except (InputError, MemoryError):
        raise
    except Exception as exc:
        raise ValueError(_first_line(exc)) from exc
    finally:
        e57.close()
    if not scans:
        raise InputError(f"{path}: the file holds no scans (no point data).")
    points = np.concatenate([scan[0] for scan in scans])
    colors = None if any(scan[1] is None for scan in scans) else np.concatenate([scan[1] for scan in scans])
    return PointCloudInput(points, None, colors)


def _e57_scan(pye57, e57, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    header = e57.get_header(index)
    fields = set(header.point_fields)
    count = header.point_count
    cartesian = {"cartesianX", "cartesianY", "cartesianZ"} <= fields
    names = ["cartesianX", "cartesianY", "cartesianZ"] if cartesian else []
    if not cartesian:
        names = ["sphericalRange", "sphericalAzimuth", "sphericalElevation"]
        if not set(names) <= fields:
            raise ValueError(f"scan {index} has neither cartesian nor spherical coordinates")
    invalid = "cartesianInvalidState" if cartesian else "sphericalInvalidState"
    colored = set(E57_COLOR_FIELDS) <= fields
    buffers = pye57.libe57.VectorSourceDestBuffer()
    data = {}
    for name in names + list(E57_COLOR_FIELDS if colored else ()) + ([invalid] if invalid in fields else []):
        # float64 for coordinates and colour (whatever width the file stores them in), int8 for the state
        data[name] = np.empty(count, np.int8 if name == invalid else np.float64)
        buffers.append(pye57.libe57.SourceDestBuffer(e57.image_file, name, data[name], count, True, True))
    if count:
        header.points.reader(buffers).read()
    keep = data[invalid] == 0 if invalid in data else np.ones(count, bool)
    values = np.stack([data[name][keep] for name in names], axis=1)
    if not cartesian:
        values = _spherical_to_cartesian(values)
    if header.has_pose():
        rotation = _quaternion_matrix(np.asarray(header.rotation, dtype=np.float64))
        values = values @ rotation.T + np.asarray(header.translation, dtype=np.float64)
    colors = None
    if colored:
        low, high = _e57_color_limits(header)
        stacked = np.stack([data[name][keep] for name in E57_COLOR_FIELDS], axis=1)
        colors = np.clip((stacked - low) / max(high - low, 1e-12), 0, 1).astype(np.float32)
    return values, colors


def _e57_color_limits(header) -> tuple[float, float]:
    """The scan's colorLimits (colorRedMinimum/Maximum), else the limits of the colorRed field's own type,
    else 0 to 255."""
    try:
        limits = header["colorLimits"]
        return float(limits["colorRedMinimum"].value()), float(limits["colorRedMaximum"].value())
    except Exception:  # not stored: a libE57 error for the missing child
        pass
    try:
        prototype = header.points.prototype()
        field = prototype.get("colorRed") if hasattr(prototype, "get") else prototype["colorRed"]
        return float(field.minimum()), float(field.maximum())
    except Exception:
        return 0.0, 255.0


def _quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """The rotation of a quaternion (w, x, y, z), normalised first."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _spherical_to_cartesian(rae: np.ndarray) -> np.ndarray:
    """E57's spherical coordinates (range, azimuth, elevation; radians) to x y z in the scan's frame."""
    r, azimuth, elevation = rae.T
    flat = r * np.cos(elevation)
    return np.stack([flat * np.cos(azimuth), flat * np.sin(azimuth), r * np.sin(elevation)], axis=1)


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."
