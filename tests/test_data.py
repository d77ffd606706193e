import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from backend.data.mesh_folder import prepare_mesh_folder, split_of
from backend.data.procedural import canonical_shape, occupancy, shape_mesh, surface_samples, write_shape
from backend.data.render import render
from backend.data.samplers import distinct_surface, noisy_cloud, partial_cloud, query_points
from backend.data.shapes import CATEGORIES, make_tree
from backend.metrics import winding_number

RNG = np.random.default_rng(0)


def test_generators_are_seeded_and_varied():
    p = torch.from_numpy(RNG.uniform(-1, 1, (2000, 3)).astype(np.float32))
    for category in CATEGORIES:
        assert torch.equal(make_tree(category, 7)(p), make_tree(category, 7)(p)), category
        assert not torch.equal(make_tree(category, 7)(p), make_tree(category, 8)(p)), category


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_each_category_is_a_closed_upright_unit_object(category):
    shape = canonical_shape(category, 3)
    mesh = shape_mesh(shape)
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert extent.max() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose((mesh.vertices.max(0) + mesh.vertices.min(0)) / 2, 0, atol=0.02)
    assert mesh.to_trimesh().is_watertight


@pytest.mark.parametrize("category", ["chair", "mug", "airplane"])
def test_sdf_occupancy_agrees_with_winding_number_of_the_exported_mesh(category, tmp_path):
    shape = canonical_shape(category, 11)
    shape_mesh(shape, resolution=48).save(tmp_path / "shape.ply")
    exported = trimesh.load(tmp_path / "shape.ply")
    points = RNG.uniform(-0.55, 0.55, (4000, 3))
    by_sdf = occupancy(shape, points)
    by_winding = winding_number(exported.vertices, exported.faces, points) > 0.5
    assert (by_sdf == by_winding).mean() >= 0.99
    near, _ = surface_samples(shape, shape_mesh(shape), 1000, RNG)
    near = near + RNG.normal(scale=0.05, size=near.shape)
    assert (occupancy(shape, near) == (winding_number(exported.vertices, exported.faces, near) > 0.5)).mean() >= 0.95


def test_shape_files_follow_the_occupancy_networks_layout_and_resume(tmp_path):
    folder = tmp_path / "mug" / "0000001"
    write_shape(folder, "mug", 1, n_uniform=1000, n_near=500, n_surface=800, views=2, image_size=48)
    with np.load(folder / "points.npz") as data:
        assert data["points"].shape == (1500, 3) and data["points"].dtype == np.float16
        labels = np.unpackbits(data["occupancies"])[:1500]
        assert 0.01 < labels[:1000].mean() < 0.5 and labels[1000:].mean() > labels[:1000].mean()
    with np.load(folder / "pointcloud.npz") as data:
        assert data["points"].shape == data["normals"].shape == (800, 3)
    image = np.asarray(Image.open(folder / "img" / "01.png"))
    assert image.shape == (48, 48, 4)
    stamp = (folder / "points.npz").stat().st_mtime_ns
    write_shape(folder, "mug", 1, n_uniform=1000, n_near=500, n_surface=800, views=2, image_size=48)
    assert (folder / "points.npz").stat().st_mtime_ns == stamp  # complete shapes are not redone


def test_surface_samples_lie_on_the_exact_surface():
    shape = canonical_shape("vase", 2)
    points, normals = surface_samples(shape, shape_mesh(shape), 2000, RNG)
    with torch.no_grad():
        assert shape(torch.from_numpy(points)).abs().max() < 1e-3
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-3)


def test_renderer_shows_the_object_on_a_plain_background():
    image = render(canonical_shape("chair", 0), azimuth=0.3, elevation=0.4, size=64)
    alpha = image[..., 3] > 0
    assert 0.05 < alpha.mean() < 0.7
    assert (image[~alpha, :3] == 255).all() and image[alpha, 0].mean() < 230
    np.testing.assert_array_equal(image, render(canonical_shape("chair", 0), 0.3, 0.4, 64))


