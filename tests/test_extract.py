"""The one extraction pipeline (backend.surface.pipeline) on each engine's evaluator and stages: numpy (the
built-in runtime's) and PyTorch's; and the two against each other."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from shapes import SHAPES, logits, occupancy, sphere

from backend.engines.base import InputScan
from backend.engines.torch_stages import TorchEvaluator, TorchStages
from backend.errors import Cancelled, EmptySurfaceError, OccNetError
from backend.metrics import iou, mesh_contains
from backend.surface.field import Evaluator
from backend.surface.marching import marching_cubes
from backend.surface.options import ExtractOptions, OptionsError
from backend.surface.pipeline import Stages, extract_mesh
from backend.surface.snap import SPARSE

ROOT = Path(__file__).resolve().parents[1]
UNIFORM = np.random.default_rng(0).uniform(-0.55, 0.55, size=(100_000, 3))
ENGINES = ("runtime", "torch")


def lattice(p: torch.Tensor) -> torch.Tensor:
    """A gyroid-like lattice inside a ball: many cells with ambiguous faces, many handles."""
    x, y, z = (12 * p).unbind(-1)
    gyroid = torch.sin(x) * torch.cos(y) + torch.sin(y) * torch.cos(z) + torch.sin(z) * torch.cos(x)
    return torch.maximum(gyroid.abs() - 0.4, (p.norm(dim=-1) - 0.45) * 10) / 10


FIELDS = {**SHAPES, "lattice": lattice}


def extract(engine, field, options, progress=None, cancel=None, scan=None):
    """`field` (torch points -> torch logits) through the pipeline as `engine` runs it: the runtime's numpy
    evaluator and stages, or PyTorch's."""
    if engine == "torch":
        evaluate, stages = TorchEvaluator(field, torch.device("cpu"), 32_768, progress, cancel), TorchStages()
    else:
        numpy_field = lambda p: field(torch.from_numpy(p)).numpy()  # noqa: E731
        evaluate, stages = Evaluator(numpy_field, 32_768, progress, cancel), Stages()
    return extract_mesh(evaluate, options, 0.5, stages=stages, progress=progress, scan=scan)


def _iou_with_shape(mesh, sdf) -> float:
    return iou(mesh_contains(mesh.vertices, mesh.faces, UNIFORM), occupancy(sdf, UNIFORM))


def _check_closed(mesh) -> trimesh.Trimesh:
    shape = mesh.to_trimesh()
    assert shape.is_watertight and shape.is_winding_consistent
    assert shape.volume > 0  # triangles face outwards
    return shape


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_mise_mesh_is_accurate_closed_and_matches_dense(engine, name):
    sdf = SHAPES[name]
    mise, mise_stats = extract(engine, logits(sdf), ExtractOptions(normals=False))
    dense, dense_stats = extract(engine, logits(sdf), ExtractOptions(normals=False, use_mise=False))
    assert _iou_with_shape(mise, sdf) > 0.99
    _check_closed(mise)
    assert mise.faces.shape == dense.faces.shape
    np.testing.assert_allclose(mise.vertices, dense.vertices, atol=1e-5)
    assert mise_stats.points_evaluated < 0.25 * dense_stats.points_evaluated
    assert dense_stats.points_evaluated == 129**3


ROD_AXIS = 0.0171875  # half-way between the points of the 16 and 32 grids (and on the 64 grid's)


def thin_rod(p: torch.Tensor) -> torch.Tensor:
    """A rod 0.016 thick along X that no point of the coarse grids falls in."""
    radial = torch.sqrt((p[..., 1] - ROD_AXIS) ** 2 + (p[..., 2] - ROD_AXIS) ** 2) - 0.008
    return torch.maximum(radial, p[..., 0].abs() - 0.4)


@pytest.mark.parametrize("engine", ENGINES)
def test_seeds_find_a_part_thinner_than_the_coarse_cells_where_it_was_seen(engine):
    along = np.linspace(-0.38, 0.38, 100, dtype=np.float32)
    seeds = np.stack([along, np.full_like(along, ROD_AXIS + 0.008), np.full_like(along, ROD_AXIS)], axis=1)
    with pytest.raises(EmptySurfaceError):  # unseeded, MISE never looks between the coarse grid's points
        extract(engine, logits(thin_rod), ExtractOptions(normals=False))
    mesh, _ = extract(engine, logits(thin_rod), ExtractOptions(normals=False), scan=InputScan(seeds, SPARSE))
    assert mesh.vertices[:, 0].min() < -0.39 and mesh.vertices[:, 0].max() > 0.39
    _check_closed(mesh)


