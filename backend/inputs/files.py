"""Reading an observation from a file, chosen by its extension."""

from __future__ import annotations

import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ..errors import InputError
from ..formats import (
    ARRAY_SUFFIXES,
    IMAGE_SUFFIXES,
    LATENT_MARKER,
    MESH_SUFFIXES,
    SUPPORTED,
    TEXT_CLOUD_SUFFIXES,
    read_ply_header,
)
from .image import MAX_IMAGE_SIDE
from .observation import ImageInput, Observation, PointCloudInput, VoxelInput

SURFACE_SAMPLES = 100_000
PLY_HEADER_BYTES = 1 << 16  # a PLY header longer than this is not one
PLURAL = {"vertex": "vertices", "face": "faces"}


def load_observation(path: str | Path) -> Observation:
    path = Path(path)
    try:
        path.resolve(strict=path.is_symlink())
    except (OSError, RuntimeError):
        raise InputError(f"{path}: a link that leads nowhere (or a loop of links). Give the file itself.") from None
    if not path.exists():
        raise InputError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give one file (the batch tools expand folders).")
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            return ImageInput(_read_image(path))
        if suffix in TEXT_CLOUD_SUFFIXES:
            return PointCloudInput(_read_text_cloud(path))
        if suffix in MESH_SUFFIXES:
            return PointCloudInput(*_read_mesh_points(path))
        if suffix in ARRAY_SUFFIXES:
            return _read_array(path)
    except InputError:
        raise
    except (OSError, ValueError, IndexError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(_unreadable(path, exc)) from exc
    raise InputError(f"{path}: unsupported file type '{suffix or path.name}'. Supported: {', '.join(SUPPORTED)}.")


def _unreadable(path: Path, exc: BaseException) -> str:
    return (
        f"{path}: could not be read as a '{path.suffix.lower()}' file ({str(exc) or type(exc).__name__}). "
        "It may be damaged or cut short; export or download it again."
    )


def _read_image(path: Path) -> np.ndarray:
    """The pixels, at most MAX_IMAGE_SIDE on a side: shrunk while decoding (JPEG) or right after, never as floats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # large images are shrunk below
        try:
            image = Image.open(path)
            image.draft(image.mode, (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        except Image.DecompressionBombError as exc:
            raise InputError(
                f"{path}: the image has more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} million pixels, too many "
                f"to read. Scale it down first; {MAX_IMAGE_SIDE} pixels on the long side is plenty."
            ) from exc
        with image:
            if image.mode == "P":
                image = image.convert("RGBA")
            image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
            if image.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(image).astype(np.uint16)
            if image.mode in ("I", "F"):
                data = np.asarray(image).astype(np.float64)
                return (data / max(float(data.max()), 1.0)).astype(np.float32)
            if image.mode not in ("L", "LA", "RGB", "RGBA", "1"):
                image = image.convert("RGBA" if "A" in image.mode else "RGB")
            return np.asarray(image)


def _read_text_cloud(path: Path) -> np.ndarray:
    """x y z per line, further columns ignored; a .pts may start with its point count, a .csv with a header."""
    delimiter = "," if path.suffix.lower() == ".csv" else None
    skip = _preamble_lines(path, delimiter) if path.suffix.lower() in (".pts", ".csv") else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty file is reported below, in words
        try:
            data = np.loadtxt(path, delimiter=delimiter, comments="#", ndmin=2, usecols=(0, 1, 2), skiprows=skip)
        except ValueError:
            try:
                data = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, usecols=(0, 1, 2), skiprows=skip)
            except ValueError as exc:
                raise InputError(_short_line(path, skip) or _unreadable(path, exc)) from exc
    if data.size == 0:
        raise InputError(f"{path}: the file holds no points.")
    return data


def _short_line(path: Path, skip: int) -> str | None:
    """The first line (past the preamble) that does not start with three numbers, as a message; None if none."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split("#", 1)[0].replace(",", " ").split()
            if number <= skip or not fields or _leading_numbers(fields) == 3:
                continue
            if _leading_numbers(fields) < len(fields):
                text = " ".join(fields)[:40]
                return f"{path}: line {number} ('{text}') does not start with three numbers (x y z)."
            return (
                f"{path}: line {number} holds {len(fields)} number{'s' * (len(fields) != 1)}; every line needs "
                "x y z (further columns are ignored)."
            )
    return None


def _preamble_lines(path: Path, delimiter: str | None) -> int:
    """The lines np.loadtxt skips (its skiprows counts comments and blanks): up to and including the first line
    with content when that is not three numbers (a .pts count, a .csv header), else none."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split("#", 1)[0].split(delimiter)
            if "".join(fields).strip():
                return 0 if _leading_numbers(fields) == 3 else number
    return 0


def _leading_numbers(fields: list[str]) -> int:
    """How many of a line's first three fields are numbers, counted from the first."""
    for count, field in enumerate(fields[:3]):
        try:
            float(field)
        except ValueError:
            return count
    return min(len(fields), 3)


def _read_mesh_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Surface samples of a mesh with faces, with their faces' normals; the vertices themselves of a point cloud
    or a scan without faces, with the normals a PLY stores (nx, ny, nz), if any."""
    declared = _ply_counts(path) if path.suffix.lower() == ".ply" else {}
    try:
        loaded = trimesh.load(str(path), process=False)
    except Exception as exc:  # a damaged file can fail anywhere in trimesh's parsers, with any exception type
        raise InputError(_unreadable(path, exc)) from exc
    parts = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    _check_whole(path, parts, declared)
    surfaces = [g for g in parts if isinstance(g, trimesh.Trimesh) and len(g.faces) and g.area > 0]
    if surfaces:
        surface = trimesh.util.concatenate(surfaces)
        points, faces = trimesh.sample.sample_surface(surface, SURFACE_SAMPLES, seed=0)
        normals = _trusted_face_normals(surface)
        return points, None if normals is None else normals[faces]
    clouds = [g for g in parts if len(getattr(g, "vertices", ()))]
    if not clouds:
        raise InputError(f"{path}: the file holds no vertices.")
    normals = [_ply_normals(g) for g in clouds]
    given = None if any(n is None for n in normals) else np.concatenate(normals)
    return np.concatenate([np.asarray(g.vertices) for g in clouds]), given


def _ply_counts(path: Path) -> dict[str, int]:
    """The element counts a PLY header declares (vertex, face), read before the body: a file that is not a PLY
    is refused at once, however large."""
    with path.open("rb") as file:
        head = file.read(PLY_HEADER_BYTES)
    header = read_ply_header(head)
    if header is None and head.startswith(b"ply") and len(head) < PLY_HEADER_BYTES:
        raise InputError(_unreadable(path, ValueError("the file ends inside its header")))
    if header is None:
        raise InputError(
            f"{path}: not a PLY file (no PLY header at its start). Export it again as PLY, or give it the extension "
            "of its real format."
        )
    return {name: count for name, (count, _) in header.elements.items()}


def _check_whole(path: Path, parts: list, declared: dict[str, int]) -> None:
    """Refuse a file cut short inside its lists: fewer vertices or faces than its PLY header declares, or an OBJ
    whose last vertex line lost its coordinates. (An OBJ cut exactly between two lines cannot be told from a
    whole one: OBJ declares no counts.)"""
    read = {
        "vertex": sum(len(getattr(g, "vertices", ())) for g in parts),
        "face": sum(len(getattr(g, "faces", ())) for g in parts),
    }
    for element, count in read.items():
        if element in declared and count < declared[element]:
            raise InputError(
                f"{path}: the file is cut short: its header declares {declared[element]:,} {PLURAL[element]}, it "
                f"holds {count:,}. Export or copy it again."
            )
    if path.suffix.lower() == ".obj":
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 256))
            last = file.read().rstrip().rsplit(b"\n", 1)[-1].split()
        if last[:1] == [b"v"] and len(last) < 4:
            raise InputError(f"{path}: the file is cut short inside its vertex list. Export or copy it again.")


def _trusted_face_normals(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """The faces' outward normals, or None when they cannot be trusted: a model given wrong normals is misled,
    and a file's faces can be wound at random. Trusted when every shared edge is walked both ways once the
    vertices are merged; a closed mesh of negative volume is inside out, and is turned."""
    merged = mesh.copy()
    merged.merge_vertices()
    if not merged.is_winding_consistent:
        return None
    normals = np.asarray(mesh.face_normals)
    return -normals if merged.is_watertight and merged.volume < 0 else normals


def _ply_normals(cloud: trimesh.PointCloud | trimesh.Trimesh) -> np.ndarray | None:
    """The per-vertex normals a PLY file stores (trimesh keeps its raw vertex properties), else None."""
    vertex = cloud.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    if not isinstance(vertex, dict) or not {"nx", "ny", "nz"} <= set(vertex):
        return None
    normals = np.concatenate([np.asarray(vertex[k], dtype=np.float64).reshape(-1, 1) for k in ("nx", "ny", "nz")], 1)
    return normals if len(normals) == len(cloud.vertices) else None


def _read_array(path: Path) -> Observation:
    """A point cloud (with an archive's 'normals' of the same length, if any) or a voxel grid."""
    normals = None
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if LATENT_MARKER in archive.files:
                raise InputError(
                    f"{path}: a saved latent (a shape already reconstructed), not a point cloud. Blend it with "
                    f"'python -m backend interpolate {path.name} OTHER', or in Python: "
                    "model.extract(Latent.load(path))."
                )
            key = "points" if "points" in archive.files else (archive.files[0] if archive.files else None)
            if key is None:
                raise InputError(f"{path}: the archive is empty.")
            data = archive[key]
            if "normals" in archive.files and archive["normals"].shape == (len(data), 3):
                normals = archive["normals"]
    else:
        data = np.load(path, allow_pickle=False)
    if data.ndim == 3 and data.shape[0] == data.shape[1] == data.shape[2]:
        return VoxelInput(data)
    if data.ndim == 2 and data.shape[1] >= 3:
        return PointCloudInput(data, normals)
    raise InputError(
        f"{path}: an array of shape {data.shape} is neither a point cloud (N, 3) nor a cubic voxel grid (R, R, R)."
    )
