"""The models in backend/weights: they load safely, are listed with their scores, and reconstruct shapes
from the held-out split (never seen in training) above the bounds stated here."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from held_out import HELD_OUT, held_out_shape, noisy_scan, reconstruction_iou
from shapes import torus_knot_mesh

from backend import load_model
from backend.data.procedural import SPLIT_OFFSETS
from backend.data.render import render
from backend.data.rooms import make_room, room_surface
from backend.evaluate import surface_metrics
from backend.inputs import PointCloudInput
from backend.metrics import iou, mesh_contains
from backend.registry import default_model, list_models
from backend.surface.mesh import Mesh
from backend.surface.options import MIN_PIECE

# Two meshes of the held-out real split (scripts/prepare_real_meshes.py, test split): a dog's carpal bone from
# dm-control (Apache-2.0) and one of pybullet's random objects (zlib). The shipped models never saw them.
REAL_MESHES = Path(__file__).parent / "data"
REAL_OFFSET = np.array([3.0, -2.0, 5.0])  # scans lie away from the origin, as in a user's scene
REAL_IOU = {"dog_carpal_bone.stl": 0.85, "pybullet_random_040.obj": 0.8}  # measured 0.918 and 0.88 (3,000 points)

POINTCLOUD_MEAN_IOU = 0.75  # its held-out test mean is in docs/MODELS.md; six shapes vary around it
IMAGE_MEAN_IOU = 0.55


def test_shipped_models_are_listed_small_and_evaluated():
    entries = {e.name: e for e in list_models()}
    shipped = (
        ("attention-pointcloud", "pointcloud"),
        ("triplane-pointcloud", "pointcloud"),
        ("onet-pointcloud", "pointcloud"),
        ("onet-image", "image"),
        ("views-image", "image"),
    )
    for name, kind in shipped:
        assert name in entries, f"{name} is not shipped in backend/weights"
        entry = entries[name]
        assert entry.config.input_kind == kind and entry.size_mb <= 25
        assert entry.config.evaluation["test_iou"] > 0.5
        assert entry.config.training["train_shapes"] > 0


def test_point_attention_is_the_default_for_scans_and_publishes_its_scores_beside_poissons():
    assert default_model("pointcloud") == "attention-pointcloud"
    evaluation = {e.name: e for e in list_models()}["attention-pointcloud"].config.evaluation
    real = evaluation["real_3000"]
    assert real["shapes"] >= 60 and "poisson_iou" in real and real["iou"] == evaluation["test_iou"]
    for label in ("real_300", "real_30000", "closed_3000", "closed_30000"):
        assert "poisson_fscore" in evaluation[label] and evaluation[label]["shapes"] >= 20, label


def test_reference_images_default_to_the_views_model_which_beats_the_baselines_it_publishes():
    """Scored on renders of the 67 held-out real meshes (docs/MODELS.md): one picture beside an ellipsoid fitted to
    its silhouette, two and three beside the visual hull. Sheets keep every silhouette pixel: the results'
    silhouettes match the pictures to 0.97 or better, given one, two or three (docs/MODELS.md)."""
    assert default_model("image") == "views-image"
    evaluation = {e.name: e for e in list_models()}["views-image"].config.evaluation
    for label, baseline in (("real_front", "ellipsoid"), ("real_front_side", "hull"), ("real_front_side_top", "hull")):
        scores = evaluation[label]
        assert scores["shapes"] >= 60 and scores["iou"] > scores[f"{baseline}_iou"], label
    for label in ("real_front", "real_front_side", "real_front_side_top"):
        assert evaluation[label]["silhouette_iou"] >= 0.97, label


def _real_scan_iou(name: str, count: int, seed: int = 1, resolution: int = 64) -> float:
    """IoU of the default model's reconstruction of a noisy scan (sigma 0.5% of the size) of a real mesh."""
    mesh = trimesh.load(REAL_MESHES / name, force="mesh")
    mesh.apply_translation(REAL_OFFSET)
    low, high = mesh.bounds
    size = float((high - low).max())
    rng = np.random.default_rng(seed)
    cloud, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    cloud = cloud + rng.normal(scale=0.005 * size, size=cloud.shape)
    model = load_model(default_model("pointcloud"), "cpu")
    result = model.reconstruct(cloud, resolution=resolution, normals=False).mesh
    points = rng.uniform(low - 0.05 * size, high + 0.05 * size, (50_000, 3))
    truth = mesh_contains(mesh.vertices, mesh.faces, points)
    return iou(mesh_contains(result.vertices, result.faces, points), truth)


