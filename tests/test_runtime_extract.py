"""The built-in engine's extraction (numpy only) against the PyTorch backend's (torch + scikit-image)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from shapes import SHAPES, logits, sphere

from backend.errors import Cancelled, EmptySurfaceError, OccNetError
from backend.extract import extract_mesh as torch_extract_mesh
from backend.metrics import iou, mesh_contains
from backend.runtime.extract import ExtractOptions, extract_mesh
from backend.runtime.marching import marching_cubes

ROOT = Path(__file__).resolve().parents[1]
UNIFORM = np.random.default_rng(0).uniform(-0.55, 0.55, size=(100_000, 3))


def lattice(p: torch.Tensor) -> torch.Tensor:
    """A gyroid-like lattice inside a ball: many cells with ambiguous faces, many handles."""
    x, y, z = (12 * p).unbind(-1)
    gyroid = torch.sin(x) * torch.cos(y) + torch.sin(y) * torch.cos(z) + torch.sin(z) * torch.cos(x)
    return torch.maximum(gyroid.abs() - 0.4, (p.norm(dim=-1) - 0.45) * 10) / 10


FIELDS = {**SHAPES, "lattice": lattice}


def numpy_field(sdf):
    """The same field as the torch backend sees, as the runtime's callable: float32 points in, logits out."""
    field = logits(sdf)
    return lambda points: field(torch.from_numpy(points)).numpy()


def _check_closed(mesh) -> trimesh.Trimesh:
    shape = mesh.to_trimesh()
    assert shape.is_watertight and shape.is_winding_consistent
    assert shape.volume > 0  # triangles face outwards
    return shape


@pytest.mark.parametrize("name, resolution", [(name, 128) for name in sorted(SHAPES)] + [("lattice", 64)])
def test_both_engines_give_the_same_closed_mesh(name, resolution):
    """At 128 (the lattice at 64: at 128 it has 200,000 faces, seconds of work for this comparison)."""
    sdf = FIELDS[name]
    options = ExtractOptions(resolution=resolution, normals=False)
    reference, reference_stats = torch_extract_mesh(logits(sdf), options)
    mesh, stats = extract_mesh(numpy_field(sdf), options)
    assert stats.points_evaluated == reference_stats.points_evaluated  # the one MISE: the same grid
    inside, expected = (mesh_contains(m.vertices, m.faces, UNIFORM) for m in (mesh, reference))
    assert iou(inside, expected) >= 0.99
    _check_closed(mesh)
    _check_closed(reference)
    # Vertices on the same level set: both put them at the linear zero on the same grid edges (Lewiner adds a
    # vertex inside the few cells where it opens a tunnel between two sheets).
    assert cKDTree(reference.vertices).query(mesh.vertices)[0].max() < 1e-5
    assert (cKDTree(mesh.vertices).query(reference.vertices)[0] > 1e-5).sum() <= 0.001 * len(reference.vertices)
    assert abs(len(mesh.faces) - len(reference.faces)) <= 0.005 * len(reference.faces)  # tunnels again


def test_normals_match_the_gradient_normals_of_the_torch_backend():
    reference, _ = torch_extract_mesh(logits(SHAPES["torus"]), ExtractOptions(resolution=64))
    mesh, _ = extract_mesh(numpy_field(SHAPES["torus"]), ExtractOptions(resolution=64))
    match = cKDTree(reference.vertices).query(mesh.vertices)[1]
    cosine = (mesh.normals * reference.normals[match]).sum(axis=1)
    assert cosine.min() > 0.99 and np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_corner_case_closes(seed):
    """Each of the 256 corner patterns in one cell, with random values (so both answers of each ambiguous face
    occur across seeds), surrounded by outside: a closed surface, triangles facing out."""
    rng = np.random.default_rng(seed)
    for config in range(1, 256):
        cell = rng.uniform(0.1, 1.0, 8) * np.where([config >> k & 1 for k in range(8)], 1, -1)
        grid = np.full((4, 4, 4), -1.0)
        grid[1:3, 1:3, 1:3] = cell.reshape(2, 2, 2, order="F")  # corner k at (k & 1, k >> 1 & 1, k >> 2 & 1)
        vertices, faces = marching_cubes(grid, 0.0)
        shape = trimesh.Trimesh(vertices, faces, process=False)
        assert shape.is_watertight and shape.is_winding_consistent and shape.volume > 0, config


