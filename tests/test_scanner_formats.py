"""Scanner formats and colour: each read from a file its own library writes, offsets honoured, colour kept."""

import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.errors import InputError
from backend.formats import SUPPORTED
from backend.inputs import PointCloudInput, load_observation
from backend.inputs.pcd import lzf_decompress

laspy = pytest.importorskip("laspy")
pye57 = pytest.importorskip("pye57")

DATA = Path(__file__).resolve().parent / "data"
OFFSET = np.array([512_345.0, 5_412_345.0, 310.0])  # UTM-like: metres, millimetres kept
N = 200


def cloud(seed: int = 0):
    """Points on a 1 mm grid near OFFSET (exactly what a 1 mm LAS scale stores), 8-bit colours, unit normals."""
    rng = np.random.default_rng(seed)
    millimetres = rng.integers(0, 20_000, (N, 3))
    colors = rng.integers(0, 256, (N, 3))
    normals = rng.normal(size=(N, 3))
    return millimetres, colors, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def las_file(path, millimetres, colors, wide=True):
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.offsets, header.scales = OFFSET, [0.001, 0.001, 0.001]
    las = laspy.LasData(header)
    las.x, las.y, las.z = (OFFSET + millimetres * 0.001).T
    for channel, values in zip(("red", "green", "blue"), colors.T, strict=True):
        setattr(las, channel, values * 257 if wide else values)  # 16-bit as the standard says, or 8-bit as many do
    las.write(path)


@pytest.mark.parametrize("suffix", [".las", ".laz"])
@pytest.mark.parametrize("wide", [True, False], ids=["16-bit", "8-bit"])
def test_las_and_laz_keep_georeferenced_millimetres_and_colour(tmp_path, suffix, wide):
    millimetres, colors, _ = cloud()
    las_file(tmp_path / f"scan{suffix}", millimetres, colors, wide)
    observation = load_observation(tmp_path / f"scan{suffix}")
    assert observation.points.dtype == np.float64
    np.testing.assert_allclose(observation.points - OFFSET, millimetres * 0.001, rtol=0, atol=1e-6)
    assert observation.colors.dtype == np.float32
    np.testing.assert_allclose(observation.colors, colors / 255, atol=1e-6)
    assert observation.normals is None


def test_e57_scans_are_placed_by_their_pose_with_colour(tmp_path):
    millimetres, colors, _ = cloud()
    local = millimetres * 0.001
    half = np.sqrt(0.5)
    rotation = np.array([half, 0, 0, half])  # 90 degrees about z: (x, y) -> (-y, x)
    invalid = np.zeros(N, np.int8)
    invalid[[3, 150]] = 1  # no return: left out
    path = str(tmp_path / "scan.e57")
    with pye57.E57(path, mode="w") as e57:
        for part, translation in ((slice(0, 120), OFFSET), (slice(120, N), OFFSET + [10, 0, 0])):
            data = {f"cartesian{a}": local[part, i].copy() for i, a in enumerate("XYZ")}
            data |= {f"color{c}": colors[part, i].astype(np.uint8) for i, c in enumerate(("Red", "Green", "Blue"))}
            data["cartesianInvalidState"] = invalid[part].copy()
            e57.write_scan_raw(data, rotation=rotation, translation=translation)
    observation = load_observation(path)
    turned = np.stack([-local[:, 1], local[:, 0], local[:, 2]], axis=1)
    expected = turned + OFFSET + np.where(np.arange(N)[:, None] >= 120, [10, 0, 0], 0)
    valid = invalid == 0
    assert observation.points.dtype == np.float64
    np.testing.assert_allclose(observation.points - OFFSET, expected[valid] - OFFSET, rtol=0, atol=1e-6)
    np.testing.assert_allclose(observation.colors, colors[valid] / 255, atol=1e-6)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_from_open3d_with_normals_and_colour(tmp_path, encoding):
    o3d = pytest.importorskip("open3d")
    millimetres, colors, normals = cloud()
    points = millimetres * 0.001 - 10
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(points)
    pcd.colors = o3d.utility.Vector3dVector(colors / 255)
    pcd.normals = o3d.utility.Vector3dVector(normals)
    path = str(tmp_path / "scan.pcd")
    assert o3d.io.write_point_cloud(
        path, pcd, write_ascii=encoding == "ascii", compressed=encoding == "binary_compressed"
    )
    assert f"DATA {encoding}".encode() in open(path, "rb").read(2048)
    observation = load_observation(path)
    np.testing.assert_allclose(observation.points, points, atol=1e-5)  # Open3D stores float32
    np.testing.assert_allclose(observation.normals, normals, atol=1e-5)
    np.testing.assert_allclose(observation.colors, colors / 255, atol=1e-6)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_files_open3d_wrote_read_without_open3d(encoding):
    """The same clouds as above, written once by Open3D 0.20 into tests/data (binary_compressed with LZF back
    references as well as literal runs), so the reader is tested where Open3D is not installed (CI)."""
    millimetres, colors, normals = cloud()
    observation = load_observation(DATA / f"open3d_{encoding}.pcd")
    np.testing.assert_allclose(observation.points, millimetres * 0.001 - 10, atol=1e-5)
    np.testing.assert_allclose(observation.normals, normals, atol=1e-5)
    np.testing.assert_allclose(observation.colors, colors / 255, atol=1e-6)


