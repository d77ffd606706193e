"""The user's own meshes as a training set, in the same layout as the procedural data.

Any format trimesh reads; each mesh is normalised like the paper (bounding-box centre, longest side 1)
and labelled inside/outside by exact ray parity when closed, else by the generalized winding number,
which tolerates meshes that are not watertight (libigl's fast version when the `data` extra is
installed). Results are cached per mesh, so a second run only processes new files.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from tqdm import tqdm

from ..config import BOX_SIZE
from ..errors import InputError
from ..formats import MESH_SUFFIXES
from ..metrics import mesh_contains, winding_number
from .procedural import save_npz
from .samplers import voxel_centres

SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
WINDING_FACES = 20_000  # the winding number costs points x faces; labels barely change below this


def split_of(name: str, shares: tuple[tuple[str, float], ...] = SPLITS) -> str:
    """A stable split from the name (a file's, or a whole group's), so adding meshes never moves existing ones."""
    fraction = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for split, share in shares:
        edge += share
        if fraction <= edge:
            return split
    return shares[-1][0]


def prepare_mesh_folder(
    src: str | Path,
    dst: str | Path,
    n_uniform: int = 50_000,
    n_near: int = 50_000,
    n_surface: int = 100_000,
    seed: int = 0,
) -> Path:
    """Preprocess every mesh under src; sub-folders become categories ('default' for loose files)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputError(f"{src}: no such folder of meshes.")
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise InputError(f"{src}: no mesh files ({', '.join(sorted(MESH_SUFFIXES))}) found.")
    lists: dict[tuple[str, str], list[str]] = {}
    failed = []
    for path, (category, name) in tqdm(output_names(src, files).items(), desc="meshes", unit="mesh"):
        try:
            prepare_mesh(path, dst / category / name, n_uniform, n_near, n_surface, seed)
        except InputError as exc:
            failed.append(f"{path}: {exc}")
            continue
        lists.setdefault((category, split_of(f"{category}/{name}")), []).append(name)
    for (category, split), names in lists.items():
        (dst / category / f"{split}.lst").write_text("\n".join(sorted(names)) + "\n")
    if failed:
        print(f"skipped {len(failed)} of {len(files)} meshes:")
        for message in failed:
            print(f"  {message}")
    if len(failed) == len(files):
        raise InputError(f"{src}: none of the {len(files)} mesh files could be used (reasons above).")
    return dst


def output_names(src: Path, files: list[Path]) -> dict[Path, tuple[str, str]]:
    """Category and shape name of each file: sub-folder and stem, or stem_suffix where files of one category share
    a stem (chair.obj, chair.stl), so that no two files ever write to one folder (compared case-blind, as some
    file systems do)."""
    categories = {
        path: path.parent.relative_to(src).as_posix().replace("/", "_") if path.parent != src else "default"
        for path in files
    }
    stems: dict[tuple[str, str], int] = {}
    for path in files:
        key = (categories[path].casefold(), path.stem.casefold())
        stems[key] = stems.get(key, 0) + 1
    used: set[tuple[str, str]] = set()
    names = {}
    for path in files:
        category = categories[path]
        name = (
            path.stem if stems[(category.casefold(), path.stem.casefold())] == 1 else f"{path.stem}_{path.suffix[1:]}"
        )
        base, copy = name, 1
        while (category.casefold(), name.casefold()) in used:
            copy += 1
            name = f"{base}_{copy}"
        used.add((category.casefold(), name.casefold()))
        names[path] = (category, name)
    return names


def winding(mesh: trimesh.Trimesh, points: np.ndarray, max_faces: int = WINDING_FACES) -> np.ndarray:
    """Generalized winding number at each point: libigl's fast hierarchical version on the full mesh when it
    is installed (the `data` extra), else the exact sum over a copy decimated to `max_faces`."""
    points = np.asarray(points, np.float64)
    igl = _igl()
    if igl is not None:
        return igl.fast_winding_number(
            np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64), np.ascontiguousarray(points)
        )
    if len(mesh.faces) > max_faces:
        mesh = mesh.simplify_quadric_decimation(face_count=max_faces)
    return winding_number(mesh.vertices, mesh.faces, points)


