import numpy as np
import pytest
import torch
from shapes import SHAPES, logits, occupancy, sphere

from backend.errors import Cancelled, EmptySurfaceError
from backend.extract import ExtractOptions, extract_mesh
from backend.metrics import iou, mesh_contains

RNG = np.random.default_rng(0)
UNIFORM = RNG.uniform(-0.55, 0.55, size=(100_000, 3))


def _iou_with_shape(mesh, sdf) -> float:
    return iou(mesh_contains(mesh.vertices, mesh.faces, UNIFORM), occupancy(sdf, UNIFORM))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_mise_mesh_is_accurate_closed_and_matches_dense(name):
    sdf = SHAPES[name]
    mise, mise_stats = extract_mesh(logits(sdf), ExtractOptions(resolution=128, normals=False))
    dense, dense_stats = extract_mesh(logits(sdf), ExtractOptions(resolution=128, normals=False, use_mise=False))

    assert _iou_with_shape(mise, sdf) > 0.99
    assert mise.to_trimesh().is_watertight
    assert mise.to_trimesh().volume > 0, "triangles must face outwards"
    assert mise.faces.shape == dense.faces.shape
    np.testing.assert_allclose(mise.vertices, dense.vertices, atol=1e-5)
    assert mise_stats.points_evaluated < 0.25 * dense_stats.points_evaluated
    assert dense_stats.points_evaluated == 129**3


def test_two_disjoint_parts_stay_two_components():
    mesh, _ = extract_mesh(logits(SHAPES["two_spheres"]), ExtractOptions(resolution=64, normals=False))
    assert len(mesh.to_trimesh().split(only_watertight=True)) == 2


def test_threshold_is_a_probability_compared_in_logit_space():
    # logit = -100 * (|p| - 0.35); p = 0.9 is reached at |p| = 0.35 - log(9)/100.
    mesh, _ = extract_mesh(logits(sphere), ExtractOptions(resolution=64, threshold=0.9, normals=False))
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radius.mean() - (0.35 - np.log(9) / 100)) < 2e-3


def test_normals_are_unit_and_point_outwards():
    mesh, _ = extract_mesh(logits(sphere), ExtractOptions(resolution=64))
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-4)
    assert (mesh.normals * radial).sum(1).min() > 0.99


def _face_point_error(mesh) -> float:
    """Mean distance to the true sphere of points spread over the faces (what refinement minimises)."""
    points, _ = mesh.to_trimesh().sample(20_000, return_index=True, seed=0)
    return float(np.abs(np.linalg.norm(points, axis=1) - 0.35).mean())


def test_refinement_moves_a_coarse_mesh_onto_the_surface():
    options = ExtractOptions(resolution=32, threshold=0.5, normals=False)
    coarse, _ = extract_mesh(logits(sphere), options)
    options.refine_steps = 30
    refined, stats = extract_mesh(logits(sphere), options)
    assert _face_point_error(refined) < 0.8 * _face_point_error(coarse)
    assert "refine" in stats.seconds


def test_face_budget_is_respected():
    mesh, _ = extract_mesh(logits(sphere), ExtractOptions(resolution=128, faces=2000, normals=False))
    assert 1000 < len(mesh.faces) <= 2000
    assert _iou_with_shape(mesh, sphere) > 0.97


def test_resolution_512_works_and_stays_sparse():
    _, stats = extract_mesh(logits(sphere), ExtractOptions(resolution=512, normals=False))
    assert stats.points_evaluated < 0.02 * 513**3


def test_progress_reports_stages_in_order_and_reaches_one():
    seen = []
    extract_mesh(logits(sphere), ExtractOptions(resolution=128), progress=lambda s, f: seen.append((s, f)))
    stages = list(dict.fromkeys(s for s, _ in seen))
    assert stages == ["evaluate", "mesh", "normals"]
    evaluate = [f for s, f in seen if s == "evaluate"]
    assert evaluate == sorted(evaluate) and evaluate[-1] == pytest.approx(1.0)


def test_cancel_stops_between_batches():
    calls = []

    def field(p):
        calls.append(len(p))
        return logits(sphere)(p)

    with pytest.raises(Cancelled):
        extract_mesh(field, ExtractOptions(resolution=256, use_mise=False), cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3


def test_field_that_never_crosses_gives_a_clear_error():
    with pytest.raises(EmptySurfaceError, match="lower threshold"):
        extract_mesh(lambda p: torch.full(p.shape[:1], -5.0), ExtractOptions(resolution=32))


def test_surface_touching_the_box_is_closed():
    big = lambda p: -100.0 * (p.abs().max(dim=-1).values - 0.6)  # noqa: E731  (a cube larger than the box)
    mesh, _ = extract_mesh(big, ExtractOptions(resolution=32, normals=False))
    assert mesh.to_trimesh().is_watertight