@pytest.mark.parametrize("name", sorted(REAL_IOU))
def test_held_out_real_meshes_reconstruct_from_scans(name):
    assert _real_scan_iou(name, 3000) > REAL_IOU[name]


def test_a_dense_scan_of_a_real_mesh_reconstructs_better_than_a_sparse_one():
    sparse, dense = _real_scan_iou("pybullet_random_040.obj", 300), _real_scan_iou("pybullet_random_040.obj", 3000)
    assert dense > sparse + 0.05, (sparse, dense)


def _held_out_scores(model, observe) -> list[float]:
    """IoU of each held-out shape's reconstruction from `observe(shape, rng)`."""
    rng = np.random.default_rng(0)
    scores = []
    for category, index in HELD_OUT:
        shape = held_out_shape(category, index)
        scores.append(reconstruction_iou(model, observe(shape, rng), shape, rng))
    return scores


def test_pointcloud_model_on_held_out_noisy_scans():
    scores = _held_out_scores(load_model("onet-pointcloud", "cpu"), noisy_scan)
    assert np.mean(scores) > POINTCLOUD_MEAN_IOU, scores


@pytest.mark.slow
def test_image_model_on_held_out_renders():
    view = lambda shape, rng: render(shape, math.radians(40), math.radians(25), 128)  # noqa: E731
    scores = _held_out_scores(load_model("onet-image", "cpu"), view)
    assert np.mean(scores) > IMAGE_MEAN_IOU, scores


# --- Issue 16's targets for the default point-cloud model: detail, topology and scale that follow the scan -----
# The shipped default does not meet them yet (strict: a model that passes must have its mark removed). Measured
# on the shipped file without found normals: the knot in 31 pieces, the room's air 26% filled (the previous files:
# 38 pieces and 35%, 94 pieces and 7%; the triplane before them: 6 pieces, 75%); with the normals it finds, the
# knot in 13 pieces, its main one bridged (Euler number -18), F@1% 0.83.
NOT_YET = pytest.mark.xfail(strict=True, reason="issue 16: not met by the shipped model (numbers above)")