def inside(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Exact ray parity for closed meshes; the winding number, on a decimated copy, for meshes with holes."""
    if mesh.is_watertight:
        return mesh_contains(mesh.vertices, mesh.faces, points)
    return np.abs(winding(mesh, points)) > 0.5


@dataclass
class Samples:
    """Everything stored for one mesh, plus what the labels say about their own trustworthiness."""

    points: np.ndarray  # (n_uniform + n_near, 3), the uniform box points first
    labels: np.ndarray  # bool, per point
    n_uniform: int
    surface: np.ndarray
    normals: np.ndarray
    voxels: np.ndarray  # bool, the 32^3 voxel centres
    watertight: bool
    inside_fraction: float  # of the uniform box points
    ambiguous_fraction: float | None  # uniform points with |winding| in AMBIGUOUS (None: winding not computed)
    overlap: bool = False  # closed, but overlapping shells: labelled by the winding number, not parity


AMBIGUOUS = (0.3, 0.7)


def load_normalized(path: Path) -> tuple[trimesh.Trimesh, np.ndarray, float]:
    """All parts of the file as one mesh, centred on its bounding box with the longest side 1; and that loc/scale."""
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh's many readers raise anything on a malformed file; name it, go on
        raise InputError(f"cannot be read as a mesh ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError("holds no triangles")
    low, high = loaded.bounds
    scale = float((high - low).max())
    if not np.isfinite(scale) or scale <= 0:
        raise InputError("is degenerate (zero size)")
    mesh = trimesh.Trimesh((loaded.vertices - (low + high) / 2) / scale, loaded.faces, process=False)
    mesh.merge_vertices()  # split normals/UVs (OBJ) and per-face vertices (STL) otherwise hide a closed surface
    return mesh, (low + high) / 2, scale


def sample_mesh(
    mesh: trimesh.Trimesh,
    n_uniform: int,
    n_near: int,
    n_surface: int,
    seed: int,
    max_faces: int = WINDING_FACES,
) -> Samples:
    """Labelled box and near-surface points, surface samples and voxels of a normalised mesh.

    Closed meshes are labelled by exact ray parity; where libigl is there the winding number is checked as well,
    and wins where the two disagree (overlapping closed shells, which parity counts as outside). Surface samples
    that lie inside the object (faces of one part buried in another) are dropped when the winding number is cheap.
    """
    rng = np.random.default_rng(seed)
    cheap = _igl() is not None
    surface, face_index = trimesh.sample.sample_surface(mesh, n_surface * (2 if cheap else 1), seed=seed)
    normals = mesh.face_normals[face_index]
    buried = _buried_share(mesh, surface[:BURIED_PROBE]) if cheap else 0.0  # on-surface points cost most: probe
    if buried > 0.002:
        candidates = min(len(surface), int(n_surface / max(0.05, 1 - buried) * 1.1) + 100)
        keep = np.flatnonzero(np.abs(winding(mesh, surface[:candidates])) < BURIED)
        if len(keep) < n_surface // 4:
            keep = np.arange(n_surface)
        keep = keep[:n_surface] if len(keep) >= n_surface else rng.choice(keep, n_surface)
        surface, normals = surface[keep], normals[keep]
    else:
        surface, normals = surface[:n_surface], normals[:n_surface]
    near = surface[rng.integers(0, len(surface), n_near)] + rng.normal(scale=0.02, size=(n_near, 3))
    points = np.concatenate([rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, (n_uniform, 3)), near])
    queries = np.concatenate([points, voxel_centres(32)])
    watertight, overlap, w = bool(mesh.is_watertight), False, None
    if watertight:
        labels = mesh_contains(mesh.vertices, mesh.faces, queries)
        if cheap:  # on some box points first: those near the surface cost more
            probe = min(n_uniform, OVERLAP_PROBE)
            w = winding(mesh, queries[:probe], max_faces)
            overlap = bool(((np.abs(w) > 0.5) != labels[:probe]).mean() > 0.005)
            if overlap:
                w = winding(mesh, queries, max_faces)
                labels = np.abs(w) > 0.5
    else:
        w = winding(mesh, queries, max_faces)
        labels = np.abs(w) > 0.5
    ambiguous = None
    if w is not None:
        a = np.abs(w[: min(n_uniform, len(w))])
        ambiguous = float(((a > AMBIGUOUS[0]) & (a < AMBIGUOUS[1])).mean())
    return Samples(
        points=points.astype(np.float32),
        labels=labels[: len(points)],
        n_uniform=n_uniform,
        surface=surface,
        normals=normals,
        voxels=labels[len(points) :],
        watertight=watertight,
        inside_fraction=float(labels[:n_uniform].mean()),
        ambiguous_fraction=ambiguous,
        overlap=overlap,
    )


def _buried_share(mesh: trimesh.Trimesh, surface: np.ndarray) -> float:
    return float((np.abs(winding(mesh, surface)) >= BURIED).mean())


BURIED_PROBE = 2_000
OVERLAP_PROBE = 10_000
BURIED = 0.85  # |winding| of a surface sample that lies inside the object (0.5 on the outer surface)
MIN_FACES = 50
MIN_INSIDE, MAX_INSIDE = 0.003, 0.9  # of the uniform box points
MAX_AMBIGUOUS = 0.02


def label_problem(samples: Samples) -> str | None:
    """Why the labels of a mesh are not believable (None when they are): almost nothing or almost everything
    inside (a sheet, a plane, a mesh turned inside out), or a winding number that hovers between in and out
    (open surfaces with no volume)."""
    if samples.inside_fraction < MIN_INSIDE:
        return "no volume inside"
    if samples.inside_fraction > MAX_INSIDE:
        return "box nearly all inside"
    if not samples.watertight and samples.ambiguous_fraction is not None and samples.ambiguous_fraction > MAX_AMBIGUOUS:
        return "ambiguous winding"
    return None


def write_samples(folder: Path, samples: Samples, loc: np.ndarray, scale: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(
        folder / "points.npz",
        points=samples.points.astype(np.float16),
        occupancies=np.packbits(samples.labels),
        n_uniform=np.int64(samples.n_uniform),
        loc=np.asarray(loc, np.float32),
        scale=np.float32(scale),
    )
    save_npz(
        folder / "pointcloud.npz",
        points=samples.surface.astype(np.float16),
        normals=samples.normals.astype(np.float16),
    )
    save_npz(folder / "voxels.npz", occupancies=np.packbits(samples.voxels), resolution=np.int64(32))
    (folder / "done").touch()


def prepare_mesh(path: Path, folder: Path, n_uniform: int, n_near: int, n_surface: int, seed: int) -> None:
    if (folder / "done").exists():
        return
    mesh, loc, scale = load_normalized(path)
    samples = sample_mesh(mesh, n_uniform, n_near, n_surface, seed)
    if problem := label_problem(samples):  # a sheet or a lone triangle would teach the model nothing but noise
        raise InputError(f"its inside and outside cannot be told ({problem}, {samples.inside_fraction:.1%} inside)")
    write_samples(folder, samples, loc, scale)


def fast_winding_available() -> bool:
    return _igl() is not None


@functools.cache
def _igl():
    try:
        import igl
    except ImportError:
        return None
    return igl