def test_random_noise_gives_a_closed_surface_like_scikit_image():
    from skimage.measure import marching_cubes as skimage_marching_cubes

    noise = np.pad(np.random.default_rng(3).normal(size=(24, 24, 24)), 1, constant_values=-10.0)
    vertices, faces = marching_cubes(noise, 0.0)
    shape = trimesh.Trimesh(vertices, faces, process=False)
    assert shape.is_watertight and shape.is_winding_consistent
    expected = skimage_marching_cubes(noise, 0.0, gradient_direction="ascent")
    assert shape.volume == pytest.approx(trimesh.Trimesh(*expected[:2], process=False).volume, rel=0.01)


def test_progress_reports_stages_in_order_and_reaches_one():
    seen = []
    extract_mesh(numpy_field(sphere), ExtractOptions(resolution=128), progress=lambda s, f: seen.append((s, f)))
    assert list(dict.fromkeys(s for s, _ in seen)) == ["evaluate", "mesh", "normals"]
    for stage in ("evaluate", "normals"):
        fractions = [f for s, f in seen if s == stage]
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_cancel_stops_between_batches():
    calls = []

    def field(points):
        calls.append(len(points))
        return numpy_field(sphere)(points)

    with pytest.raises(Cancelled):
        extract_mesh(field, ExtractOptions(resolution=256, use_mise=False), cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3 and max(calls) <= 32_768


def test_clear_errors_for_no_surface_and_torch_only_options():
    with pytest.raises(EmptySurfaceError, match="lower threshold"):
        extract_mesh(lambda p: np.full(len(p), -5.0, np.float32), ExtractOptions(resolution=32))
    for options in (ExtractOptions(faces=1000), ExtractOptions(refine_steps=5)):
        with pytest.raises(OccNetError, match="PyTorch backend"):
            extract_mesh(numpy_field(sphere), options)


def test_surface_touching_the_box_is_closed():
    cube = lambda p: -100.0 * (np.abs(p).max(axis=-1) - 0.6)  # noqa: E731  (a cube larger than the box)
    mesh, _ = extract_mesh(cube, ExtractOptions(resolution=32, normals=False))
    _check_closed(mesh)


def test_mesh_goes_back_to_a_far_source_frame_in_float64():
    mesh, _ = extract_mesh(numpy_field(sphere), ExtractOptions(resolution=32, normals=False))
    placed = mesh.transformed(np.array([5.4e6, -3.1e5, 12.0]), 2.5)
    assert placed.vertices.dtype == np.float64
    np.testing.assert_allclose((placed.vertices - [5.4e6, -3.1e5, 12.0]) / 2.5, mesh.vertices, atol=1e-9)


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "scipy", "skimage", "PIL", "trimesh"}:
            raise ImportError(f"{name} is blocked: the built-in engine must not import it")
sys.meta_path.insert(0, Block())
"""


def test_runtime_and_input_normalisation_import_without_torch_scipy_skimage_pil_trimesh():
    script = (
        BLOCKER
        + """
import numpy as np
from backend.inputs.image import prepare_image
from backend.inputs.pointcloud import normalize_points
from backend.runtime.extract import ExtractOptions, extract_mesh

points, frame, dropped = normalize_points(np.random.default_rng(0).normal(size=(5000, 3)) + 7.0, 3000, thin=True)
image = prepare_image(np.zeros((300, 200, 4), np.uint8) + 255, 64, 1.0, 0.5, 0.5)
field = lambda p: 100.0 * (0.3 - np.linalg.norm(p, axis=1))
mesh, stats = extract_mesh(field, ExtractOptions(resolution=64))
placed = mesh.transformed(frame.as_array(), frame.scale)
print(len(points), image.shape, len(mesh.faces), placed.vertices.dtype, sorted(stats.seconds))
"""
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 0.9 * 3000 <= int(result.stdout.split(" ", 1)[0]) <= 3000
    assert "(3, 64, 64)" in result.stdout and "float64" in result.stdout
    assert "['evaluate', 'mesh', 'normals']" in result.stdout
