import json
import os

import numpy as np
import trimesh
from commands import run_cli
from fitting import ellipsoid_surface

from backend.metrics import mesh_contains


def test_reconstruct_writes_a_mesh_in_the_input_frame(tiny_model, tmp_path):
    cloud = ellipsoid_surface(np.full(3, 0.5), 2000, np.random.default_rng(0)) * 4.0 + [10, 0, -3]
    np.savetxt(tmp_path / "scan.xyz", cloud)
    out = tmp_path / "result.ply"
    done = run_cli(
        "reconstruct",
        tmp_path / "scan.xyz",
        "--out",
        out,
        "--model",
        tiny_model,
        "--resolution",
        "64",
        "--save-latent",
        tmp_path / "scan_latent.npz",
    )
    assert done.returncode == 0, done.stderr
    mesh = trimesh.load(out)
    assert mesh.is_watertight
    assert mesh_contains(mesh.vertices, mesh.faces, np.array([[10.0, 0, -3], [10, 0, 0]])).tolist() == [True, False]
    assert "evaluate" in done.stderr  # tqdm progress goes to stderr
    assert (tmp_path / "scan_latent.npz").is_file()


def test_interpolate_writes_each_step(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", ellipsoid_surface(np.array([0.5, 0.2, 0.2]), 1000, rng))
    np.save(tmp_path / "b.npy", ellipsoid_surface(np.array([0.2, 0.5, 0.3]), 1000, rng))
    done = run_cli(
        "interpolate",
        tmp_path / "a.npy",
        tmp_path / "b.npy",
        "--steps",
        "3",
        "--out",
        tmp_path / "blend",
        "--model",
        tiny_model,
        "--resolution",
        "32",
        "--format",
        "stl",
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "blend").iterdir()) == [f"blend_00{i}.stl" for i in range(3)]


def test_bad_input_gives_one_clear_line_and_a_failing_status(tiny_model, tmp_path):
    (tmp_path / "bad.xyz").write_text("nan nan nan\n")
    done = run_cli("reconstruct", tmp_path / "bad.xyz", "--out", tmp_path / "x.obj", "--model", tiny_model)
    assert done.returncode == 1
    assert "no usable points" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.obj").exists()
    done = run_cli("reconstruct", tmp_path / "bad.xyz", "--out", tmp_path / "x.obj")
    assert done.returncode == 1 and "Traceback" not in done.stderr


def test_models_and_info(tiny_model, tmp_path):
    env = {**os.environ, "OCCNET_MODELS_PATH": str(tiny_model.parent)}
    listing = run_cli("models", "--json", env=env)
    assert listing.returncode == 0
    entry = next(e for e in json.loads(listing.stdout) if e["name"] == tiny_model.stem)
    assert entry["input_kind"] == "pointcloud" and entry["threshold"] == 0.5
    table = run_cli("models", env=env)
    assert tiny_model.stem in table.stdout
    info = run_cli("info")
    assert info.returncode == 0 and "torch" in info.stdout and "cpu" in info.stdout
