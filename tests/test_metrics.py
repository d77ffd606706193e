"""The paper's measures against values known from geometry: each would come out different if the measure
were computed another way (squared distances, sums instead of means, signed normals, a wrong ray parity)."""

import numpy as np
import pytest
import trimesh

from backend.evaluate import score_mesh, surface_metrics
from backend.metrics import iou, mesh_contains, solid_iou
from backend.surface.mesh import Mesh

RNG = np.random.default_rng(0)
BALL = trimesh.creation.icosphere(subdivisions=6, radius=0.4)  # its faces lie within 2e-5 of the sphere


def _sphere_samples(radius: float, count: int = 100_000):
    d = RNG.normal(size=(count, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d * radius, d


def _grid(half: float, count: int) -> np.ndarray:
    """Cell centres of a regular grid over [-half, half]^3: no sampling noise, no point on a cube's face."""
    axis = (np.arange(count) + 0.5) / count * 2 * half - half
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def _box(extents, center) -> Mesh:
    box = trimesh.creation.box(extents, trimesh.transformations.translation_matrix(center))
    return Mesh(box.vertices, box.faces)


@pytest.mark.parametrize(
    "shift, expected",
    [((0.5, 0, 0), 0.5 / 1.5), ((0.25, 0.25, 0), 0.5625 / 1.4375), ((0.5, 0.5, 0.5), 0.125 / 1.875)],
)
def test_iou_of_two_offset_unit_cubes(shift, expected):
    """Overlap of a unit cube and one shifted by `shift`: prod(1 - |shift|) over 2 - that."""
    points = _grid(1.0, 80)
    a, b = _box((1, 1, 1), (0, 0, 0)), _box((1, 1, 1), shift)
    inside_a = mesh_contains(a.vertices, a.faces, points)
    inside_b = mesh_contains(b.vertices, b.faces, points)
    assert inside_a.mean() == pytest.approx(1 / 8)  # the cube's share of the 2 x 2 x 2 grid, exactly
    assert iou(inside_a, inside_b) == pytest.approx(expected, abs=1e-9)
    sampled = solid_iou((a.vertices, a.faces), (b.vertices, b.faces), count=200_000)
    assert sampled == pytest.approx(expected, abs=0.01)  # random points in the joint box: sampling error only


def test_inside_of_a_torus_agrees_with_its_equation():
    """A ray from a point in the hole crosses the surface twice (outside), from inside the tube once or three
    times: parity must be counted over every crossing, not the first."""
    torus = trimesh.creation.torus(0.3, 0.1, major_sections=128, minor_sections=64)
    points = RNG.uniform(-0.45, 0.45, (50_000, 3))
    ring = np.hypot(points[:, 0], points[:, 1]) - 0.3
    truth = ring**2 + points[:, 2] ** 2 <= 0.1**2
    inside = mesh_contains(torus.vertices, torus.faces, points)
    assert (inside == truth).mean() > 0.998
    assert inside.mean() == pytest.approx(2 * np.pi**2 * 0.3 * 0.1**2 / 0.9**3, rel=0.03)  # the torus' volume


def test_iou_of_known_overlap_and_of_empty_sets():
    a = np.zeros(100, bool)
    b = np.zeros(100, bool)
    a[:50], b[25:75] = True, True
    assert iou(a, b) == pytest.approx(25 / 75)
    assert iou(a, np.zeros(100, bool)) == 0.0
    assert iou(np.zeros(100, bool), np.zeros(100, bool)) == 1.0  # both empty: they agree everywhere


@pytest.mark.parametrize("gap", [0.005, 0.03])
def test_chamfer_l1_between_concentric_spheres_is_the_gap(gap):
    """Every point of one sphere is |r1 - r2| from the other: the mean of accuracy and completeness (the paper's
    Chamfer-L1, plain distances) is the gap, plus the ~2.5e-3 spacing of 100k samples added in quadrature."""
    gt_points, gt_normals = _sphere_samples(0.4 + gap)
    scores = surface_metrics(Mesh(BALL.vertices, BALL.faces), gt_points, gt_normals)
    assert scores["chamfer_l1"] == pytest.approx(np.hypot(gap, 0.0025), rel=0.05)
    inner = surface_metrics(Mesh(BALL.vertices, BALL.faces), *_sphere_samples(0.4 - gap))
    assert inner["chamfer_l1"] == pytest.approx(scores["chamfer_l1"], rel=0.1)  # distances, not signed


@pytest.mark.parametrize("gap, fscore", [(0.005, 1.0), (0.02, 0.0)])
def test_fscore_at_one_percent_counts_points_within_the_threshold(gap, fscore):
    gt_points, gt_normals = _sphere_samples(0.4 + gap)
    scores = surface_metrics(Mesh(BALL.vertices, BALL.faces), gt_points, gt_normals)
    assert scores["fscore"] == pytest.approx(fscore, abs=1e-3)


def test_fscore_of_a_cube_against_samples_of_its_upper_half():
    """Recall is 1 (every true point lies on the mesh); precision is the share of the mesh's area within 1% of
    the upper half: the top face, the sides' upper halves and a 0.01 band below them, (1 + 2 + 0.04) / 6."""
    cube = trimesh.creation.box((1, 1, 1))
    points, faces = cube.sample(200_000, return_index=True, seed=1)
    upper = points[:, 2] >= 0
    scores = surface_metrics(Mesh(cube.vertices, cube.faces), points[upper], cube.face_normals[faces][upper])
    precision = 3.04 / 6
    assert scores["fscore"] == pytest.approx(2 * precision / (precision + 1), abs=0.005)


@pytest.mark.parametrize(
    "turn, expected",
    [
        (lambda n: n, 1.0),
        (lambda n: -n, 1.0),  # the paper's measure ignores orientation: inverted normals agree fully
        (lambda n: np.cross(n, _sphere_samples(1.0, len(n))[1]), 0.0),  # tangent to the sphere: perpendicular
        (lambda n: _sphere_samples(1.0, len(n))[1], 0.5),  # random directions: the mean of |cos| is 1/2
    ],
    ids=["same", "inverted", "tangent", "random"],
)
def test_normal_consistency_is_the_mean_absolute_cosine(turn, expected):
    gt_points, gt_normals = _sphere_samples(0.4)
    scores = surface_metrics(Mesh(BALL.vertices, BALL.faces), gt_points, turn(gt_normals))
    assert scores["normal_consistency"] == pytest.approx(expected, abs=0.01)


def test_a_failed_reconstruction_scores_zero():
    shape = {"uniform": _grid(0.5, 10), "labels": np.ones(1000, bool), "surface": None, "normals": None}
    scores = score_mesh(None, shape)
    assert scores["iou"] == 0.0 and scores["fscore"] == 0.0 and np.isnan(scores["chamfer_l1"])
