"""Loose crumbs and blobs are dropped from results (on by default at a small share); what is joined to the
object, however thin, stays; separate pieces of a fair size stay."""

import numpy as np
import pytest
import trimesh

from backend.engines.base import InputScan
from backend.errors import OccNetError
from backend.surface.field import Evaluator
from backend.surface.mesh import Mesh
from backend.surface.options import MIN_PIECE, ExtractOptions
from backend.surface.pieces import drop_small_pieces, piece_labels
from backend.surface.pipeline import extract_mesh


def _ball(points: np.ndarray, center, radius: float) -> np.ndarray:
    return radius - np.linalg.norm(points - np.asarray(center), axis=1)


def _mug_with_a_blob(points: np.ndarray) -> np.ndarray:
    """A ball with a thin ring for a handle (joined to it), and a small blob floating beside it."""
    body = _ball(points, [0.0, 0.0, 0.0], 0.2)
    x, z = points[:, 0] - 0.22, points[:, 2]
    ring = 0.012 - np.hypot(np.hypot(x, z) - 0.09, points[:, 1])  # a tube 2.4% of the box thick
    blob = _ball(points, [-0.38, 0.3, 0.3], 0.016)
    return 60.0 * np.maximum(np.maximum(body, ring), blob)


def _pieces(mesh: Mesh) -> int:
    return len(np.unique(piece_labels(mesh.faces, len(mesh.vertices))))


def test_a_planted_blob_goes_and_a_thin_handle_stays():
    raw, _ = extract_mesh(Evaluator(_mug_with_a_blob), ExtractOptions(min_piece=0), 0.5)
    cleaned, stats = extract_mesh(Evaluator(_mug_with_a_blob), ExtractOptions(), 0.5)
    assert _pieces(raw) == 2 and _pieces(cleaned) == 1 and stats.as_dict()["pieces_dropped"] == 1
    assert cleaned.vertices[:, 0].max() > 0.31  # the handle's far side (x = 0.22 + 0.09 + 0.012) is kept
    assert cleaned.vertices[:, 0].min() > -0.3  # the blob (x = -0.38) is gone
    assert raw.vertices[:, 0].min() < -0.39


def test_separate_pieces_of_a_fair_size_all_stay():
    """A room's chair is a few percent of its walls' surface: far above the default share."""
    a = trimesh.creation.icosphere(3, radius=1.0)
    b = trimesh.creation.icosphere(3, radius=0.3)
    b.apply_translation([3.0, 0, 0])
    both = trimesh.util.concatenate([a, b])
    kept, dropped = drop_small_pieces(Mesh(both.vertices, both.faces), MIN_PIECE)
    assert dropped == 0 and len(kept.faces) == len(both.faces)
    only_largest, dropped = drop_small_pieces(Mesh(both.vertices, both.faces), 1.0)
    assert dropped == 1 and len(only_largest.faces) == len(a.faces)


def test_dropping_keeps_each_vertex_its_normal_and_colour():
    a = trimesh.creation.icosphere(2)
    crumb = trimesh.creation.icosphere(0, radius=0.01)
    crumb.apply_translation([5.0, 0, 0])
    both = trimesh.util.concatenate([crumb, a])  # the crumb first, so the kept vertices are renumbered
    colors = np.random.default_rng(0).random((len(both.vertices), 3))
    mesh = Mesh(both.vertices, both.faces, both.vertex_normals, colors)
    kept, dropped = drop_small_pieces(mesh, MIN_PIECE)
    assert dropped == 1 and len(kept.vertices) == len(a.vertices)
    np.testing.assert_allclose(kept.vertices[kept.faces], mesh.vertices[mesh.faces[len(crumb.faces) :]], atol=1e-6)
    np.testing.assert_allclose(kept.colors, colors[len(crumb.vertices) :], atol=1e-6)
    np.testing.assert_allclose(kept.normals, both.vertex_normals[len(crumb.vertices) :], atol=1e-6)


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_share_outside_0_to_1_is_refused_with_the_range(share):
    with pytest.raises(OccNetError, match="between 0 .* and 1"):
        ExtractOptions(min_piece=share)


def test_a_piece_no_input_point_lies_near_goes_however_large_and_a_scanned_one_stays():
    """The field of a dense scan can make a blob in the empty middle of a shape (a knot's); the scan saw no surface
    there. A smaller piece the scan did see stays."""

    def field(points: np.ndarray) -> np.ndarray:
        body = _ball(points, [0.0, 0.0, 0.0], 0.2)
        seen = _ball(points, [0.35, 0.0, 0.0], 0.05)  # small, scanned
        unseen = _ball(points, [-0.3, 0.2, 0.0], 0.1)  # larger than the share, never scanned
        return 60.0 * np.maximum(np.maximum(body, seen), unseen)

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(6000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    scan_points = np.concatenate([0.2 * directions[:5000], [0.35, 0.0, 0.0] + 0.05 * directions[5000:]])
    scan = InputScan(scan_points.astype(np.float32), 0.01)
    options = ExtractOptions(resolution=64, snap=False)
    raw, _ = extract_mesh(Evaluator(field), ExtractOptions(resolution=64, snap=False, min_piece=0), 0.5, scan=scan)
    cleaned, stats = extract_mesh(Evaluator(field), options, 0.5, scan=scan)
    assert _pieces(raw) == 3 and _pieces(cleaned) == 2 and stats.as_dict()["pieces_dropped"] == 1
    assert cleaned.vertices[:, 0].max() > 0.39  # the scanned piece (x up to 0.4) stays
    assert cleaned.vertices[:, 1].max() < 0.25  # the unseen one (y up to 0.3) is gone


def test_a_small_piece_the_scan_holds_stays_and_a_crumb_beside_a_surface_goes():
    """A lamp standing apart in a room is under 1% of the room's surface, yet the scan holds its points; a crumb
    the field leaves beside a wall has none of its own (the wall passes through them)."""
    lamp, crumb, sparse = [0.45, 0.0, 0.0], [0.0, 0.33, 0.0], [0.0, 0.0, -0.45]

    def field(points: np.ndarray) -> np.ndarray:
        pieces = [_ball(points, [0.0, 0.0, 0.0], 0.3)] + [_ball(points, c, 0.02) for c in (lamp, crumb, sparse)]
        return 60.0 * np.max(pieces, axis=0)

    rng = np.random.default_rng(0)
    directions = rng.normal(size=(6000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    on = {"room": 0.3 * directions[:5500], "lamp": lamp + 0.02 * directions[5500:5800]}
    on["sparse"] = sparse + 0.02 * directions[5800:5850]  # a piece the scan barely saw: 50 points
    scan = InputScan(np.concatenate(list(on.values())).astype(np.float32), 0.01)
    options = ExtractOptions(resolution=128, snap=False)
    raw, _ = extract_mesh(Evaluator(field), ExtractOptions(resolution=128, snap=False, min_piece=0), 0.5, scan=scan)
    cleaned, stats = extract_mesh(Evaluator(field), options, 0.5, scan=scan)
    assert _pieces(raw) == 4 and _pieces(cleaned) == 2 and stats.as_dict()["pieces_dropped"] == 2
    assert cleaned.vertices[:, 0].max() > 0.46  # the lamp stays
    assert cleaned.vertices[:, 1].max() < 0.32 and cleaned.vertices[:, 2].min() > -0.4  # the crumb and the sparse go
    without_scan, _ = extract_mesh(Evaluator(field), options, 0.5)
    assert _pieces(without_scan) == 1  # without a scan every small piece is a crumb, as before
