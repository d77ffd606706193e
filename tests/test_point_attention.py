"""Point attention: exact neighbourhoods whichever search finds them (SciPy's tree, the numpy grid the built-in
runtime uses, the graph's TopK over candidates), measured in the cloud's own spacing so that place and scale do not
matter; its flat latent; a tiny fitted model on both engines, the thinning it reports, and blends of fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fitting import ellipsoid_occupancy, ellipsoid_surface

from backend import load_model
from backend.config import PointLatentLayout, preset
from backend.inputs import PointCloudInput, neighbours
from backend.inputs.attention import prepare_points
from backend.inputs.neighbours import (
    LEVELS,
    RADIUS,
    Candidates,
    QueryNeighbours,
    level_size,
    level_unit,
    nearest,
    spacing,
)
from backend.metrics import iou, mesh_contains, solid_iou
from backend.models.point_attention import nearest_of_candidates
from backend.protocol import input_summary
from backend.surface.latent import interpolate

AXES = np.array([0.5, 0.3, 0.22])


def _cloud(count: int, seed: int = 0) -> np.ndarray:
    """A noisy ellipsoid with a few exact duplicates and a stray point: the awkward cases of real scans."""
    rng = np.random.default_rng(seed)
    cloud = ellipsoid_surface(AXES, count, rng)
    cloud[: count // 50] = cloud[count // 50 : 2 * (count // 50)]
    cloud[-1] = [2.0, 2.0, 2.0]
    return cloud.astype(np.float32)


def _distances(cloud: np.ndarray, queries: np.ndarray, found: np.ndarray) -> np.ndarray:
    return np.linalg.norm(cloud[found] - queries[:, None, :], axis=-1)


@pytest.mark.parametrize("count", [7, 300, 6000])
def test_nearest_on_the_numpy_grid_is_scipys_exact_knn(count, monkeypatch):
    """Ties between duplicates may order differently, so the neighbours' distances are compared."""
    cloud = _cloud(count)
    queries = np.concatenate([cloud, np.random.default_rng(1).uniform(-1, 1, (200, 3)).astype(np.float32)])
    with_scipy = nearest(cloud, 16, queries)
    monkeypatch.setattr(neighbours, "cKDTree", None)
    on_grid = nearest(cloud, 16, queries)
    assert on_grid.shape == with_scipy.shape == (len(queries), 16)
    np.testing.assert_allclose(_distances(cloud, queries, on_grid), _distances(cloud, queries, with_scipy), atol=1e-6)
    assert (on_grid[:count, 0] == np.arange(count)).mean() > 0.9  # a point is its own nearest (but for duplicates)


@pytest.mark.parametrize("queries", ["scattered", "lattice"])
def test_queries_find_the_same_neighbours_on_numpy_scipy_and_the_graphs_topk(queries, monkeypatch):
    """Scattered queries take the candidates of 3 x 3 x 3 blocks of cells; a lattice (as MISE evaluates) shares
    finer cells, whose candidates are cut to those within the radius of the cell."""
    cloud = _cloud(3000 if queries == "scattered" else 1000)
    unit = spacing(cloud, nearest(cloud))
    if queries == "scattered":
        queries = np.random.default_rng(2).uniform(-0.6, 0.6, (4000, 3)).astype(np.float32)
    else:
        queries = np.stack(np.meshgrid(*[np.linspace(-0.6, 0.6, 33)] * 3, indexing="ij"), -1).reshape(-1, 3)
        queries = queries.astype(np.float32)
    with_scipy = QueryNeighbours(cloud, unit)(queries)
    monkeypatch.setattr(neighbours, "cKDTree", None)
    on_grid = QueryNeighbours(cloud, unit)(queries)
    for level in range(LEVELS):
        radius = RADIUS * level_unit(unit, level)
        candidates = Candidates(cloud[: level_size(len(cloud), level)], radius)(queries)
        found, exists = nearest_of_candidates(
            torch.from_numpy(cloud)[None],
            torch.from_numpy(queries)[None],
            torch.from_numpy(candidates)[None],
            torch.tensor([radius]),
            16,
        )
        in_graph = (found[0].numpy(), exists[0].numpy())
        for other in (on_grid[level], in_graph):
            np.testing.assert_array_equal(other[1], with_scipy[level][1])
            present = with_scipy[level][1]
            np.testing.assert_allclose(
                _distances(cloud, queries, other[0])[present],
                _distances(cloud, queries, with_scipy[level][0])[present],
                atol=1e-6,
            )
        assert 0.05 < present.mean() < 0.95, "the test should hold both near and far queries"


