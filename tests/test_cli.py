import errno
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from commands import run_cli
from fitting import ellipsoid_surface
from scipy.spatial import cKDTree

import backend
from backend.api import Latent
from backend.cli import main
from backend.device import describe_devices, resolve_device
from backend.metrics import mesh_contains
from backend.outputs import atomic_write
from backend.surface.mesh import Mesh

ROOT = Path(__file__).resolve().parents[1]


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
    latent = Latent.load(tmp_path / "scan_latent.npz")  # where the scan was, to blend or re-mesh it later
    np.testing.assert_allclose(latent.frame.center, [10, 0, -3], atol=0.1)
    assert latent.frame.scale == pytest.approx(4.0, rel=0.05) and latent.model == tiny_model.stem


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
    extent = [np.ptp(trimesh.load(tmp_path / "blend" / f"blend_00{i}.stl").vertices, axis=0) for i in range(3)]
    ratio = [x / y for x, y, _ in extent]  # a is long along X, b along Y
    assert ratio[0] > 1.5 and ratio[2] < 0.7 and ratio[2] + 0.2 < ratio[1] < ratio[0] - 0.2, ratio
    assert [line.split(": ")[1].split(",")[0] for line in done.stdout.splitlines()] == ["t=0.000", "t=0.500", "t=1.000"]


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
    entries = {e["name"]: e for e in json.loads(listing.stdout)}
    assert {"triplane-pointcloud", "onet-pointcloud", "onet-image", tiny_model.stem} <= set(entries)
    tiny = entries[tiny_model.stem]
    assert tiny["input_kind"] == "pointcloud" and tiny["threshold"] == 0.5 and tiny["evaluation"] == {}
    assert tiny["size_mb"] == round(tiny_model.stat().st_size / 1e6, 2)
    table = run_cli("models", env=env)
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert rows.keys() == entries.keys()
    for name, entry in entries.items():  # each model's own kind, threshold and scores, on its own row
        row = rows[name].split()
        assert row[1] == entry["input_kind"] and row[3] == f"{entry['threshold']:.2f}", rows[name]
        if "test_iou" in entry["evaluation"]:
            assert f"test_iou {entry['evaluation']['test_iou']};" in rows[name]
    assert rows[tiny_model.stem].endswith("not evaluated")

    info = run_cli("info")
    assert info.returncode == 0
    lines = info.stdout.splitlines()
    assert lines[0] == f"occnet backend {backend.__version__}"
    assert lines[1] == f"python {platform.python_version()} ({sys.executable})"
    assert lines[2] == f"torch {torch.__version__}, default device {resolve_device('auto')}"
    assert lines[3] == f"devices: {', '.join(describe_devices())}"
    if not torch.cuda.is_available():
        assert lines[2].endswith("default device cpu") and lines[3] == "devices: cpu"


# --- Outputs: never over an input, checked before any work, written atomically -------------------------------


