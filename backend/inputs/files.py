"""Reading an observation from a file, chosen by its extension."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..formats import ARRAY_SUFFIXES, IMAGE_SUFFIXES, MESH_SUFFIXES, SUPPORTED, TEXT_CLOUD_SUFFIXES
from .observation import ImageInput, Observation, PointCloudInput, VoxelInput

SURFACE_SAMPLES = 100_000


def load_observation(path: str | Path) -> Observation:
    path = Path(path)
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
            return PointCloudInput(_read_mesh_points(path))
        if suffix in ARRAY_SUFFIXES:
            return _read_array(path)
    except InputError:
        raise
    except (OSError, ValueError, IndexError, KeyError, EOFError, zipfile.BadZipFile, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: could not be read as a '{suffix}' file ({exc}).") from exc
    raise InputError(f"{path}: unsupported file type '{suffix or path.name}'. Supported: {', '.join(SUPPORTED)}.")


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        if image.mode == "P":
            image = image.convert("RGBA")
        elif image.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(image).astype(np.uint16)
        elif image.mode in ("I", "F"):
            data = np.asarray(image).astype(np.float64)
            return (data / max(float(data.max()), 1.0)).astype(np.float32)
        elif image.mode not in ("L", "LA", "RGB", "RGBA", "1"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        return np.asarray(image)


def _read_text_cloud(path: Path) -> np.ndarray:
    delimiter = "," if path.suffix.lower() == ".csv" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty file is reported below, in words
        try:
            data = np.loadtxt(path, delimiter=delimiter, comments="#", ndmin=2, usecols=(0, 1, 2))
        except ValueError:
            data = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, usecols=(0, 1, 2))
    if data.size == 0:
        raise InputError(f"{path}: the file holds no points.")
    return data


def _read_mesh_points(path: Path) -> np.ndarray:
    """Surface samples of a mesh with faces; the vertices themselves of a point cloud or a scan without faces."""
    loaded = trimesh.load(str(path), process=False)
    parts = loaded.dump() if isinstance(loaded, trimesh.Scene) else [loaded]
    surfaces = [g for g in parts if isinstance(g, trimesh.Trimesh) and len(g.faces) and g.area > 0]
    if surfaces:
        points, _ = trimesh.sample.sample_surface(trimesh.util.concatenate(surfaces), SURFACE_SAMPLES, seed=0)
        return points
    vertices = [np.asarray(g.vertices) for g in parts if len(getattr(g, "vertices", ()))]
    if not vertices:
        raise InputError(f"{path}: the file holds no vertices.")
    return np.concatenate(vertices)


def _read_array(path: Path) -> Observation:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            key = "points" if "points" in archive.files else (archive.files[0] if archive.files else None)
            if key is None:
                raise InputError(f"{path}: the archive is empty.")
            data = archive[key]
    else:
        data = np.load(path, allow_pickle=False)
    if data.ndim == 3 and data.shape[0] == data.shape[1] == data.shape[2]:
        return VoxelInput(data)
    if data.ndim == 2 and data.shape[1] >= 3:
        return PointCloudInput(data)
    raise InputError(
        f"{path}: an array of shape {data.shape} is neither a point cloud (N, 3) nor a cubic voxel grid (R, R, R)."
    )