def test_samplers():
    points = RNG.uniform(size=(300, 3)).astype(np.float16)
    labels = np.arange(300) >= 200
    q, y = query_points(points, labels, 200, 100, 0.25, RNG)
    assert q.shape == (100, 3) and y[:25].sum() == 0 and y[25:].all()
    surface = RNG.normal(size=(5000, 3))
    surface /= np.linalg.norm(surface, axis=1, keepdims=True)
    partial = partial_cloud(surface, surface, 300, 0.0, RNG)[0]
    assert np.linalg.svd(partial - partial.mean(0))[1][-1] > 0  # 3-D, yet one-sided:
    assert np.abs(partial.mean(0)).max() > 0.3


def test_clouds_hold_each_surface_point_once_as_a_scan_does():
    surface = RNG.normal(size=(1000, 3)).astype(np.float16)
    surface, normals = distinct_surface(np.concatenate([surface, surface[:400]]), np.zeros((1400, 3)))
    assert len(surface) == len(normals) == 1000
    for count, expected in ((900, 900), (5000, 1000)):  # asking for more than the surface holds gives all of it
        cloud, _ = noisy_cloud(surface, normals, count, 0.0, RNG)
        assert len(np.unique(cloud, axis=0)) == len(cloud) == expected


def test_mesh_folder_with_a_hole_is_labelled_by_winding_number(tmp_path):
    src = tmp_path / "meshes" / "boxes"
    src.mkdir(parents=True)
    box = trimesh.creation.box((2, 1, 1))
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-1])  # one triangle missing: not watertight
    open_box.export(src / "open.obj")
    trimesh.creation.icosphere().export(src / "ball.stl")
    root = prepare_mesh_folder(tmp_path / "meshes", tmp_path / "data", n_uniform=2000, n_near=500, n_surface=1000)
    with np.load(root / "boxes" / "open" / "points.npz") as data:
        p = data["points"][:2000].astype(np.float32)
        labels = np.unpackbits(data["occupancies"])[:2000].astype(bool)
    truth = (np.abs(p) <= [0.5, 0.25, 0.25]).all(axis=1)
    assert (labels == truth).mean() > 0.99
    listed = [
        n
        for s in ("train", "val", "test")
        if (root / "boxes" / f"{s}.lst").exists()
        for n in (root / "boxes" / f"{s}.lst").read_text().split()
    ]
    assert sorted(listed) == ["ball", "open"]


def _splits(names: list[str]) -> list[str]:
    return [split_of(n) for n in names]


def test_splits_are_the_stated_shares_and_the_same_in_every_process():
    """The split comes from the name alone: Python's salted hash() would move shapes between runs."""
    names = [f"category_{i % 7}/mesh_{i:05d}" for i in range(6000)]
    here = _splits(names)
    shares = {s: here.count(s) / len(names) for s in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.8, abs=0.02), shares
    assert shares["val"] == pytest.approx(0.1, abs=0.015) and shares["test"] == pytest.approx(0.1, abs=0.015), shares
    code = (
        "import json, sys; from backend.data.mesh_folder import split_of; "
        "print(json.dumps([split_of(n) for n in json.load(sys.stdin)]))"
    )
    other_seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # this process's salt differs
    elsewhere = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(names[:500]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": other_seed},
        check=True,
    )
    assert json.loads(elsewhere.stdout) == here[:500]


def test_adding_meshes_keeps_every_prepared_mesh_in_its_split(tmp_path):
    src, dst = tmp_path / "meshes" / "parts", tmp_path / "data"
    src.mkdir(parents=True)

    def add(names):
        for name in names:
            trimesh.creation.box((1, 0.5, 0.3)).export(src / f"{name}.stl")
        prepare_mesh_folder(src.parent, dst, n_uniform=200, n_near=100, n_surface=200)
        return {n: s for s in ("train", "val", "test") for n in _listed(dst / "parts" / f"{s}.lst")}

    first = add([f"box{i:02d}" for i in range(10)])
    assert set(first.values()) == {"train", "val", "test"}  # these names reach every split
    second = add([f"added{i:02d}" for i in range(10)])  # listed before the first ten
    assert len(second) == 20 and {n: second[n] for n in first} == first