def _main(capsys, *args) -> tuple[int, str, float]:
    """The CLI in this process (fast): exit status, stderr, seconds."""
    start = time.perf_counter()
    status = main([str(a) for a in args])
    return status, capsys.readouterr().err, time.perf_counter() - start


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def scan(tmp_path):
    cloud = ellipsoid_surface(np.full(3, 0.5), 2000, np.random.default_rng(0))
    trimesh.PointCloud(cloud).export(tmp_path / "scan.ply")
    np.savez(tmp_path / "cloud.npz", points=cloud)
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ("reconstruct", "scan.ply", "--out", "scan.ply"),
        ("reconstruct", "scan.ply", "--out", "sub/../scan.ply"),
        ("reconstruct", "scan.ply", "--out", "hardlink.ply"),
        ("reconstruct", "cloud.npz", "--out", "mesh.obj", "--save-latent", "cloud.npz"),
        ("interpolate", "blend/blend_000.ply", "scan.ply", "--out", "blend", "--format", "ply", "--steps", "2"),
    ],
    ids=["same-name", "other-spelling", "hard-link", "latent-over-input", "interpolate-into-input"],
)
def test_no_command_writes_over_its_input(tiny_model, scan, capsys, monkeypatch, args):
    monkeypatch.chdir(scan)
    (scan / "sub").mkdir()
    (scan / "blend").mkdir()
    os.link(scan / "scan.ply", scan / "hardlink.ply")
    (scan / "blend" / "blend_000.ply").write_bytes((scan / "scan.ply").read_bytes())
    before = {p: p.read_bytes() for p in scan.rglob("*") if p.is_file()}
    status, err, seconds = _main(capsys, *args, "--model", tiny_model, "--resolution", "32")
    assert status == 1
    assert "is also an input" in _one_line(err)
    assert seconds < 1.0  # refused before the model loads or anything is computed
    assert {p: p.read_bytes() for p in scan.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("reconstruct", "scan.ply", "--out", "a" * 250 + ".obj"), "the name is too long for the file system"),
        (("reconstruct", "loop1", "--out", "m.obj"), "loop1: a link that leads nowhere (or a loop of links)"),
        (("data", "procedural", "--out", "afile", "--train", "1"), "--out afile: is a file"),
        (("data", "rooms", "--out", "afile"), "--out afile: is a file"),
        (("data", "meshes", ".", "--out", "afile"), "--out afile: is a file"),
        (("data", "procedural", "--out", "d", "--categories", "nosuch"), "Unknown categories nosuch; choose from"),
        (("data", "procedural", "--out", "d", "--workers", "0"), "--workers must be at least 1"),
        (("data", "procedural", "--out", "d", "--train", "-1"), "Shape counts must be 0 or more"),
    ],
    ids=["name-too-long", "link-loop", "data-out-file", "rooms-out-file", "meshes-out-file", "no-such-category",
         "no-workers", "negative-count"],
)  # fmt: skip
def test_bad_arguments_get_one_line_before_any_work(tiny_model, scan, capsys, monkeypatch, args, message):
    monkeypatch.chdir(scan)
    (scan / "afile").write_text("a file")
    os.symlink("loop2", scan / "loop1")
    os.symlink("loop1", scan / "loop2")
    before = sorted(p.name for p in scan.iterdir())
    status, err, _ = _main(capsys, *args, *(("--model", tiny_model) if args[0] == "reconstruct" else ()))
    assert status == 1 and message in _one_line(err)
    assert sorted(p.name for p in scan.iterdir()) == before and (scan / "afile").read_text() == "a file"


def test_a_full_disk_is_one_line_and_replaces_nothing(tiny_model, scan, capsys, monkeypatch):
    monkeypatch.chdir(scan)
    (scan / "mesh.obj").write_text("an earlier result")

    def full_disk(self, path):
        with atomic_write(path) as partial:
            partial.write_text("half a me")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(partial))

    monkeypatch.setattr(Mesh, "save", full_disk)
    status, err, _ = _main(capsys, "reconstruct", "scan.ply", "--out", "mesh.obj", "--model", tiny_model)
    assert status == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "error: mesh.obj: No space left on device; no file was replaced."
    assert (scan / "mesh.obj").read_text() == "an earlier result" and not list(scan.glob("*partial*"))


def test_a_latent_is_written_to_exactly_the_file_named(tiny_model, scan, capsys, monkeypatch):
    monkeypatch.chdir(scan)
    (scan / "cloud.npz").rename(scan / "scan.NPZ.npz")
    before = (scan / "scan.NPZ.npz").read_bytes()
    args = ("reconstruct", "scan.NPZ.npz", "--out", "mesh.obj", "--save-latent", "scan.NPZ")
    status, err, _ = _main(capsys, *args, "--model", tiny_model, "--resolution", "32")
    assert status == 0, err
    assert (scan / "scan.NPZ.npz").read_bytes() == before
    assert Latent.load(scan / "scan.NPZ").model == Path(tiny_model).stem