def pcd_bytes(fields, types, columns, data="binary"):
    """A PCD as PCL writes one: here with a float-packed `rgb` and an organised cloud's NaN placeholders."""
    count = len(columns[0])
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join('4' for _ in fields)}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join('1' for _ in fields)}\nWIDTH {count}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {count}\nDATA {data}\n"
    ).encode()
    record = np.dtype([(f, {"F": "<f4", "U": "<u4"}[t]) for f, t in zip(fields, types, strict=True)])
    table = np.zeros(count, record)
    for name, column in zip(fields, columns, strict=True):
        table[name] = column
    return header + table.tobytes()


def test_pcd_with_pcl_float_packed_rgb_and_nan_placeholders(tmp_path):
    millimetres, colors, _ = cloud()
    points = millimetres * 0.001
    points[:5] = np.nan  # an organised cloud's points without a return
    words = (colors[:, 0] << 16 | colors[:, 1] << 8 | colors[:, 2]).astype(np.uint32).view(np.float32)
    (tmp_path / "pcl.pcd").write_bytes(pcd_bytes("x y z rgb".split(), "FFFF", [*points.T, words]))
    observation = load_observation(tmp_path / "pcl.pcd")
    np.testing.assert_allclose(observation.points, points[5:], atol=1e-6)
    np.testing.assert_allclose(observation.colors, colors[5:] / 255, atol=1e-6)


def test_lzf_decoder_matches_a_known_stream():
    # literal run "abc", then a back reference of length 6 at distance 3 (an overlapping copy): "abcabcabc"
    assert lzf_decompress(bytes([2]) + b"abc" + bytes([(4 << 5) | 0, 2]), 9) == b"abcabcabc"
    with pytest.raises(ValueError, match="before its start"):
        lzf_decompress(bytes([(1 << 5), 9]), 3)