def _scan(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> PointCloudInput:
    """Noisy surface samples of a mesh (sigma 0.005 of its size) with the normals of the faces they came from."""
    rng = np.random.default_rng(seed)
    size = float((mesh.bounds[1] - mesh.bounds[0]).max())
    cloud, faces = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return PointCloudInput(cloud + rng.normal(scale=0.005 * size, size=cloud.shape), mesh.face_normals[faces])


def _knot_result(scan, min_piece: float) -> tuple[list[trimesh.Trimesh], dict]:
    """The shipped default's reconstruction of a torus knot (away from the origin) from `scan(knot)`: its pieces,
    and its surface scores against the knot, in the knot's unit."""
    knot = torus_knot_mesh()
    knot.apply_translation(REAL_OFFSET)
    model = load_model(default_model("pointcloud"), "cpu")
    result = model.reconstruct(scan(knot), resolution=128, min_piece=min_piece).mesh
    pieces = trimesh.Trimesh(result.vertices, result.faces).split(only_watertight=False)
    size = float((knot.bounds[1] - knot.bounds[0]).max())
    truth, faces = trimesh.sample.sample_surface(knot, 100_000, seed=1)
    unit = Mesh((result.vertices - REAL_OFFSET) / size, result.faces)
    return pieces, surface_metrics(unit, (truth - REAL_OFFSET) / size, knot.face_normals[faces])


@pytest.mark.slow
@NOT_YET
def test_a_torus_knot_comes_back_as_one_closed_piece_of_genus_one():
    """The feature planes alone fused the strands into a lump; 20,000 points hold the gaps between them."""
    # the points without their normals, and the model's own pieces
    pieces, scores = _knot_result(lambda knot: PointCloudInput(_scan(knot, 20_000).points), min_piece=0)
    assert len(pieces) == 1 and pieces[0].is_watertight
    assert pieces[0].euler_number == 0  # genus 1: V - E + F = 2 - 2g
    assert scores["fscore"] >= 0.9, scores


@pytest.mark.slow
def test_a_torus_knot_scanned_with_normals_comes_back_as_one_closed_piece_of_genus_one():
    """With the normals a scanner writes, the field keeps the strands apart; the blobs it makes in the knot's empty
    middle, which no point supports, are dropped (without that: 5 pieces)."""
    pieces, scores = _knot_result(lambda knot: _scan(knot, 20_000), min_piece=MIN_PIECE)
    assert len(pieces) == 1 and pieces[0].is_watertight and pieces[0].euler_number == 0
    assert scores["fscore"] >= 0.9


def _room_scan_result(seed: int, noise: float):
    """A held-out room (never trained on) scanned with 100,000 points away from the origin and reconstructed: its
    layout, 200,000 points of its box, which of them are inside, which the result holds, and which are its air."""
    room = make_room(SPLIT_OFFSETS["test"] + seed)
    rng = np.random.default_rng(0)
    cloud, _, _ = room_surface(room, 100_000, rng)
    if noise:
        cloud = cloud + rng.normal(scale=noise, size=cloud.shape)
    offset = np.array([12.0, -30.0, 0.5])
    mesh = load_model(default_model("pointcloud"), "cpu").reconstruct(cloud * room.size + offset, resolution=128).mesh
    layout = room.layout()
    box = rng.uniform(-0.5, 0.5, (200_000, 3))
    with torch.no_grad():
        inside = (room.shape(torch.from_numpy(box)) <= 0).numpy()
    predicted = mesh_contains((mesh.vertices - offset) / room.size, mesh.faces, box)
    air = ~inside & (box[:, 2] > layout["floor_top"] + 0.02) & (box[:, 2] < layout["wall_top"])
    return layout, box, inside, predicted, air


@pytest.mark.slow
def test_a_room_scan_stays_open_with_its_furniture_apart():
    """A room of the held-out seeds (never trained on): the air between floor, walls and furniture stays empty,
    which the feature planes alone filled into a solid block. Read with the normals the model finds (94% of its
    points): IoU 0.92, 0.4% of its air filled after the default cleaning (9.6% as the field comes); its lamp, a
    separate piece with 0.57% of the room's surface, stays because the scan holds its points (it went with the
    crumbs before)."""
    layout, box, inside, predicted, air = _room_scan_result(7, noise=0.0)
    assert predicted[air].mean() < 0.05  # open: the room's air is not filled
    assert iou(predicted, inside) > 0.75
    for part in layout["parts"]:
        if part["kind"] not in ("floor", "wall"):
            low, high = (np.array(corner) for corner in part["box"])
            centre = (low + high) / 2
            assert predicted[np.linalg.norm(box - centre, axis=1) < 0.25 * (high - low).max()].any(), part["kind"]


@pytest.mark.slow
def test_a_noisy_room_scans_open_air_is_not_filled():
    """With the paper's noise the model filled a third of this held-out room's air, far from any point; the scan's
    open space (`backend/inputs/open_space.py`) is carved out of the field: 4% left, IoU 0.34 -> 0.73; with each
    face of its thin walls and floor told its own side (`backend/inputs/normals.py`): 1.1% left, IoU 0.84."""
    _, _, inside, predicted, air = _room_scan_result(3, noise=0.005)
    assert predicted[air].mean() < 0.03
    assert iou(predicted, inside) > 0.78


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    # the pybullet object: 0.901 from 3,000 points, 0.926 from 10,000, 0.850 from 30,000 (shipped file, 128)
    [pytest.param(name, marks=NOT_YET) if name.startswith("pybullet") else name for name in sorted(REAL_IOU)],
)
def test_a_dense_scan_reads_more_detail_than_a_sparse_one(name):
    sparse, dense = _real_scan_iou(name, 3000, resolution=128), _real_scan_iou(name, 30_000, resolution=128)
    assert dense >= sparse, (sparse, dense)