@pytest.mark.parametrize("engine", ENGINES)
def test_seeded_search_gives_the_dense_grids_mesh_from_fewer_evaluations(engine):
    seeds = trimesh.creation.icosphere(subdivisions=3, radius=0.35).vertices.astype(np.float32)
    scan = InputScan(seeds, SPARSE)  # too sparse to move vertices: only the search is seeded
    seeded, seeded_stats = extract(engine, logits(sphere), ExtractOptions(normals=False), scan=scan)
    dense, _ = extract(engine, logits(sphere), ExtractOptions(normals=False, use_mise=False))
    _, unseeded_stats = extract(engine, logits(sphere), ExtractOptions(normals=False))
    assert seeded.faces.shape == dense.faces.shape
    np.testing.assert_allclose(seeded.vertices, dense.vertices, atol=1e-5)
    assert seeded_stats.points_evaluated < 0.9 * unseeded_stats.points_evaluated


def _half_sphere_scan(radius: float, count: int = 20_000) -> np.ndarray:
    """Points on the upper half of a sphere (a scan from above)."""
    directions = np.random.default_rng(0).normal(size=(count, 3))
    directions[:, 2] = np.abs(directions[:, 2])
    return (radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("engine", ENGINES)
def test_vertices_move_onto_a_dense_scan_near_it_and_stay_elsewhere(engine):
    """The field's sphere (radius 0.33) is smaller than the scanned one (0.35): where the scan is, the mesh goes
    onto it; under it, where nothing was seen, the field's surface stays; a sparse scan moves nothing, nor does
    any scan with snap=False."""
    options = ExtractOptions(resolution=64, normals=False)
    field = logits(lambda p: sphere(p, radius=0.33))
    dense, _ = extract(engine, field, options, scan=InputScan(_half_sphere_scan(0.35), unit=0.02))
    sparse, _ = extract(engine, field, options, scan=InputScan(_half_sphere_scan(0.35), unit=SPARSE))
    off = ExtractOptions(resolution=64, normals=False, snap=False)
    kept, _ = extract(engine, field, off, scan=InputScan(_half_sphere_scan(0.35), unit=0.02))
    radius = np.linalg.norm(dense.vertices, axis=1)
    top, bottom = dense.vertices[:, 2] > 0.1, dense.vertices[:, 2] < -0.1
    assert np.median(radius[top]) > 0.342  # over half the way at 0.02 away (REACH is 3 spacings of 0.02)
    assert abs(np.median(radius[bottom]) - 0.33) < 0.002
    for unmoved in (sparse, kept):  # too sparse to trust, or snapping turned off
        assert abs(np.median(np.linalg.norm(unmoved.vertices, axis=1)) - 0.33) < 0.002
    _check_closed(dense)


@pytest.mark.parametrize("engine", ENGINES)
def test_two_disjoint_parts_stay_two_components(engine):
    mesh, _ = extract(engine, logits(SHAPES["two_spheres"]), ExtractOptions(resolution=64, normals=False))
    assert len(mesh.to_trimesh().split(only_watertight=True)) == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_threshold_is_a_probability_compared_in_logit_space(engine):
    # logit = -100 * (|p| - 0.35); p = 0.9 is reached at |p| = 0.35 - log(9)/100.
    mesh, _ = extract(engine, logits(sphere), ExtractOptions(resolution=64, threshold=0.9, normals=False))
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radius.mean() - (0.35 - np.log(9) / 100)) < 2e-3


def test_threshold_none_is_the_models_own():
    evaluate = Evaluator(lambda p: -100.0 * (np.linalg.norm(p, axis=1) - 0.35))
    mesh, _ = extract_mesh(evaluate, ExtractOptions(resolution=64, normals=False), model_threshold=0.9)
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - (0.35 - np.log(9) / 100)) < 2e-3


@pytest.mark.parametrize("engine", ENGINES)
def test_normals_are_unit_and_point_outwards(engine):
    mesh, _ = extract(engine, logits(sphere), ExtractOptions(resolution=64))
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-4)
    assert (mesh.normals * radial).sum(1).min() > 0.99


