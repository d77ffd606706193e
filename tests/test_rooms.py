"""Synthetic rooms (backend/data/rooms.py): open at the top, furniture apart, exact labels, stable splits."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from backend.cli import main
from backend.config import BOX_SIZE
from backend.data.procedural import SPLIT_OFFSETS, occupancy, tree_bounds
from backend.data.rooms import CLEARANCE, SINK, generate_rooms, make_room, write_room
from backend.data.sdf import Union
from backend.data.shapes import GENERATORS

SEEDS = range(8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Room trees are many small tensor operations: a second thread costs more than it gives (20x on a busy
    2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One room as the data set stores it (fewer points and a coarser meshing than the default: seconds)."""
    folder = tmp_path_factory.mktemp("rooms") / "room" / "0000003"
    write_room(
        folder, "room", 3, n_uniform=20_000, n_near=10_000, n_surface=20_000, views=0, image_size=32, resolution=64
    )
    return folder, make_room(3)


def _sdf(node, points: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return node(torch.from_numpy(np.asarray(points, np.float32))).numpy()


def _onto(node, points: np.ndarray) -> np.ndarray:
    """Points moved onto the node's surface along its gradient."""
    p = torch.from_numpy(np.asarray(points, np.float32))
    for _ in range(3):
        p.requires_grad_(True)
        d = node(p)
        (grad,) = torch.autograd.grad(d.sum(), p)
        p = (p - d[:, None] * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-9)).detach()
    return p.numpy()


def test_rooms_are_seeded_and_within_their_ranges():
    rooms = [make_room(seed) for seed in SEEDS]
    assert make_room(5).layout() == rooms[5].layout()
    assert len({json.dumps(r.layout()) for r in rooms}) == len(rooms)
    for room in rooms:
        kinds = [p.kind for p in room.parts]
        assert kinds[0] == "floor" and 2 <= kinds.count("wall") <= 4
        assert 3 <= len(room.furniture) <= 8 and {p.kind for p in room.furniture} <= set(GENERATORS)
        assert 4.0 <= room.size <= 6.0 and 2.0 <= room.wall_height <= 2.7
    assert any(len(r.doors) for r in rooms) and len({p.kind for r in rooms for p in r.furniture}) >= 5


def test_a_room_is_normalised_like_every_shape():
    room = make_room(1)
    low, high = tree_bounds(room.shape, 0.6)
    np.testing.assert_allclose((low + high) / 2, 0, atol=2e-3)
    assert (high - low).max() == pytest.approx(1.0, abs=2e-3)
    assert (high - low)[2] < 0.75  # Z up: the room is lower than it is wide


def test_a_written_room_is_open_at_the_top_with_exact_labels(written):
    folder, room = written
    layout = json.loads((folder / "room.json").read_text())
    assert layout == json.loads(json.dumps(room.layout()))
    with np.load(folder / "points.npz") as data:
        points, n_uniform = data["points"].astype(np.float32), int(data["n_uniform"])
        labels = np.unpackbits(data["occupancies"])[: len(points)].astype(bool)
        np.testing.assert_allclose(data["loc"], room.center, atol=1e-4)
        assert float(data["scale"]) == pytest.approx(room.size, rel=1e-5)
    assert points.shape == (30_000, 3) and n_uniform == 20_000
    np.testing.assert_array_equal(labels, occupancy(room.shape, points))  # the labels of the points as stored
    uniform, inside = points[:n_uniform], labels[:n_uniform]
    assert np.abs(uniform).max() <= BOX_SIZE / 2 + 1e-3
    floor = next(p for p in layout["parts"] if p["kind"] == "floor")["box"]
    over_floor = (uniform[:, :2] > floor[0][:2]).all(1) & (uniform[:, :2] < floor[1][:2]).all(1)
    above = over_floor & (uniform[:, 2] > layout["wall_top"] + 1e-3)
    assert above.sum() > 1000 and not inside[above].any()  # no ceiling
    room_space = over_floor & (uniform[:, 2] > layout["floor_top"] + 1e-3) & (uniform[:, 2] < layout["wall_top"])
    assert 0.005 < inside[room_space].mean() < 0.3  # walls and furniture, mostly air
    under = over_floor & (uniform[:, 2] < layout["floor_top"] - 1e-3) & (uniform[:, 2] > floor[0][2] + 1e-3)
    assert inside[under].mean() > 0.6  # the slab (an L's cut corner is outside)


