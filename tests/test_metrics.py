import numpy as np
import pytest
import trimesh

from backend.evaluate import surface_metrics
from backend.mesh import Mesh
from backend.metrics import iou, mesh_contains

RNG = np.random.default_rng(0)


def _sphere_samples(radius: float, count: int = 100_000):
    d = RNG.normal(size=(count, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * radius, d


def test_identical_meshes_have_iou_one_and_chamfer_zero():
    mesh = Mesh(*(lambda m: (m.vertices, m.faces))(trimesh.creation.torus(0.3, 0.1)))
    points = RNG.uniform(-0.55, 0.55, (50_000, 3))
    assert iou(mesh_contains(mesh.vertices, mesh.faces, points), mesh_contains(mesh.vertices, mesh.faces, points)) == 1
    tm = mesh.to_trimesh()
    samples, faces = tm.sample(100_000, return_index=True, seed=0)
    scores = surface_metrics(mesh, samples, tm.face_normals[faces], seed=0)
    assert scores["chamfer_l1"] == 0.0 and scores["fscore"] == 1.0
    assert scores["normal_consistency"] == pytest.approx(1.0)


@pytest.mark.parametrize("gap, fscore", [(0.005, 1.0), (0.02, 0.0)])
def test_sphere_against_a_larger_sphere(gap, fscore):
    ball = trimesh.creation.icosphere(subdivisions=6, radius=0.4)
    gt_points, gt_normals = _sphere_samples(0.4 + gap)
    scores = surface_metrics(Mesh(ball.vertices, ball.faces), gt_points, gt_normals)
    # every point is `gap` from the other surface, plus the ~1e-3 spacing of 100k samples
    assert scores["chamfer_l1"] == pytest.approx(gap, abs=1e-3)
    assert scores["fscore"] == pytest.approx(fscore, abs=1e-3)
    assert scores["normal_consistency"] > 0.999


def test_iou_of_known_overlap():
    a = np.zeros(100, bool)
    b = np.zeros(100, bool)
    a[:50], b[25:75] = True, True
    assert iou(a, b) == pytest.approx(25 / 75)