@pytest.mark.parametrize("engine", ENGINES)
def test_progress_reports_stages_in_order_and_reaches_one(engine):
    seen = []
    extract(engine, logits(sphere), ExtractOptions(), progress=lambda s, f: seen.append((s, f)))
    assert list(dict.fromkeys(s for s, _ in seen)) == ["evaluate", "mesh", "normals"]
    fractions = [f for s, f in seen if s == "evaluate"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_cancel_stops_between_batches(engine):
    calls = []

    def field(points):
        calls.append(len(points))
        return logits(sphere)(points)

    with pytest.raises(Cancelled):
        extract(engine, field, ExtractOptions(resolution=256, use_mise=False), cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3 and max(calls) <= 32_768


@pytest.mark.parametrize("engine", ENGINES)
def test_field_that_never_crosses_gives_a_clear_error(engine):
    with pytest.raises(EmptySurfaceError, match="lower threshold"):
        extract(engine, lambda p: torch.full(p.shape[:1], -5.0), ExtractOptions(resolution=32))


@pytest.mark.parametrize("engine", ENGINES)
def test_surface_touching_the_box_is_closed(engine):
    big = lambda p: -100.0 * (p.abs().max(dim=-1).values - 0.6)  # noqa: E731  (a cube larger than the box)
    mesh, _ = extract(engine, big, ExtractOptions(resolution=32, normals=False))
    _check_closed(mesh)


def test_resolution_512_works_and_stays_sparse():
    _, stats = extract("runtime", logits(sphere), ExtractOptions(resolution=512, normals=False))
    assert stats.points_evaluated < 0.02 * 513**3


def _face_point_error(mesh) -> float:
    """Mean distance to the true sphere of points spread over the faces (what refinement minimises)."""
    points, _ = mesh.to_trimesh().sample(20_000, return_index=True, seed=0)
    return float(np.abs(np.linalg.norm(points, axis=1) - 0.35).mean())


def test_refinement_moves_a_coarse_mesh_onto_the_surface():
    coarse, _ = extract("torch", logits(sphere), ExtractOptions(resolution=32, normals=False))
    refined, _ = extract("torch", logits(sphere), ExtractOptions(resolution=32, normals=False, refine_steps=30))
    assert _face_point_error(refined) < 0.8 * _face_point_error(coarse)


def test_face_budget_is_respected():
    mesh, _ = extract("torch", logits(sphere), ExtractOptions(faces=2000, normals=False))
    assert 1000 < len(mesh.faces) <= 2000
    assert _iou_with_shape(mesh, sphere) > 0.97


def test_what_only_pytorch_does_is_refused_before_any_work_elsewhere():
    calls = []

    def field(points):
        calls.append(len(points))
        return logits(sphere)(points)

    for options in (ExtractOptions(faces=1000), ExtractOptions(refine_steps=5)):
        with pytest.raises(OccNetError, match="PyTorch backend"):
            extract("runtime", field, options)
    assert calls == []


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"resolution": 100}, "Resolution 100"),
        ({"threshold": 1.0}, "strictly between 0 and 1"),
        ({"min_piece": 2.0}, "small-piece share"),
        ({"faces": 2}, "too small"),
        ({"refine_steps": -1}, "cannot be negative"),
    ],
)
def test_bad_options_are_refused_when_made_with_the_fix(settings, words):
    with pytest.raises(OptionsError, match=words):
        ExtractOptions(**settings)


@pytest.mark.parametrize("name, resolution", [(name, 128) for name in sorted(SHAPES)] + [("lattice", 64)])
def test_both_engines_give_the_same_closed_mesh(name, resolution):
    """At 128 (the lattice at 64: at 128 it has 200,000 faces, seconds of work for this comparison)."""
    options = ExtractOptions(resolution=resolution, normals=False)
    reference, reference_stats = extract("torch", logits(FIELDS[name]), options)
    mesh, stats = extract("runtime", logits(FIELDS[name]), options)
    assert stats.points_evaluated == reference_stats.points_evaluated  # the one MISE: the same grid
    inside, expected = (mesh_contains(m.vertices, m.faces, UNIFORM) for m in (mesh, reference))
    assert iou(inside, expected) >= 0.99
    _check_closed(mesh)
    _check_closed(reference)
    np.testing.assert_array_equal(mesh.faces, reference.faces)  # one pipeline, one marching cubes
    np.testing.assert_allclose(mesh.vertices, reference.vertices, atol=1e-5)


def test_finite_difference_normals_match_the_gradient_normals():
    reference, _ = extract("torch", logits(SHAPES["torus"]), ExtractOptions(resolution=64))
    mesh, _ = extract("runtime", logits(SHAPES["torus"]), ExtractOptions(resolution=64))
    cosine = (mesh.normals * reference.normals).sum(axis=1)
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


def test_mesh_goes_back_to_a_far_source_frame_in_float64():
    mesh, _ = extract("runtime", logits(sphere), ExtractOptions(resolution=32, normals=False))
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


def test_runtime_engine_and_input_normalisation_import_without_torch_scipy_skimage_pil_trimesh():
    script = (
        BLOCKER
        + """
import numpy as np
import backend.engines.onnx_runtime, backend.serve, backend.protocol
from backend.inputs.image import prepare_image
from backend.inputs.pointcloud import normalize_points
from backend.surface.field import Evaluator
from backend.surface.options import ExtractOptions
from backend.surface.pipeline import extract_mesh

points, frame, dropped = normalize_points(np.random.default_rng(0).normal(size=(5000, 3)) + 7.0, 3000, thin=True)
photo = np.full((300, 200, 4), 255, np.uint8)
photo[100:200, 50:150, :3] = 0  # a black square on white: the border rule masks it
image, _ = prepare_image(photo, 64, 1.0, 0.5, 0.5)
field = lambda p: 100.0 * (0.3 - np.linalg.norm(p, axis=1))
mesh, stats = extract_mesh(Evaluator(field), ExtractOptions(resolution=64), 0.5)
placed = mesh.transformed(frame.as_array(), frame.scale)
print(len(points), image.shape, len(mesh.faces), placed.vertices.dtype, sorted(stats.seconds))
"""
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 0.9 * 3000 <= int(result.stdout.split(" ", 1)[0]) <= 3000
    assert "(3, 64, 64)" in result.stdout and "float64" in result.stdout
    assert "['evaluate', 'mesh', 'normals']" in result.stdout
