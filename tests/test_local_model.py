"""The local-feature (triplane) occupancy network: local pooling, the box-to-plane mapping shared by encoder and
decoder, the encoder's indifference to point order and count, and (once it is shipped) the trained model's
robustness to rotation, its use of dense clouds and its blends."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fitting import TINY_TRIPLANE
from held_out import held_out_shape, mesh_iou, noisy_scan

from backend import load_model
from backend.api import interpolate
from backend.config import BOX_SIZE, ModelConfig
from backend.data.procedural import shape_mesh
from backend.metrics import iou, mesh_contains
from backend.models import build_model
from backend.models.local_pointnet import pool_max, pool_mean
from backend.models.triplane import PLANES, cell_index, sample_planes

ROOT = Path(__file__).resolve().parents[1]

# --- Local pooling against plain loops ------------------------------------------------------------------------


def _pooling_case():
    """Two clouds of 12 points in 9 cells (R = 3): repeated cells, empty cells, and an all-negative cell."""
    index = torch.tensor([[4, 3, 0, 3, 2, 3, 0, 1, 1, 0, 2, 2], [0, 1, 1, 0, 8, 0, 3, 1, 2, 3, 0, 8]])
    features = torch.randn(2, 12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    features[0, index[0] == 3] -= 10.0  # a max that is negative: empty-cell zeros must not win
    return features, index


def test_pool_max_is_the_max_over_each_points_cell():
    features, index = _pooling_case()
    pooled = pool_max(features, index, cells=9)
    expected = torch.empty_like(features)
    for b in range(2):
        for n in range(12):
            same = [m for m in range(12) if index[b, m] == index[b, n]]
            expected[b, n] = torch.stack([features[b, m] for m in same]).max(dim=0).values
    torch.testing.assert_close(pooled, expected, rtol=0, atol=0)
    assert (pooled[0, index[0] == 3] < -5).all()


def test_pool_mean_is_each_cells_mean_and_empty_cells_are_zero():
    features, index = _pooling_case()
    resolution = 3
    planes = pool_mean(features, index, resolution)
    assert planes.shape == (2, 3, resolution, resolution)
    for b in range(2):
        for cell in range(resolution * resolution):
            members = [n for n in range(12) if index[b, n] == cell]
            expected = torch.stack([features[b, n] for n in members]).mean(0) if members else torch.zeros(3)
            v, u = divmod(cell, resolution)  # the flat index is row-major: v then u
            torch.testing.assert_close(planes[b, :, v, u], expected.to(planes), rtol=1e-12, atol=1e-12)
    assert (planes[1, :, 1, 1] == 0).all() and (planes[0, :, 2, 2] == 0).all()  # cells no point falls in


def test_gradients_reach_the_pooled_points():
    features, index = _pooling_case()
    features.requires_grad_(True)
    pool_max(features, index, cells=9).sum().backward()
    grad = features.grad
    assert torch.isfinite(grad).all()
    for b in range(2):
        for cell in index[b].unique():
            members = (index[b] == cell).nonzero().squeeze(1)
            winners = members[features[b, members].argmax(dim=0)]  # per feature, the point holding the max
            for f, winner in enumerate(winners):
                # every member reads the winner's value, so it collects one unit of gradient per member
                assert grad[b, winner, f] == len(members)
                assert (grad[b, members[members != winner], f] == 0).all()

    features.grad = None
    pool_mean(features, index, 3).sum().backward()
    counts = torch.stack([torch.bincount(i, minlength=9)[i] for i in index]).to(features)
    torch.testing.assert_close(features.grad, (1.0 / counts).unsqueeze(-1).expand_as(features))


# --- The box-to-plane mapping: where a point pools is where it reads --------------------------------------------

RES = 8


def _cell_centre(u: int, v: int, axes: tuple[int, int], other: float = 0.1) -> torch.Tensor:
    """The canonical point at the centre of plane pixel (u, v); the third coordinate is `other`."""
    point = torch.full((3,), other)
    extent = BOX_SIZE + 1e-3  # the mapping's margin keeps points on the box's faces in the last cell
    point[axes[0]] = ((u + 0.5) / RES - 0.5) * extent
    point[axes[1]] = ((v + 0.5) / RES - 0.5) * extent
    return point


@pytest.mark.parametrize("plane", range(3), ids=["xz", "xy", "yz"])
def test_a_pixels_value_is_read_back_at_its_cell_centre(plane):
    axes = PLANES[plane]
    for u, v in [(0, 0), (3, 5), (7, 2), (RES - 1, RES - 1)]:
        planes = torch.zeros(1, 3, 2, RES, RES)
        planes[0, plane, :, v, u] = torch.tensor([1.5, -2.0])
        point = _cell_centre(u, v, axes)[None, None]
        assert cell_index(point, axes, RES).item() == v * RES + u
        torch.testing.assert_close(sample_planes(planes, point)[0, 0], torch.tensor([1.5, -2.0]))


@pytest.mark.parametrize("plane", range(3), ids=["xz", "xy", "yz"])
def test_every_point_reads_the_pixel_of_the_cell_it_pools_into(plane):
    """A plane holding each pixel's own (u, v) is read bilinearly as the point's continuous pixel position,
    which rounds to the cell `cell_index` puts it in."""
    axes = PLANES[plane]
    planes = torch.zeros(1, 3, 2, RES, RES)
    pixel = torch.arange(RES, dtype=torch.float32)
    planes[0, plane, 0], planes[0, plane, 1] = pixel[None, :], pixel[:, None]  # channel 0 holds u, 1 holds v
    inner = (BOX_SIZE / 2) * (1 - 1 / RES)  # bilinear reads are exact away from the outer half pixel
    points = (torch.rand(1, 2000, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1) * inner
    read = sample_planes(planes, points)[0]
    cells = cell_index(points, axes, RES)[0]
    v, u = cells // RES, cells % RES
    assert (read[:, 0] - u).abs().max() <= 0.5 + 1e-4 and (read[:, 1] - v).abs().max() <= 0.5 + 1e-4


def test_points_outside_the_box_clamp_to_the_border():
    planes = torch.zeros(1, 3, 1, RES, RES)
    planes[0, 0, 0, 0, RES - 1] = 7.0  # XZ plane: u (x) at its top end, v (z) at its bottom end
    planes[0, 0, 0, 0, RES - 2] = -100.0  # the neighbour inside must not leak in
    far = torch.tensor([[[5.0, 0.0, -9.0], [0.56, 0.3, -0.56], [40.0, -40.0, -1e6]]])
    assert (cell_index(far, PLANES[0], RES) == RES - 1).all()
    torch.testing.assert_close(sample_planes(planes, far)[0, :, 0], torch.full((3,), 7.0))


# --- The encoder: any number of points, in any order ----------------------------------------------------------


# The small preset's latent shape (3, 32, 64, 64) with narrow layers and a light U-Net: pooling is what is tested.
LIGHT = ModelConfig(**TINY_TRIPLANE)


@functools.cache
def _encoder():
    torch.manual_seed(0)
    return build_model(LIGHT).encoder.eval()


def _sphere_clouds(batch: int, count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(batch, count, 3))
    radii = rng.uniform(0.2, 0.5, size=(batch, 1, 3))
    return torch.tensor(direction / np.linalg.norm(direction, axis=-1, keepdims=True) * radii, dtype=torch.float32)


@pytest.mark.parametrize("count", [300, 3000, 20_000])
def test_the_encoder_takes_any_point_count_in_any_order(count):
    clouds = _sphere_clouds(2, count, seed=count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(count))
    with torch.no_grad():
        planes = _encoder()(clouds)
        shuffled = _encoder()(clouds[:, order])
        alone = _encoder()(clouds[1:])
    assert planes.shape == (2, *LIGHT.latent_shape) == (2, 3, 32, 64, 64)
    assert torch.isfinite(planes).all()
    torch.testing.assert_close(shuffled, planes, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(alone[0], planes[1], rtol=1e-4, atol=1e-5)  # clouds in a batch do not mix
    assert (planes[0] - planes[1]).abs().max() > 1e-3  # different clouds, different planes


# --- The shipped model ----------------------------------------------------------------------------------------
# These need backend/weights/triplane-pointcloud.safetensors (or a candidate checkpoint named by the variable
# below) and skip until it exists. Held-out procedural shapes; IoU at resolution 64 in each input's own frame.

TRIPLANE = ROOT / "backend" / "weights" / "triplane-pointcloud.safetensors"
CANDIDATE_ENV = "OCCNET_TEST_TRIPLANE_MODEL"  # run these checks on a checkpoint before shipping it
ABOUT_X_90 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
MIN_IOU = 0.6  # below this the comparisons say little: a model this poor fails outright


@pytest.fixture(scope="module")
def triplane():
    path = Path(os.environ.get(CANDIDATE_ENV) or TRIPLANE)
    if not path.is_file():
        pytest.skip(f"{path} does not exist yet (the triplane model is being trained); these tests run once it does")
    model = load_model(path, "cpu")
    assert model.config.architecture == "triplane"
    return model


@functools.cache
def _held_out(category: str, index: int):
    shape = held_out_shape(category, index)
    return shape, shape_mesh(shape, 64)  # 64 is enough: surface samples are moved onto the exact surface


def _scan(category: str, index: int, count: int, seed: int = 0) -> np.ndarray:
    shape, mesh = _held_out(category, index)
    return noisy_scan(shape, np.random.default_rng(seed), count, mesh=mesh)


def _iou(model, cloud, category, index, rotation=None) -> float:
    mesh = model.reconstruct(cloud, resolution=64, normals=False).mesh
    return mesh_iou(mesh, _held_out(category, index)[0], np.random.default_rng(1), rotation)


@pytest.mark.slow
@pytest.mark.parametrize("category, index", [("chair", 1), ("airplane", 3)])
def test_a_scan_turned_90_degrees_reconstructs_as_well(triplane, category, index):
    cloud = _scan(category, index, 3000)
    upright = _iou(triplane, cloud, category, index)
    turned = _iou(triplane, cloud @ ABOUT_X_90.T, category, index, rotation=ABOUT_X_90)
    assert upright > MIN_IOU, f"IoU {upright:.3f} upright"
    assert abs(turned - upright) <= 0.03, f"IoU {upright:.3f} upright, {turned:.3f} turned 90 degrees about X"


@pytest.mark.slow
def test_dense_clouds_reconstruct_better_than_sparse_ones(triplane):
    shapes = [("chair", 1), ("car", 2)]
    dense = [_iou(triplane, _scan(c, i, 30_000), c, i) for c, i in shapes]
    sparse = [_iou(triplane, _scan(c, i, 300), c, i) for c, i in shapes]
    assert np.mean(dense) > max(np.mean(sparse), MIN_IOU), f"30,000 points: {dense}; 300 points: {sparse}"


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the shipped triplane's planes blended linearly thin the middle: sofa to chair, volume 0.060, 0.016 at "
    "0.25, 0.010 at 0.5, 0.020 at the chair (measured 2026-12-06); the default model blends fields instead",
)
def test_a_blend_of_two_latents_runs_from_one_to_the_other(triplane):
    """Linear blends of feature planes: the ends are the two shapes, the middle lies between them."""
    a, b = (triplane.encode(_scan(c, i, 3000)) for c, i in [("sofa", 6), ("chair", 1)])
    points = np.random.default_rng(2).uniform(-0.6, 0.6, (50_000, 3))  # both frames are near the canonical box

    def inside(latent) -> np.ndarray:
        mesh = triplane.extract(latent, resolution=64, normals=False).mesh
        return mesh_contains(mesh.vertices, mesh.faces, points)

    end_a, end_b = inside(a), inside(b)
    t0, middle, t1 = (inside(interpolate(a, b, t)) for t in (0.0, 0.5, 1.0))
    apart = iou(end_a, end_b)
    volumes = sorted([end_a.mean(), end_b.mean()])
    assert volumes[1] > 1.2 * volumes[0], f"the ends' volumes {volumes} are too alike to tell 'between'"
    assert iou(t0, end_a) >= 0.95 and iou(t1, end_b) >= 0.95
    for end, at_end in ((end_a, t0), (end_b, t1)):
        # nearer each end than the ends are to each other, yet not a copy of either
        assert apart < iou(middle, end) < iou(at_end, end), (apart, iou(middle, end), iou(at_end, end))
    assert volumes[0] < middle.mean() < volumes[1], f"middle {middle.mean():.4f}, ends {volumes}"
