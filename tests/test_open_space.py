"""The open space of a scan (backend/inputs/open_space.py): a room's air is open, a closed object's inside and a
partial scan's inside are not."""

import numpy as np
import pytest
from fitting import ellipsoid_surface

from backend.config import BOX_SIZE
from backend.inputs.neighbours import nearest, spacing
from backend.inputs.open_space import OPEN_LOGIT, OpenSpace, carving


def _slab_surface(low, high, count, rng):
    """Points on a box's faces, area-weighted, with the box's outward normals (towards the air)."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    size = high - low
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]]).repeat(2)
    face = rng.choice(6, count, p=areas / areas.sum())
    axis, end = face // 2, face % 2
    points = low + rng.random((count, 3)) * size
    points[np.arange(count), axis] = np.where(end == 1, high[axis], low[axis])
    normals = np.zeros((count, 3))
    normals[np.arange(count), axis] = np.where(end == 1, 1.0, -1.0)
    return points, normals


def _open_room(rng, per_slab=30_000):
    """A floor and four walls, open at the top, 0.03 thick, as a scanned room normalised to the unit box."""
    slabs = [
        ((-0.5, -0.5, -0.25), (0.5, 0.5, -0.22)),
        ((-0.5, -0.5, -0.22), (-0.47, 0.5, 0.25)),
        ((0.47, -0.5, -0.22), (0.5, 0.5, 0.25)),
        ((-0.47, -0.5, -0.22), (0.47, -0.47, 0.25)),
        ((-0.47, 0.47, -0.22), (0.47, 0.5, 0.25)),
    ]
    parts = [_slab_surface(low, high, per_slab, rng) for low, high in slabs]
    return np.concatenate([p for p, _ in parts]), np.concatenate([n for _, n in parts])


def _sphere(count, seed):
    """A noisy sphere of radius 0.3 and its outward normals."""
    points = ellipsoid_surface(np.full(3, 0.3), count, np.random.default_rng(seed))
    return points, points / np.linalg.norm(points, axis=1, keepdims=True)


def _space(points, normals, calls=None):
    points = points.astype(np.float32)

    def found():
        if calls is not None:
            calls.append(1)
        return points, normals.astype(np.float32)

    return OpenSpace(points, spacing(points, nearest(points)), BOX_SIZE, found)


def test_a_rooms_air_is_open_and_its_walls_are_not():
    points, normals = _open_room(np.random.default_rng(0))
    space = _space(points, normals)
    air = np.array([[0.0, 0.0, 0.0], [0.2, -0.3, -0.1], [0.0, 0.0, 0.4]])
    solid = np.array([[0.0, 0.0, -0.235], [-0.485, 0.0, 0.0]])
    queries = np.concatenate([air, solid])
    assert space.open(queries, np.ones(len(queries), bool)).tolist() == [True] * 3 + [False] * 2
    # only what is asked about is opened
    assert not space.open(air, np.zeros(len(air), bool)).any()


def test_a_closed_objects_inside_is_never_reached_and_costs_no_normals():
    points, normals = _sphere(20_000, 1)
    calls = []
    space = _space(points, normals, calls)
    inside = np.array([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0]])
    assert not space.open(inside, np.ones(2, bool)).any()
    assert not calls  # the air side, which needs the field, was never needed
    outside = np.array([[0.45, 0.45, 0.45]])
    assert space.open(outside, np.ones(1, bool)).all() and calls


def test_a_partial_scans_inside_stays_closed():
    """Seen from one side only, the inside is reached through the side never seen, but the surfaces face away."""
    points, normals = _sphere(40_000, 2)
    seen = points[:, 0] > -0.1
    space = _space(points[seen], normals[seen])
    inside = np.array([[0.0, 0.0, 0.0], [0.15, 0.05, 0.0], [0.1, -0.1, 0.1]])
    assert not space.open(inside, np.ones(len(inside), bool)).any()
    assert space.open(np.array([[0.45, 0.0, 0.0]]), np.ones(1, bool)).all()


@pytest.mark.parametrize("threshold", [0.0, -5.0])
def test_carving_sets_only_what_the_field_calls_inside_in_every_space(threshold):
    points, normals = _open_room(np.random.default_rng(3))
    room = _space(points, normals)
    queries = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.1], [0.0, 0.0, -0.235]], np.float32)
    logits = np.array([2.0, -4.0, 5.0], np.float32)
    carved = carving([room], threshold)(queries, logits)
    expected = [OPEN_LOGIT, -4.0, 5.0] if threshold == 0.0 else [OPEN_LOGIT, OPEN_LOGIT, 5.0]
    assert carved.tolist() == expected
    closed, closed_normals = _sphere(20_000, 4)
    both = carving([room, _space(closed, closed_normals)], threshold)  # a blend: open only where both ends are
    assert both(queries, logits).tolist() == logits.tolist()  # the room's air is the sphere's inside


def test_the_numpy_search_opens_the_same_cells_as_scipys(monkeypatch):
    """The built-in runtime has no SciPy: its grid search must give the votes SciPy's tree gives, far or near."""
    import backend.inputs.neighbours as neighbours

    points, normals = _open_room(np.random.default_rng(5), per_slab=8_000)
    queries = np.random.default_rng(6).uniform(-0.55, 0.55, (4_000, 3)).astype(np.float32)
    everything = np.ones(len(queries), bool)
    with_scipy = _space(points, normals).open(queries, everything)
    monkeypatch.setattr(neighbours, "cKDTree", None)
    without = _space(points, normals).open(queries, everything)
    assert with_scipy.any() and np.array_equal(with_scipy, without)
