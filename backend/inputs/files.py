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
    SCANNER_SUFFIXES,
    SUPPORTED,
    TEXT_CLOUD_SUFFIXES,
    read_ply_header,
)
from . import rgb
from .image import MAX_IMAGE_SIDE
from .observation import ImageInput, Observation, PointCloudInput, VoxelInput
from .pcd import read_pcd
from .scanners import read_e57, read_las
from .text_cloud import read_text_cloud

SURFACE_SAMPLES = 100_000
PLY_HEADER_BYTES = 1 << 16  # a PLY header longer than this is not one
PLURAL = {"vertex": "vertices", "face": "faces"}
SCANNER_READERS = {".las": read_las, ".laz": read_las, ".e57": read_e57, ".pcd": read_pcd}
PLY_COLORS = (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue"), ("r", "g", "b"))


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
            return read_text_cloud(path)
        if suffix in MESH_SUFFIXES:
            return PointCloudInput(*_read_mesh_points(path))
        if suffix in SCANNER_SUFFIXES:
            return SCANNER_READERS[suffix](path)
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


def _read_mesh_points(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Surface samples of a mesh with faces, with their faces' normals and the colour at each sample (vertex
    colours interpolated, face colours, or the texture at the sample's UV); the vertices themselves of a point
    cloud or a scan without faces, with the normals (nx, ny, nz) and colour (red, green, blue) a PLY stores. Colour
    is given only where every part of the file has it."""
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
        points, faces, barycentric = trimesh.sample.sample_surface(
            surface, SURFACE_SAMPLES, seed=0, return_barycentric=True
        )
        normals = _trusted_face_normals(surface)
        colors = _surface_colors(surfaces, faces, barycentric)
        return points, None if normals is None else normals[faces], colors
    clouds = [g for g in parts if len(getattr(g, "vertices", ()))]
    if not clouds:
        raise InputError(f"{path}: the file holds no vertices.")
    normals = [_ply_columns(g, ("nx", "ny", "nz")) for g in clouds]
    colors = [_vertex_colors(g) for g in clouds]
    return (
        np.concatenate([np.asarray(g.vertices) for g in clouds]),
        None if any(n is None for n in normals) else np.concatenate(normals).astype(np.float64),
        None if any(c is None for c in colors) else np.concatenate(colors),
    )


def _surface_colors(surfaces: list[trimesh.Trimesh], faces: np.ndarray, barycentric: np.ndarray) -> np.ndarray | None:
    """The colour at each sample (`faces` index the parts' faces one part after another), or None unless every
    part is coloured."""
    starts = np.cumsum([0] + [len(part.faces) for part in surfaces])
    owner = np.searchsorted(starts, faces, side="right") - 1
    colors = np.empty((len(faces), 3), np.float32)
    for number, part in enumerate(surfaces):
        chosen = np.flatnonzero(owner == number)
        if not len(chosen):
            continue
        local = faces[chosen] - starts[number]
        part_colors = _part_colors(part, local, barycentric[chosen])
        if part_colors is None:
            return None
        colors[chosen] = part_colors
    return colors


def _part_colors(part: trimesh.Trimesh, faces: np.ndarray, barycentric: np.ndarray) -> np.ndarray | None:
    """A mesh's colour at points given by their face and barycentric position, as float32 RGB in [0, 1]."""
    visual = part.visual
    vertex_colors = _vertex_colors(part)
    if vertex_colors is not None:
        return np.einsum("nk,nkc->nc", barycentric, vertex_colors[part.faces[faces]]).astype(np.float32)
    if getattr(visual, "kind", None) == "face":
        return (np.asarray(visual.face_colors)[faces, :3] / 255.0).astype(np.float32)
    uv = getattr(visual, "uv", None)
    material = getattr(visual, "material", None)
    image = getattr(material, "image", None)
    if image is None:  # glTF: the PBR material's base colour texture
        image = getattr(material, "baseColorTexture", None)
    if getattr(visual, "kind", None) == "texture" and uv is not None and image is not None and len(uv):
        at = np.einsum("nk,nkc->nc", barycentric, np.asarray(uv, np.float64)[part.faces[faces]])
        return (trimesh.visual.color.uv_to_interpolated_color(at, image)[:, :3] / 255.0).astype(np.float32)
    return None


def _vertex_colors(geometry: trimesh.PointCloud | trimesh.Trimesh) -> np.ndarray | None:
    """Per-vertex colour: a PLY's own fields at their stored precision (8-bit, 16-bit or float), else the colour
    trimesh read (8-bit: OBJ, glTF), else None."""
    for names in PLY_COLORS:
        if (stored := _ply_columns(geometry, names)) is not None:
            return rgb.from_stored(stored)
    if isinstance(geometry, trimesh.PointCloud):
        colors = np.asarray(geometry.colors)
    elif getattr(geometry.visual, "kind", None) == "vertex":
        colors = np.asarray(geometry.visual.vertex_colors)
    else:
        return None
    if colors.ndim != 2 or colors.shape[0] != len(geometry.vertices) or colors.shape[1] < 3:
        return None
    return (colors[:, :3] / 255.0).astype(np.float32)


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


def _ply_columns(geometry: trimesh.PointCloud | trimesh.Trimesh, names: tuple[str, ...]) -> np.ndarray | None:
    """Vertex properties a PLY file stores, as (N, len(names)) in their stored type (trimesh keeps its raw vertex
    data: a dict of arrays from text files, a structured array from binary ones), else None."""
    vertex = geometry.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
    present = (
        set(vertex) if isinstance(vertex, dict) else set(getattr(getattr(vertex, "dtype", None), "names", None) or ())
    )
    if not set(names) <= present:
        return None
    columns = np.stack([np.asarray(vertex[name]).reshape(-1) for name in names], axis=1)
    return columns if len(columns) == len(geometry.vertices) else None


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