@pytest.mark.parametrize(
    "out, latent, message",
    [
        ("old.xyz", None, "cannot write '.xyz' meshes"),
        ("result", None, "cannot write 'result' meshes"),
        ("folder.obj", None, "is a folder"),
        ("folder", None, "is a folder"),
        ("afile/result.obj", None, "cannot write into"),
        ("result.obj", "afile/latent.npz", "cannot write into"),
        ("result.obj", "latent.txt", "saved as .npz"),
    ],
    ids=["xyz", "no-suffix", "folder", "bare-folder", "parent-is-a-file", "latent-parent-is-a-file", "latent-not-npz"],
)
def test_an_output_that_cannot_be_written_fails_at_once(tiny_model, scan, capsys, monkeypatch, out, latent, message):
    monkeypatch.chdir(scan)
    (scan / "folder.obj").mkdir()
    (scan / "folder").mkdir()
    (scan / "afile").write_text("a file, not a folder")
    (scan / "old.xyz").write_text("1 2 3\n")
    latent_args = ("--save-latent", latent) if latent else ()
    status, err, seconds = _main(capsys, "reconstruct", "scan.ply", "--out", out, *latent_args, "--model", tiny_model)
    assert status == 1
    assert message in _one_line(err)
    assert seconds < 1.0
    assert (scan / "old.xyz").read_text() == "1 2 3\n"
    assert not (scan / "result.obj").exists()


def test_outputs_go_into_new_folders_and_replace_an_earlier_result(tiny_model, scan, capsys, monkeypatch):
    monkeypatch.chdir(scan)
    (scan / "out").mkdir()
    (scan / "out" / "mesh.obj").write_text("an earlier result")
    status, err, _ = _main(
        capsys, "reconstruct", "scan.ply", "--out", "out/mesh.obj", "--save-latent", "new/folder/scan.npz",
        "--model", tiny_model, "--resolution", "32",
    )  # fmt: skip
    assert status == 0, err
    assert len(trimesh.load(scan / "out" / "mesh.obj").faces) > 100
    assert Latent.load(scan / "new" / "folder" / "scan.npz").model == tiny_model.stem
    assert sorted(p.name for p in (scan / "out").iterdir()) == ["mesh.obj"]  # no temporary file left behind


def test_a_failed_export_leaves_the_existing_file_as_it_was(tmp_path):
    (tmp_path / "mesh.stl").write_bytes(b"the user's mesh")
    broken = Mesh(np.zeros((3, 3)), np.array([[0, 1, 7]]))  # a face past the vertices: the STL writer fails
    with pytest.raises(IndexError):
        broken.save(tmp_path / "mesh.stl")
    assert (tmp_path / "mesh.stl").read_bytes() == b"the user's mesh"
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.stl"]


def test_an_interrupted_write_leaves_the_existing_file_as_it_was(tmp_path):
    target = tmp_path / "scan_latent.npz"
    target.write_bytes(b"earlier")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as partial:
        partial.write_bytes(b"half a fi")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == [target.name]
    with atomic_write(target) as partial:
        partial.write_bytes(b"complete")
    assert target.read_bytes() == b"complete" and [p.name for p in tmp_path.iterdir()] == [target.name]


TERMINATED = """
import os, signal, sys
from pathlib import Path
from backend.outputs import atomic_write, terminate_as_interrupt
target = Path(sys.argv[1])
with terminate_as_interrupt(), atomic_write(target) as partial:
    partial.write_bytes(b"half a fi")
    os.kill(os.getpid(), signal.SIGTERM)  # a pipeline stops the command while it writes
    partial.write_bytes(b"never reached")
"""