def test_surface_samples_cover_every_piece_of_furniture_down_to_the_floor(written):
    folder, room = written
    with np.load(folder / "pointcloud.npz") as data:
        surface, normals = data["points"].astype(np.float32), data["normals"].astype(np.float32)
    assert surface.shape == normals.shape == (20_000, 3)
    assert np.abs(_sdf(room.shape, surface)).max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=5e-3)
    floor_top = room.to_canonical([0, 0, 0])[2]
    on_furniture = np.zeros(len(surface), bool)
    for part in room.furniture:
        mine = np.abs(_sdf(room.canonical(part.tree), surface)) < 1e-3
        on_furniture |= mine
        low, high = room.to_canonical(np.array(part.room_box()))
        height = high[2] - floor_top
        assert mine.sum() >= 20, part.kind
        assert surface[mine, 2].min() - floor_top < 0.25 * height, part.kind  # legs are sampled
        assert surface[mine, 2].max() > high[2] - 0.1 * height, part.kind
    assert on_furniture.mean() > 0.03
    with np.load(folder / "points.npz") as data:
        near = data["points"][int(data["n_uniform"]) :].astype(np.float32)
    furniture = room.canonical(Union(*(p.tree for p in room.furniture)))
    assert (np.abs(_sdf(furniture, near)) < 0.04).mean() > 0.5  # half the near points are around the furniture


@pytest.mark.parametrize("seed", [2, 6])
def test_each_piece_of_furniture_is_a_separate_part_off_the_walls(seed):
    room = make_room(seed)
    clearance = CLEARANCE / room.size
    walls = room.canonical(Union(*(p.tree for p in room.parts if p.kind == "wall")))
    floor_top = room.to_canonical([0, 0, 0])[2]
    pieces = [room.canonical(p.tree) for p in room.furniture]
    rng = np.random.default_rng(seed)
    for i, piece in enumerate(pieces):  # the distance values of everything else, on the piece's surface
        low, high = room.to_canonical(np.array(room.furniture[i].room_box()))
        probe = rng.uniform(low - 0.01, high + 0.01, (20_000, 3)).astype(np.float32)
        probe = _onto(piece, probe[np.abs(_sdf(piece, probe)) < 5e-3])
        probe = probe[np.abs(_sdf(piece, probe)) < 1e-5]  # those that reached the surface
        assert len(probe) > 50
        others = [walls] + [p for j, p in enumerate(pieces) if j != i]
        assert min(_sdf(o, probe).min() for o in others) > 0.95 * clearance
        bottom = tree_bounds(piece, 0.6)[0][2]
        assert floor_top - (SINK + 0.002) / room.size < bottom < floor_top  # on the floor, about SINK into it
    # and on a grid over the room, above the floor: no connected part holds two pieces, or a piece and a wall
    top = room.to_canonical([0, 0, room.wall_height])[2]
    axis = np.arange(-0.5, 0.5, 0.008)
    z = np.arange(floor_top + 0.002, top, 0.008)
    grid = np.stack(np.meshgrid(axis, axis, z, indexing="ij"), -1)
    owners = np.stack([_sdf(n, grid.reshape(-1, 3)) for n in [walls, *pieces]], -1)
    occupied = (owners.min(-1) <= 0).reshape(grid.shape[:3])
    owner = owners.argmin(-1).reshape(grid.shape[:3])
    parts, count = ndimage.label(occupied)
    for label in range(1, count + 1):
        assert len(np.unique(owner[parts == label])) == 1
    assert set(np.unique(owner[occupied])) == set(range(len(pieces) + 1))  # every piece is there


def test_room_splits_are_disjoint_and_reproducible(tmp_path):
    counts = {"train": 2, "val": 1, "test": 1}
    root = generate_rooms(tmp_path / "a", counts, surface=2000, resolution=32)
    lists = {s: (root / "room" / f"{s}.lst").read_text().split() for s in counts}
    assert [len(lists[s]) for s in counts] == list(counts.values())
    assert len(set(sum(lists.values(), []))) == 4
    assert lists["val"] == [f"{SPLIT_OFFSETS['val']:07d}"]  # each split's seeds are its own
    write_room(tmp_path / "b", "room", int(lists["test"][0]), 100_000, 50_000, 2000, 0, 32, resolution=32)
    for name in ("points.npz", "pointcloud.npz"):
        with np.load(root / "room" / lists["test"][0] / name) as a, np.load(tmp_path / "b" / name) as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])
    stamp = (root / "room" / lists["train"][0] / "points.npz").stat().st_mtime_ns
    generate_rooms(tmp_path / "a", counts, surface=2000, resolution=32)  # resumes: nothing is redone
    assert (root / "room" / lists["train"][0] / "points.npz").stat().st_mtime_ns == stamp


def test_the_data_rooms_command(tmp_path, capsys):
    argv = ["data", "rooms", "--out", str(tmp_path), "--train", "1", "--val", "0", "--test", "0"]
    assert main(argv + ["--surface", "2000", "--resolution", "32", "--workers", "1"]) == 0
    assert (tmp_path / "room" / "train.lst").read_text().split() == ["0000000"]
    assert (tmp_path / "room" / "0000000" / "done").exists() and (tmp_path / "room" / "0000000" / "room.json").exists()
    assert "synthetic rooms ready" in capsys.readouterr().out
