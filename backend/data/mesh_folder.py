"""The user's own meshes as a training set, in the same layout as the procedural data.

Any format trimesh reads; each mesh is normalised like the paper (bounding-box centre, longest side 1)
and labelled inside/outside by the generalized winding number, which tolerates meshes that are not
watertight. Results are cached per mesh, so a second run only processes new files.
"""

from __future__ import annotations

import hashlib
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


def split_of(name: str) -> str:
    """A stable split from the file name, so adding meshes never moves existing ones between splits."""
    fraction = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edge = 0.0
    for split, share in SPLITS:
        edge += share
        if fraction <= edge:
            return split
    return SPLITS[-1][0]


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
    for path in tqdm(files, desc="meshes", unit="mesh"):
        category = path.parent.relative_to(src).as_posix().replace("/", "_") if path.parent != src else "default"
        name = path.stem
        try:
            prepare_mesh(path, dst / category / name, n_uniform, n_near, n_surface, seed)
        except InputError as exc:
            failed.append(f"{path}: {exc}")
            continue
        lists.setdefault((category, split_of(f"{category}/{name}")), []).append(name)
    for (category, split), names in lists.items():
        (dst / category / f"{split}.lst").write_text("\n".join(sorted(names)) + "\n")
    for message in failed:
        print(f"skipped {message}")
    return dst


def inside(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Exact ray parity for closed meshes; the winding number, on a decimated copy, for meshes with holes."""
    if mesh.is_watertight:
        return mesh_contains(mesh.vertices, mesh.faces, points)
    if len(mesh.faces) > WINDING_FACES:
        mesh = mesh.simplify_quadric_decimation(face_count=WINDING_FACES)
    return winding_number(mesh.vertices, mesh.faces, points) > 0.5


def prepare_mesh(path: Path, folder: Path, n_uniform: int, n_near: int, n_surface: int, seed: int) -> None:
    if (folder / "done").exists():
        return
    loaded = trimesh.load(str(path), force="mesh", process=False)
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise InputError("holds no triangles")
    low, high = loaded.bounds
    scale = float((high - low).max())
    if scale <= 0:
        raise InputError("is degenerate (zero size)")
    vertices = (loaded.vertices - (low + high) / 2) / scale
    mesh = trimesh.Trimesh(vertices, loaded.faces, process=False)
    rng = np.random.default_rng(seed)
    surface, face_index = trimesh.sample.sample_surface(mesh, n_surface, seed=seed)
    normals = mesh.face_normals[face_index]
    near = surface[rng.integers(0, len(surface), n_near)] + rng.normal(scale=0.02, size=(n_near, 3))
    points = np.concatenate([rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, (n_uniform, 3)), near]).astype(np.float32)
    centres = voxel_centres(32)
    labels, voxels = np.split(inside(mesh, np.concatenate([points, centres])), [len(points)])
    folder.mkdir(parents=True, exist_ok=True)
    save_npz(
        folder / "points.npz",
        points=points.astype(np.float16),
        occupancies=np.packbits(labels),
        n_uniform=np.int64(n_uniform),
        loc=((low + high) / 2).astype(np.float32),
        scale=np.float32(scale),
    )
    save_npz(folder / "pointcloud.npz", points=surface.astype(np.float16), normals=normals.astype(np.float16))
    save_npz(folder / "voxels.npz", occupancies=np.packbits(voxels), resolution=np.int64(32))
    (folder / "done").touch()