def test_a_terminated_write_leaves_the_existing_file_and_no_temporary(tmp_path):
    target = tmp_path / "mesh.obj"
    target.write_bytes(b"earlier")
    done = subprocess.run([sys.executable, "-c", TERMINATED, str(target)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    assert target.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_face_budget_below_a_closed_mesh_is_refused(tiny_model, scan, capsys):
    status, err, seconds = _main(
        capsys, "reconstruct", scan / "scan.ply", "--out", scan / "m.obj", "--faces", "1", "--model", tiny_model,
        "--resolution", "32",
    )  # fmt: skip
    assert status == 1
    assert "too small" in _one_line(err) and "4 or more" in err
    assert seconds < 1.0
    assert not (scan / "m.obj").exists()


def test_a_saved_latent_is_meshed_again_as_a_fresh_run_would(tiny_model, scan, capsys, monkeypatch):
    """Re-extracting at new settings needs no encoder: the same settings give the same mesh as the first run."""
    monkeypatch.chdir(scan)
    common = ("--model", tiny_model, "--resolution", "64", "--threshold", "0.4")
    assert _main(capsys, "reconstruct", "scan.ply", "--out", "first.ply", "--save-latent", "scan.npz", *common)[0] == 0
    assert _main(capsys, "reconstruct", "scan.npz", "--out", "again.ply", *common)[0] == 0
    first, again = (trimesh.load(name, process=False) for name in ("first.ply", "again.ply"))
    np.testing.assert_array_equal(first.faces, again.faces)
    np.testing.assert_allclose(first.vertices, again.vertices, atol=1e-9)
    assert _main(capsys, "reconstruct", "scan.npz", "--out", "finer.ply", "--model", tiny_model)[0] == 0
    assert len(trimesh.load("finer.ply").faces) > 2 * len(first.faces)  # resolution 128 by default


@pytest.mark.parametrize("suffix", ["glb", "gltf"])
def test_gltf_keeps_a_georeferenced_result_to_the_millimetre(tmp_path, suffix):
    """glTF stores float32 vertices: the mesh sits around its own centre, the node's translation holds the rest."""
    sphere = trimesh.creation.icosphere(3)
    vertices = sphere.vertices * 2.0 + [512_345.678, 5_400_000.123, 12.5]
    path = Mesh(vertices, sphere.faces).save(tmp_path / f"scan.{suffix}")
    loaded = trimesh.load(path, process=False).to_geometry()
    np.testing.assert_allclose(loaded.vertices, vertices, rtol=0, atol=1e-3)


def test_a_coloured_ply_scan_gives_a_coloured_mesh(tiny_model, tmp_path):
    """Each output vertex carries the colour of the scan near it: within a small distance of the nearest input
    point's, read back from the PLY written."""
    cloud = ellipsoid_surface(np.full(3, 0.5), 3000, np.random.default_rng(0)) * 2.0 + [100.0, 20.0, 5.0]
    colors = np.clip((cloud - cloud.min(axis=0)) / np.ptp(cloud, axis=0) * 255, 0, 255).astype(np.uint8)  # a gradient
    trimesh.PointCloud(cloud, colors=colors).export(tmp_path / "scan.ply")
    done = run_cli("reconstruct", tmp_path / "scan.ply", "--out", tmp_path / "mesh.ply", "--model", tiny_model)
    assert done.returncode == 0, done.stderr
    mesh = trimesh.load(tmp_path / "mesh.ply", process=False)
    got = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(float)
    nearest = colors[cKDTree(cloud).query(mesh.vertices)[1]]
    assert np.abs(got - nearest).mean() < 6 and np.percentile(np.abs(got - nearest), 95) < 20


def test_reference_pictures_with_their_views_become_one_object(tmp_path, capsys):
    """A blueprint from the command line: front, side and top pictures of a cylinder, one --view each; a count that
    does not match, or a view given to a scan, is one line naming the fix."""
    from PIL import Image
    from reference_pictures import pictures_of

    from backend.metrics import solid_iou

    box = trimesh.creation.cylinder(radius=0.15, height=0.4, sections=64)
    names = []
    for name, (pixels, _) in zip(("front", "side", "top"), pictures_of(box, ["front", "side", "top"]), strict=True):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        names.append(str(tmp_path / f"{name}.png"))
    out = tmp_path / "box.obj"
    status = main(["reconstruct", *names, "--view", "front", "side", "top", "--out", str(out), "--resolution", "64"])
    assert status == 0 and "3 reference images" in capsys.readouterr().out
    mesh = trimesh.load(out, force="mesh")
    assert solid_iou((mesh.vertices, mesh.faces), (box.vertices, box.faces)) >= 0.85
    status, err, _ = _main(capsys, "reconstruct", *names, "--view", "front", "side", "--out", str(out))
    assert status == 1 and "Give one --view per image: 3 image(s), 2 view(s)" in _one_line(err)
    np.savetxt(tmp_path / "scan.xyz", box.sample(500))
    status, err, _ = _main(capsys, "reconstruct", str(tmp_path / "scan.xyz"), "--view", "front", "--out", str(out))
    assert status == 1 and "--view is for images" in _one_line(err)
