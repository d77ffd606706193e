"""The held-out closed objects: readers for the packages' formats, and a set that is held out as a whole."""

import base64
import gzip
import importlib.util
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.data.mesh_readers import MeshFormatError, read_3ds, read_dcm, read_gifti, reader_for

BALL = trimesh.creation.icosphere(2)  # 320 faces, closed
RING = trimesh.creation.torus(1.0, 0.3, major_sections=24, minor_sections=12)


def _chunk(kind: int, payload: bytes) -> bytes:
    return struct.pack("<HI", kind, 6 + len(payload)) + payload


def _3ds(*meshes: trimesh.Trimesh) -> bytes:
    objects = b""
    for i, mesh in enumerate(meshes):
        vertices = _chunk(0x4110, struct.pack("<H", len(mesh.vertices)) + mesh.vertices.astype("<f4").tobytes())
        faces = np.c_[mesh.faces, np.zeros(len(mesh.faces))].astype("<u2")
        faces = _chunk(0x4120, struct.pack("<H", len(mesh.faces)) + faces.tobytes() + _chunk(0x4150, b"\0" * 8))
        matrix = _chunk(0x4160, np.eye(4, 3, dtype="<f4").tobytes())
        objects += _chunk(0x4000, f"part{i}\0".encode() + _chunk(0x4100, vertices + matrix + faces))
    return _chunk(0x4D4D, _chunk(0x0002, b"\3\0\0\0") + _chunk(0x3D3D, objects))


def _gifti(mesh: trimesh.Trimesh, encoding: str) -> bytes:
    def array(intent: str, values: np.ndarray, kind: str) -> str:
        raw = values.tobytes()
        data = {
            "ASCII": " ".join(map(str, values.ravel())),
            "Base64Binary": base64.b64encode(raw).decode(),
            "GZipBase64Binary": base64.b64encode(zlib.compress(raw)).decode(),
        }[encoding]
        return (
            f'<DataArray Intent="{intent}" DataType="{kind}" ArrayIndexingOrder="RowMajorOrder" Dimensionality="2" '
            f'Dim0="{len(values)}" Dim1="3" Encoding="{encoding}" Endian="LittleEndian"><Data>{data}</Data></DataArray>'
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?><GIFTI Version="1.0" NumberOfDataArrays="2">'
        + array("NIFTI_INTENT_POINTSET", mesh.vertices.astype("<f4"), "NIFTI_TYPE_FLOAT32")
        + array("NIFTI_INTENT_TRIANGLE", mesh.faces.astype("<i4"), "NIFTI_TYPE_INT32")
        + "</GIFTI>"
    ).encode()


def test_3ds_files_give_every_object_in_place():
    ring = RING.copy()
    ring.apply_translation([3, 0, 0])
    mesh = read_3ds(_3ds(BALL, ring))
    assert len(mesh.faces) == len(BALL.faces) + len(RING.faces)
    mesh.merge_vertices()
    assert mesh.is_watertight and len(mesh.split()) == 2
    assert mesh.volume == pytest.approx(BALL.volume + RING.volume, rel=1e-5)
    np.testing.assert_allclose(mesh.bounds, [[-1, -1.3, -1], [4.3, 1.3, 1]], atol=1e-5)
    with pytest.raises(MeshFormatError):
        read_3ds(b"not a 3ds file")


def test_dreamchess_meshes_read_triangles_and_strips():
    # A square pyramid: the base as a strip of two triangles, the four sides as triangles.
    vertices = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0.5, 0.5, 1]]
    sides = [0, 1, 4, 1, 3, 4, 3, 2, 4, 2, 0, 4]
    base = [1, 0, 3, 2]  # the strip's second triangle is turned, so both face down, outwards
    tokens = ["DCM", "0100", "5"] + [str(c) for v in vertices for c in v] + ["0"] * (5 * 5)
    tokens += ["2", "TRIANGLES", str(len(sides))] + list(map(str, sides)) + ["STRIP", "4"] + list(map(str, base))
    mesh = read_dcm("\n".join(tokens).encode())
    assert len(mesh.faces) == 6 and mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(1 / 3)
    with pytest.raises(MeshFormatError):
        read_dcm(b"OFF\n3 1 0\n")