@pytest.mark.parametrize(
    "name, text",
    [
        ("spaced.xyz", "X Y Z R G B\n{rows}"),
        ("cloudcompare.txt", "//X,Y,Z,R,G,B\n{rows_comma}"),
        ("semicolon.csv", "x;y;z;red;green;blue\n{rows_semicolon}"),
        ("decimal-comma.csv", "X;Y;Z;R;G;B\n{rows_decimal_comma}"),
        ("bare.xyz", "{rows}"),
        ("fractions.txt", "//X,Y,Z,Rf,Gf,Bf\n{rows_fractions}"),
    ],
)
def test_text_clouds_with_headers_delimiters_and_colour(tmp_path, name, text):
    millimetres, colors, _ = cloud()
    points = OFFSET + millimetres * 0.001
    lines = [(p, c) for p, c in zip(points, colors, strict=True)]
    rows = {
        "rows": "".join(f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}\n" for (x, y, z), (r, g, b) in lines),
        "rows_comma": "".join(f"{x:.3f},{y:.3f},{z:.3f},{r},{g},{b}\n" for (x, y, z), (r, g, b) in lines),
        "rows_semicolon": "".join(f"{x:.3f};{y:.3f};{z:.3f};{r};{g};{b}\n" for (x, y, z), (r, g, b) in lines),
        "rows_decimal_comma": "".join(
            f"{x:.3f};{y:.3f};{z:.3f};{r};{g};{b}\n".replace(".", ",") for (x, y, z), (r, g, b) in lines
        ),
        "rows_fractions": "".join(
            f"{x:.3f},{y:.3f},{z:.3f},{r / 255:.6f},{g / 255:.6f},{b / 255:.6f}\n" for (x, y, z), (r, g, b) in lines
        ),
    }
    (tmp_path / name).write_text(text.format(**rows))
    observation = load_observation(tmp_path / name)
    np.testing.assert_allclose(observation.points - OFFSET, millimetres * 0.001, rtol=0, atol=1e-6)
    np.testing.assert_allclose(observation.colors, colors / 255, atol=1e-6)


def test_text_columns_after_xyz_that_are_unit_vectors_are_normals(tmp_path):
    millimetres, colors, normals = cloud()
    points = millimetres * 0.001
    np.savetxt(tmp_path / "normals.xyz", np.hstack([points, normals]))
    np.savetxt(tmp_path / "both.xyz", np.hstack([points, normals, colors]), fmt="%.9g")
    (tmp_path / "named.csv").write_text(
        "x,y,z,nx,ny,nz\n" + "".join(",".join(f"{v:.9g}" for v in row) + "\n" for row in np.hstack([points, normals]))
    )
    plain = load_observation(tmp_path / "normals.xyz")
    np.testing.assert_allclose(plain.normals, normals, atol=1e-9)
    assert plain.colors is None
    both = load_observation(tmp_path / "both.xyz")
    np.testing.assert_allclose(both.normals, normals, atol=1e-8)
    np.testing.assert_allclose(both.colors, colors / 255, atol=1e-6)
    named = load_observation(tmp_path / "named.csv")
    np.testing.assert_allclose(named.normals, normals, atol=1e-8)
    assert named.colors is None


def test_text_without_colour_keeps_none(tmp_path):
    cloud_points = np.random.default_rng(3).normal(size=(50, 3))
    np.savetxt(tmp_path / "a.xyz", np.hstack([cloud_points, np.full((50, 3), -2.0)]))  # negative: no colour
    observation = load_observation(tmp_path / "a.xyz")
    assert observation.colors is None and observation.normals is None