def test_neighbourhoods_do_not_depend_on_the_clouds_place_or_scale():
    config = preset("attention-small")
    cloud = _cloud(2000).astype(np.float64)
    here, _ = prepare_points(cloud, None, config)
    there, frame = prepare_points(cloud * 250.0 + [1.0e3, -7.0, 4.2e5], None, config)
    assert frame.scale == pytest.approx(250.0 * (cloud[:-1].max(0) - cloud[:-1].min(0)).max(), rel=1e-6)
    np.testing.assert_allclose(there.points, here.points, atol=1e-5)
    np.testing.assert_array_equal(there.neighbours, here.neighbours)
    np.testing.assert_array_equal(there.parents, here.parents)
    assert there.unit == pytest.approx(here.unit, rel=1e-5)


def test_a_point_latent_splits_into_what_it_was_joined_from():
    config = preset("attention-small")
    layout = PointLatentLayout.of(config)
    rng = np.random.default_rng(0)
    planes, points, features = rng.normal(size=config.plane_shape), rng.normal(size=(10, 3)), rng.normal(size=(10, 32))
    code = layout.join(planes, 0.25, points, features)
    assert config.latent_size_problem(code.size) is None
    assert config.latent_size_problem(code.size - 1) is not None
    assert config.latent_size_problem(layout.fixed) is not None  # planes without points
    back = layout.split(code)
    for original, restored in zip((planes, 0.25, points, features), back, strict=True):
        np.testing.assert_allclose(restored, original, rtol=1e-6)


def _scores(mesh, rng: np.random.Generator, offset: np.ndarray) -> float:
    queries = rng.uniform(-0.6, 0.6, (40_000, 3))
    return iou(mesh_contains(mesh.vertices - offset, mesh.faces, queries), ellipsoid_occupancy(queries, AXES))


def test_the_tiny_model_reconstructs_a_held_out_ellipsoid_alike_on_both_engines(tiny_attention_model):
    rng = np.random.default_rng(5)
    offset = np.array([4.0, -3.0, 2.0])
    cloud = ellipsoid_surface(AXES, 1500, rng) + offset
    model = load_model(tiny_attention_model, "cpu")
    result = model.reconstruct(cloud, resolution=128)
    assert _scores(result.mesh, rng, offset) > 0.85
    assert result.latent.blends_by_field and result.stats["input"] == {
        "points": 1500,
        "used": 1500,
        "dropped": 0,
        "normals": "none",
    }
    runtime = load_model(tiny_attention_model, engine="runtime")
    latent = runtime.encode(PointCloudInput(cloud))
    np.testing.assert_allclose(latent.code, result.latent.code, atol=1e-4)
    mesh = runtime.extract(latent, resolution=128).mesh
    assert solid_iou((mesh.vertices, mesh.faces), (result.mesh.vertices, result.mesh.faces)) >= 0.99


def test_a_cloud_above_the_cap_is_thinned_evenly_and_says_so(tiny_attention_model):
    model = load_model(tiny_attention_model, "cpu")
    cap = model.config.n_points
    cloud = ellipsoid_surface(AXES, 3 * cap, np.random.default_rng(6))
    latent = model.encode(cloud)
    source = latent.source
    assert source["points"] == 3 * cap and 0.8 * cap <= source["used"] <= cap and source["thinned_to"] == source["used"]
    assert f"thinned evenly to the model's cap of {cap:,}" in input_summary({"input": source})


def test_a_blend_of_fields_reproduces_its_ends_and_lies_between(tiny_attention_model):
    model = load_model(tiny_attention_model, "cpu")
    rng = np.random.default_rng(7)
    a = model.encode(ellipsoid_surface(np.array([0.5, 0.2, 0.2]), 800, rng))
    b = model.encode(ellipsoid_surface(np.array([0.2, 0.2, 0.5]), 1500, rng) + 10.0)
    assert a.code.size != b.code.size  # different point counts: only a blend of fields can mix them
    ends = [model.extract(latent, resolution=64).mesh for latent in (a, b)]
    blends = [model.extract(interpolate(a, b, t), resolution=64).mesh for t in (0.0, 0.5, 1.0)]
    solid = [(m.vertices, m.faces) for m in (*ends, *blends)]
    assert solid_iou(solid[2], solid[0]) >= 0.99 and solid_iou(solid[4], solid[1]) >= 0.99
    middle = blends[1]
    assert 0.0 < middle.vertices[:, 0].mean() < 10.0  # it moves between the two places
    centred = [(v - v.mean(0), f) for v, f in solid]
    assert solid_iou(centred[3], centred[0]) < 0.95 and solid_iou(centred[3], centred[1]) < 0.95