def _listed(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_real_mesh_preparation_keeps_groups_together_and_rejects_sheets(tmp_path, monkeypatch):
    path = Path(__file__).resolve().parents[1] / "scripts" / "prepare_real_meshes.py"
    spec = importlib.util.spec_from_file_location("prepare_real_meshes", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclasses look their module up
    spec.loader.exec_module(script)
    assert script.variant_free("upper_leg_mirror2_lores") == script.variant_free("upper-leg") == "upper_leg"
    assert script.variant_free("BONECarpal_II_L") == script.variant_free("BONECarpal_II_R") != "bonecarpal_i"
    raw = tmp_path / "raw" / "toy"
    grid = trimesh.creation.box().subdivide().subdivide().subdivide()
    sheet = grid.submesh([grid.face_normals[:, 2] > 0.9], append=True)  # an open square, 128 faces, no volume
    sheet.apply_transform(trimesh.transformations.rotation_matrix(0.5, [1, 1, 0]))
    parts = {
        "robot/arm.stl": trimesh.creation.box((1, 2, 3)).subdivide().subdivide(),  # closed, 192 faces
        "robot/leg_left.stl": trimesh.creation.cylinder(0.2, 1.0, sections=40),
        "robot/leg_right_lores.stl": trimesh.creation.cylinder(0.3, 2.0, sections=30),
        "ball/ball.stl": trimesh.creation.icosphere(2),
        "copy/ball.stl": trimesh.creation.icosphere(2),
        "sheet/sheet.obj": sheet,
    }
    for name, mesh in parts.items():
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        mesh.export(raw / name)
    (raw / ".complete").touch()  # as if extracted from the (here empty) package below
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "toy-1-py3-none-any.whl").touch()
    source = script.Source("toy", "pip", "toy", "1", "", "", lambda rel: rel.parts[0], 0.3, 0.3)
    args = script.parse_args(
        ["--cache", str(tmp_path / "cache"), "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "real")]
        + ["--train-points", "2000", "--test-points", "2000"]
    )
    row = script.prepare_source(source, args)
    index = json.loads((tmp_path / "real" / "toy" / "index.json").read_text())
    assert len({index[n]["split"] for n in index if n.startswith("robot_")}) == 1  # one robot, one split
    assert index["sheet_sheet"]["status"] == "skipped"
    assert index["sheet_sheet"]["reason"] in ("no volume inside", "ambiguous winding")
    assert sorted(str(index[n]["reason"]) for n in ("ball_ball", "copy_ball")) == ["None", "duplicate"]
    assert row["kept"] == 4
    lists = [(tmp_path / "real" / "toy" / f"{s}.lst").read_text().split() for s in ("train", "val", "test")]
    assert sorted(sum(lists, [])) == sorted(n for n in index if index[n]["status"] == "kept")
    stamp = (tmp_path / "real" / "toy" / "index.json").stat().st_mtime_ns
    assert script.prepare_source(source, args)["kept"] == 4  # resumes: nothing is redone
    assert (tmp_path / "real" / "toy" / "index.json").stat().st_mtime_ns == stamp


def test_mesh_folder_keeps_same_named_meshes_apart_and_reports_broken_files(tmp_path, capsys):
    src = tmp_path / "meshes"
    src.mkdir()
    trimesh.creation.box((1, 0.5, 0.5)).export(src / "chair.obj")
    trimesh.creation.icosphere(1).export(src / "chair.stl")
    (src / "empty.off").write_text("")
    (src / "bad.glb").write_bytes(b"glTF" + b"\x00" * 40)
    (src / "triangle.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")  # a sheet: nothing inside
    root = prepare_mesh_folder(src, tmp_path / "data", n_uniform=1000, n_near=200, n_surface=500)
    listed = sorted(n for lst in (root / "default").glob("*.lst") for n in lst.read_text().split())
    assert len(listed) == 2 and len(set(listed)) == 2 and all(n.startswith("chair") for n in listed)
    with (
        np.load(root / "default" / listed[0] / "points.npz") as a,
        np.load(root / "default" / listed[1] / "points.npz") as b,
    ):
        assert not np.array_equal(a["occupancies"], b["occupancies"])  # one is the box, one the ball
    out = capsys.readouterr().out
    assert "skipped 3 of 5 meshes" in out
    assert str(src / "empty.off") in out and str(src / "bad.glb") in out
    assert f"{src / 'triangle.obj'}: its inside and outside cannot be told (no volume inside" in out