@pytest.mark.parametrize("encoding", ["ASCII", "Base64Binary", "GZipBase64Binary"])
def test_gifti_surfaces(encoding):
    data = _gifti(BALL, encoding)
    for blob in (data, gzip.compress(data)):
        mesh = read_gifti(blob)
        np.testing.assert_allclose(mesh.vertices, BALL.vertices, atol=1e-6)
        np.testing.assert_array_equal(mesh.faces, BALL.faces)


def test_readers_go_by_the_file_ending():
    assert reader_for("models/Horse.3DS") is read_3ds and reader_for("pial_left.gii.gz") is read_gifti
    assert reader_for("a.obj") is None and reader_for("a.gz") is None


@pytest.fixture
def script(monkeypatch):
    path = Path(__file__).resolve().parents[1] / "scripts" / "prepare_real_meshes.py"
    spec = importlib.util.spec_from_file_location("prepare_real_meshes", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_closed_set_holds_every_object_out_with_exact_labels(tmp_path, script):
    """Converted from the package's formats, every object in val or test (none in train), and listed."""
    knot = trimesh.creation.torus(1.0, 0.25)
    grid = trimesh.creation.box().subdivide().subdivide().subdivide()
    sheet = grid.submesh([grid.face_normals[:, 2] > 0.9], append=True)  # an open square: no inside
    sheet.apply_transform(trimesh.transformations.rotation_matrix(0.5, [1, 1, 0]))
    members = {
        "toy/models/ball.3ds": _3ds(BALL),
        "toy/models/ring.gii.gz": gzip.compress(_gifti(RING, "GZipBase64Binary")),
        "toy/models/knot.off": trimesh.exchange.off.export_off(knot).encode(),
        "toy/models/box.stl": trimesh.exchange.stl.export_stl(trimesh.creation.box((1, 2, 3)).subdivide().subdivide()),
        "toy/models/sheet.obj": trimesh.exchange.obj.export_obj(sheet).encode(),
        "toy/models/broken.3ds": b"\x4d\x4d\x06\x00\x00\x00",
        "toy/models/bunny.3ds": _3ds(BALL),  # a reserved name: never a candidate
        "toy/other/skipped.3ds": _3ds(BALL),  # not a member the source asks for
    }
    (tmp_path / "cache").mkdir()
    with zipfile.ZipFile(tmp_path / "cache" / "toy-1-py3-none-any.whl", "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    source = script.Source("toy", "pip", "toy", "1", r"models/.*", "toy/models/", script.stem_group, 0.5, 0.5, "MIT")
    args = script.parse_args(
        ["--set", "closed", "--cache", str(tmp_path / "cache"), "--raw", str(tmp_path / "raw")]
        + ["--out", str(tmp_path / "closed"), "--test-points", "3000", "--test-near", "500"]
    )
    for split in script.SPLITS:
        row = script.prepare_source(source, args, (split,), exact=("val", "test"))
    out = tmp_path / "closed" / "toy"
    lists = {s: (out / f"{s}.lst").read_text().split() for s in script.SPLITS}
    assert lists["train"] == [] and sorted(lists["val"] + lists["test"]) == ["ball", "box", "knot", "ring"]
    assert lists["val"] and lists["test"]  # these names fall on both sides of the hash
    assert row["skipped"]["reserved name"] == 1 and not (tmp_path / "raw" / "toy" / "other").exists()
    index = json.loads((out / "index.json").read_text())
    assert index["sheet"]["reason"] in ("no volume inside", "ambiguous winding")
    assert "broken" not in index  # could not be converted: named on extraction, no candidate
    with np.load(out / "ring" / "points.npz") as data:
        assert data["points"].shape == (3500, 3) and int(data["n_uniform"]) == 3000  # the test budget
    origins = json.loads((tmp_path / "raw" / "toy" / "members.json").read_text())
    assert origins["ring.obj"] == "toy/models/ring.gii.gz" and origins["box.stl"] == "toy/models/box.stl"
    listing = tmp_path / "closed-objects.txt"
    script.write_list(listing, [source], args, {"pkg": "why"})
    lines = [line for line in listing.read_text().splitlines() if not line.startswith("#") and line]
    assert len(lines) == 4 and all(line.split()[0] in ("val", "test") for line in lines)
    assert any("toy/ball: ball" in line and "toy/models/ball.3ds" in line and "| MIT" in line for line in lines)