@pytest.mark.parametrize("encoding", ["ascii", "binary_little_endian"])
@pytest.mark.parametrize("kind", ["uchar", "ushort", "float"])
def test_ply_vertex_colour_and_normals_at_their_stored_precision(tmp_path, encoding, kind):
    millimetres, colors, normals = cloud()
    points = millimetres * 0.001
    dtype = {"uchar": "u1", "ushort": "<u2", "float": "<f4"}[kind]
    stored = {"uchar": colors, "ushort": colors * 257, "float": colors / 255}[kind]
    fields = [(a, "<f8") for a in "xyz"] + [(a, "<f4") for a in ("nx", "ny", "nz")]
    fields += [(c, dtype) for c in ("red", "green", "blue")]
    table = np.zeros(N, fields)
    for i, a in enumerate("xyz"):
        table[a] = points[:, i]
    for i, a in enumerate(("nx", "ny", "nz")):
        table[a] = normals[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        table[c] = stored[:, i]
    ply_type = {"<f8": "double", "<f4": "float", "u1": "uchar", "<u2": "ushort"}
    header = f"ply\nformat {encoding} 1.0\nelement vertex {N}\n"
    header += "".join(f"property {ply_type[t]} {name}\n" for name, t in fields) + "end_header\n"
    if encoding == "ascii":
        body = "".join(" ".join(repr(v.item()) for v in row) + "\n" for row in table).encode()
    else:
        body = table.tobytes()
    (tmp_path / "scan.ply").write_bytes(header.encode() + body)
    observation = load_observation(tmp_path / "scan.ply")
    np.testing.assert_allclose(observation.points, points, atol=1e-9)
    np.testing.assert_allclose(observation.normals, normals, atol=1e-6)
    np.testing.assert_allclose(observation.colors, colors / 255, atol=1e-6)


def test_a_mesh_with_vertex_colours_gives_its_samples_the_interpolated_colour(tmp_path):
    box = trimesh.creation.box((2, 2, 2))
    # colour from position: red = (x + 1) / 2, so a sample's interpolated red is (its x + 1) / 2 on every face
    red = (box.vertices[:, 0] + 1) / 2
    box.visual.vertex_colors = np.stack([red * 255, np.full(8, 128), np.zeros(8), np.full(8, 255)], 1).astype(np.uint8)
    box.export(tmp_path / "box.ply")
    observation = load_observation(tmp_path / "box.ply")
    assert isinstance(observation, PointCloudInput) and observation.colors.shape == (100_000, 3)
    np.testing.assert_allclose(observation.colors[:, 0], (observation.points[:, 0] + 1) / 2, atol=1 / 255)
    np.testing.assert_allclose(observation.colors[:, 1], 128 / 255, atol=1e-6)
    plain = trimesh.creation.box((2, 2, 2))
    plain.export(tmp_path / "plain.obj")
    assert load_observation(tmp_path / "plain.obj").colors is None


def test_a_mesh_with_face_colours_gives_each_sample_its_face_colour(tmp_path):
    box = trimesh.creation.box((2, 2, 2))
    box.visual.face_colors = np.where(box.face_normals[:, :1] > 0.5, [255, 0, 0, 255], [0, 0, 255, 255])
    box.export(tmp_path / "faces.ply")
    observation = load_observation(tmp_path / "faces.ply")
    on_plus_x = observation.points[:, 0] > 1 - 1e-9
    np.testing.assert_allclose(observation.colors[on_plus_x], [[1, 0, 0]] * on_plus_x.sum())
    assert (observation.colors[observation.points[:, 0] < 1 - 1e-6, 2] == 1).all()


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_a_textured_mesh_gives_its_samples_the_texture_colour(tmp_path, suffix):
    from PIL import Image

    box = trimesh.creation.box((2, 2, 2))
    box.unmerge_vertices()
    texture = np.zeros((8, 8, 3), np.uint8)
    texture[:, :4], texture[:, 4:] = [255, 0, 0], [0, 0, 255]  # u < 0.5 red, else blue; u = (x + 1) / 2
    uv = np.clip((box.vertices[:, :2] + 1) / 2, 0, 1)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    box.export(tmp_path / f"box{suffix}")
    observation = load_observation(tmp_path / f"box{suffix}")
    for side, color in ((observation.points[:, 0] < -0.9, [1, 0, 0]), (observation.points[:, 0] > 0.9, [0, 0, 1])):
        assert side.sum() > 1000 and np.abs(observation.colors[side] - color).max() < 1e-6


def test_new_formats_are_listed_as_supported():
    assert {".las", ".laz", ".e57", ".pcd"} <= set(SUPPORTED)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("garbage.las", b"not a las file at all" * 20, r"could not be read as a '\.las' file"),
        ("garbage.laz", b"\x00" * 400, r"could not be read as a '\.laz' file"),
        ("garbage.e57", b"ASTM-E57" + b"\x00" * 100, r"could not be read as a '\.e57' file"),
        ("garbage.pcd", b"hello\n", r"could not be read as a '\.pcd' file .*no DATA line"),
        ("noxyz.pcd", b"FIELDS a b c\nSIZE 4 4 4\nTYPE F F F\nPOINTS 0\nDATA ascii\n", "no x y z fields"),
        ("short.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 5\nDATA binary\n" + b"\0" * 20, "cut short"),
        ("header.xyz", b"X Y Z\n", "line 1 .* does not start with three numbers"),
    ],
)
def test_damaged_scanner_files_get_one_line_messages(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        load_observation(tmp_path / name)
    assert "\n" not in str(caught.value)


def test_truncated_files_of_each_new_type_are_refused(tmp_path):
    o3d = pytest.importorskip("open3d")
    millimetres, colors, normals = cloud()
    las_file(tmp_path / "whole.laz", millimetres, colors)
    las_file(tmp_path / "whole.las", millimetres, colors)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(millimetres * 0.001))
    o3d.io.write_point_cloud(str(tmp_path / "whole.pcd"), pcd, compressed=True)
    with pye57.E57(str(tmp_path / "whole.e57"), mode="w") as e57:
        e57.write_scan_raw({f"cartesian{a}": millimetres[:, i] * 0.001 for i, a in enumerate("XYZ")})
    for suffix in (".las", ".laz", ".pcd", ".e57"):
        data = (tmp_path / f"whole{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(InputError, match=r"could not be read|cut short") as caught:
            load_observation(tmp_path / f"cut{suffix}")
        assert "\n" not in str(caught.value), suffix


def test_a_missing_reader_package_names_the_package_and_the_fix(tmp_path, monkeypatch):
    millimetres, colors, _ = cloud()
    las_file(tmp_path / "scan.laz", millimetres, colors)
    monkeypatch.setattr(laspy.LazBackend, "detect_available", staticmethod(lambda: ()))
    with pytest.raises(InputError, match=r"needs the lazrs package, which is not installed: pip install lazrs"):
        load_observation(tmp_path / "scan.laz")
    monkeypatch.setitem(__import__("sys").modules, "pye57", None)  # as if not installed
    (tmp_path / "scan.e57").write_bytes(b"x")
    with pytest.raises(InputError, match=r"needs the pye57 package.*Install Backend"):
        load_observation(tmp_path / "scan.e57")


def test_binary_pcd_with_separate_uchar_channels(tmp_path):
    millimetres, colors, _ = cloud()
    points = (millimetres * 0.001).astype(np.float32)
    header = (
        f"VERSION .7\nFIELDS x y z r g b\nSIZE 4 4 4 1 1 1\nTYPE F F F U U U\nCOUNT 1 1 1 1 1 1\nWIDTH {N}\n"
        f"HEIGHT 1\nPOINTS {N}\nDATA binary\n"
    ).encode()
    table = np.zeros(N, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    for i, a in enumerate("xyz"):
        table[a] = points[:, i]
    for i, c in enumerate("rgb"):
        table[c] = colors[:, i]
    (tmp_path / "channels.pcd").write_bytes(header + table.tobytes())
    observation = load_observation(tmp_path / "channels.pcd")
    np.testing.assert_array_equal(observation.points, points.astype(np.float64))
    np.testing.assert_allclose(observation.colors, colors / 255, atol=1e-6)
    assert struct.calcsize("<fffBBB") == table.dtype.itemsize  # packed records, no padding


def test_las_and_pcd_read_where_the_built_in_engine_runs(tmp_path):
    """As in Blender with the extension zip: no PyTorch stack, laspy bundled, lazrs and pye57 absent."""
    import subprocess
    import sys
    from pathlib import Path

    millimetres, colors, _ = cloud()
    las_file(tmp_path / "scan.las", millimetres, colors)
    las_file(tmp_path / "scan.laz", millimetres, colors)
    points = (millimetres * 0.001).astype(np.float32)
    (tmp_path / "scan.pcd").write_bytes(pcd_bytes("x y z".split(), "FFF", list(points.T)))
    script = f"""
import sys
BLOCKED = {{"torch", "scipy", "skimage", "lazrs", "pye57", "open3d"}}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(name)  # as for a package that is not installed
sys.meta_path.insert(0, Blocker())
from backend.errors import InputError
from backend.inputs import load_observation
folder = {str(tmp_path)!r}
print(len(load_observation(folder + "/scan.las").points), len(load_observation(folder + "/scan.pcd").points))
for name in ("scan.laz", "scan.e57"):
    try:
        load_observation(folder + "/" + name)
    except InputError as error:
        print(error)
"""
    (tmp_path / "scan.e57").write_bytes(b"x")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{N} {N}"
    assert "needs the lazrs package" in lines[1] and "needs the pye57 package" in lines[2]
