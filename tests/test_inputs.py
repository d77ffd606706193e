import json
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend import load_model
from backend.api import Latent
from backend.errors import InputError, ModelLoadError
from backend.inputs import ImageInput, PointCloudInput, VoxelInput, load_observation
from backend.inputs.image import MAX_IMAGE_SIDE, fit_square, object_mask, prepare_image, to_rgb_and_alpha
from backend.inputs.pointcloud import normalize_points
from backend.protocol import input_summary
from backend.registry import default_model
from backend.surface.frame import Frame


def test_normalisation_centres_and_scales_the_bounding_box():
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-1, 1, (5000, 3)) * [3, 1, 2] + [10, -5, 7]
    points, frame, dropped = normalize_points(cloud, 300)
    assert points.shape == (300, 3) and points.dtype == np.float32 and dropped == 0
    assert np.abs(points).max() <= 0.5 + 1e-6
    assert frame.scale == pytest.approx(6.0, rel=1e-2)
    np.testing.assert_allclose(frame.center, [10, -5, 7], atol=0.05)


def test_tiny_and_huge_clouds_become_the_encoder_size():
    assert normalize_points(np.array([[0, 0, 0], [1, 1, 1.0]]), 300)[0].shape == (300, 3)
    huge = np.random.default_rng(0).normal(size=(10_000_000, 3)).astype(np.float32)
    assert normalize_points(huge, 300)[0].shape == (300, 3)


def test_non_finite_points_are_dropped_and_counted():
    cloud = np.random.default_rng(0).normal(size=(100, 3))
    cloud[:10, 0] = np.nan
    cloud[10:12, 2] = np.inf
    assert normalize_points(cloud, 300)[2] == 12


@pytest.mark.parametrize(
    "cloud, message",
    [
        (np.full((1, 3), 2.0), "same place"),
        (np.ones((500, 3)), "same place"),
        (np.full((5, 3), np.nan), "no usable points"),
        (np.zeros((0, 3)), "no usable points"),
        (np.zeros((10, 2)), r"\(N, 3\)"),
        (np.ones((3000, 3), bool), "this array holds true/false values"),
        (np.full((10, 3), "1.0"), "this array holds text"),
        (np.random.default_rng(0).random((3, 500)), r"looks transposed .* save array.T, shape \(500, 3\)"),
        (np.random.default_rng(0).random((3000, 3)).astype(np.float32) + 1e7, "store them as float64"),
    ],
    ids=["one-point", "identical", "all-nan", "empty", "2d", "bool", "text", "transposed", "float32-far-away"],
)
def test_unusable_clouds_get_clear_messages(cloud, message):
    with pytest.raises(InputError, match=message):
        normalize_points(cloud, 300)


def test_a_small_object_far_from_the_origin_in_float64_is_a_shape():
    cloud = np.random.default_rng(0).random((3000, 3)) * 0.006 + 1e7  # 6 mm, georeferenced
    canonical, frame, _ = normalize_points(cloud, 300)
    assert np.ptp(canonical, axis=0).max() > 0.9 and frame.scale < 0.01


def test_collinear_and_planar_clouds_are_accepted():
    t = np.linspace(0, 1, 200)
    line = np.stack([t, 2 * t, 3 * t], axis=1)
    plane = np.random.default_rng(0).uniform(size=(200, 3)) * [1, 1, 0]
    for cloud in (line, plane):
        points, frame, _ = normalize_points(cloud, 300)
        assert np.isfinite(points).all() and frame.scale > 0


def test_point_cloud_files(tmp_path):
    cloud = np.random.default_rng(1).normal(size=(1000, 3))
    np.savetxt(tmp_path / "a.xyz", cloud, header="x y z")
    np.save(tmp_path / "a.npy", cloud)
    np.savez(tmp_path / "a.npz", points=cloud, normals=cloud)
    trimesh.PointCloud(cloud).export(tmp_path / "a.ply")
    for name in ("a.xyz", "a.npy", "a.npz", "a.ply"):
        observation = load_observation(tmp_path / name)
        assert isinstance(observation, PointCloudInput)
        np.testing.assert_allclose(observation.points[:, :3], cloud, rtol=1e-5, atol=1e-5)


def test_pts_count_line_and_csv_header_are_skipped(tmp_path):
    """Scanner exports: a .pts starts with the point count (then x y z intensity r g b), a .csv with a header."""
    cloud = np.random.default_rng(2).normal(size=(50, 3))
    extra = np.hstack([cloud, np.full((50, 4), 7.0)])
    np.savetxt(tmp_path / "leica.pts", extra, header="50", comments="")
    np.savetxt(tmp_path / "plain.pts", cloud)
    np.savetxt(tmp_path / "excel.csv", cloud, delimiter=",", header="X,Y,Z", comments="")
    (tmp_path / "spaced.csv").write_text(
        "x, y, z, nx, ny, nz\r\n" + "".join(f"{a}, {b}, {c}, 0, 0, 1\r\n" for a, b, c in cloud)
    )
    np.savetxt(tmp_path / "plain.csv", cloud, delimiter=",")
    for name in ("leica.pts", "plain.pts", "excel.csv", "spaced.csv", "plain.csv"):
        np.testing.assert_allclose(load_observation(tmp_path / name).points[:, :3], cloud, atol=1e-6, err_msg=name)


def test_mesh_files_are_sampled_on_their_surface(tmp_path):
    trimesh.creation.box((2, 2, 2)).export(tmp_path / "box.obj")
    observation = load_observation(tmp_path / "box.obj")
    assert len(observation.points) == 100_000
    assert np.allclose(np.abs(observation.points).max(axis=1), 1.0, atol=1e-6)


def test_voxel_arrays(tmp_path):
    centres = (np.indices((32, 32, 32)) + 0.5) / 32 - 0.5
    grid = (centres**2).sum(axis=0) <= 0.3**2  # a ball in the unit cube the grid covers
    np.save(tmp_path / "v.npy", grid)
    np.savez(tmp_path / "v.npz", occupancies=grid)
    for name in ("v.npy", "v.npz"):
        observation = load_observation(tmp_path / name)
        assert isinstance(observation, VoxelInput)
        np.testing.assert_array_equal(observation.grid, grid)  # the cells as stored, not re-ordered or resampled
    with pytest.raises(InputError, match="No shipped model reads voxel grids: train one"):
        load_model(default_model("pointcloud")).encode(str(tmp_path / "v.npy"))
    with pytest.raises(ModelLoadError, match="No shipped model reconstructs from voxels"):
        default_model("voxels")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("scan.fbx", b"x", "unsupported file type"),
        ("broken.png", b"not a png", "could not be read"),
        ("empty.xyz", b"# nothing\n", "no points"),
        ("weird.npy", None, "neither a point cloud"),
        ("two.xyz", b"0.1 0.2\n0.3 0.4\n", "line 1 holds 2 numbers; every line needs x y z"),
        ("ragged.xyz", b"1 2 3\n4 5\n6 7 8\n", "line 2 holds 2 numbers"),
        ("latent.npz", "latent", "a saved latent .* not a point cloud"),
    ],
)
def test_bad_files_get_clear_messages(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((4, 5, 6)))
    elif content == "latent":
        Latent(np.ones(8, np.float32), "some-model", Frame()).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_observation(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_observation(tmp_path / "nope.ply")
    with pytest.raises(InputError, match="folder"):
        load_observation(tmp_path)


@pytest.mark.parametrize(
    "mode, shape, dtype",
    [
        ("RGB", (40, 90, 3), np.uint8),
        ("RGBA", (300, 200, 4), np.uint8),
        ("L", (17, 23), np.uint8),
        ("I;16", (64, 64), np.uint16),
        ("LA", (50, 50, 2), np.uint8),
    ],
)
def test_image_files_of_any_format_become_the_encoder_input(tmp_path, mode, shape, dtype):
    pixels = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    if mode in ("RGBA", "LA"):
        pixels[..., -1] = 0
        pixels[10:30, 10:30, -1] = np.iinfo(dtype).max
    else:  # no alpha: the object on a plain backdrop
        frame = np.ones(pixels.shape[:2], bool)
        frame[4:-4, 4:-4] = False
        pixels[frame] = 0
    Image.fromarray(pixels, mode=mode if mode != "I;16" else None).save(tmp_path / "img.png")
    observation = load_observation(tmp_path / "img.png")
    assert isinstance(observation, ImageInput)
    tensor, source = prepare_image(observation.pixels, 64, background=1.0, mean=0.5, std=0.5)
    assert source["mask"] == ("alpha" if mode in ("RGBA", "LA") else "border")
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    assert -1.0 - 1e-5 <= tensor.min() and tensor.max() <= 1.0 + 1e-5


def test_alpha_is_the_object_mask():
    pixels = np.zeros((100, 100, 4), np.uint8)
    pixels[40:60, 40:60] = [0, 0, 0, 255]  # a black square, everything else transparent
    tensor, _ = prepare_image(pixels, 32, background=1.0, mean=0.0, std=1.0)
    assert tensor[:, 0, 0].min() == pytest.approx(1.0)  # background where alpha is zero
    assert tensor[:, 16, 16].max() == pytest.approx(0.0)  # the object fills the centre after the crop


def _photo_of_a_disk(side: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB 'photo': a dark red disk on an off-white backdrop with a vignette and sensor noise, and the disk."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side] / side - 0.5
    disk = x**2 + (y - 0.05) ** 2 < 0.3**2
    backdrop = 0.93 - 0.08 * (x**2 + y**2)  # darker towards the corners
    pixels = np.repeat(backdrop[:, :, None], 3, axis=2) + rng.normal(0, 0.01, (side, side, 3))
    pixels[disk] = [0.5, 0.1, 0.1]
    return (pixels.clip(0, 1) * 255).astype(np.uint8), disk


def test_a_photo_on_a_plain_backdrop_is_masked_by_the_border_colour():
    pixels, disk = _photo_of_a_disk()
    coverage, source = object_mask(*to_rgb_and_alpha(pixels))
    assert source["mask"] == "border" and source["object_share"] == pytest.approx(disk.mean(), abs=0.01)
    assert ((coverage > 0.5) == disk).mean() > 0.999
    opaque = np.concatenate([pixels, np.full((*disk.shape, 1), 255, np.uint8)], axis=2)  # as Blender hands it over
    np.testing.assert_array_equal(object_mask(*to_rgb_and_alpha(opaque))[0], coverage)
    tensor, _ = prepare_image(pixels, 64, background=1.0, mean=0.0, std=1.0)
    assert tensor[:, 1, 1].min() == pytest.approx(1.0)  # the backdrop became the training background
    assert tensor[0, 32, 32] == pytest.approx(0.5, abs=0.02)  # the disk, cropped to fill the middle
    text = input_summary({"input": source})
    assert "No alpha channel" in text and f"{disk.mean():.0%}" in text


def test_backdrop_coloured_parts_inside_the_outline_stay_the_object():
    """The flood comes from the border: a white mug's body inside its dark outline is not background."""
    pixels = np.full((200, 200, 3), 255, np.uint8)
    pixels[40:160, 60:140] = 0  # the outline
    pixels[45:155, 65:135] = 255  # the white inside it
    coverage, _ = object_mask(*to_rgb_and_alpha(pixels))
    assert coverage[100, 100] == 1.0 and coverage[40:160, 60:140].all() and not coverage[:40].any()


def test_a_busy_background_is_refused_with_the_fix():
    pixels, disk = _photo_of_a_disk()
    pixels[~disk] = np.random.default_rng(1).integers(0, 256, (int((~disk).sum()), 3))
    with pytest.raises(InputError, match="not one plain colour.*alpha channel"):
        prepare_image(pixels, 64, 1.0, 0.5, 0.5)
    with pytest.raises(InputError, match="one plain colour: there is no object"):
        prepare_image(np.full((50, 80, 3), 200, np.uint8), 64, 1.0, 0.5, 0.5)


def test_fully_transparent_image_is_refused():
    with pytest.raises(InputError, match="fully transparent"):
        prepare_image(np.zeros((10, 10, 4), np.uint8), 32, 1.0, 0.5, 0.5)


# --- Thinning for local-feature models: every point up to the cap, spread evenly, stray points ignored ---------

CAP = 10_000  # the triplane-small preset's cap


def _sphere(count: int, rng: np.random.Generator) -> np.ndarray:
    direction = rng.normal(size=(count, 3))
    return direction / np.linalg.norm(direction, axis=1, keepdims=True)


def _octant_counts(points: np.ndarray) -> np.ndarray:
    return np.bincount((points > 0).astype(int) @ [1, 2, 4], minlength=8)


def test_a_dense_cloud_is_thinned_to_the_cap_evenly():
    rng = np.random.default_rng(0)
    cloud = _sphere(1_000_000, rng) * 2.0 + [1, 2, 3]
    points, frame, dropped = normalize_points(cloud, CAP, thin=True)
    assert 0.8 * CAP <= len(points) <= CAP and dropped == 0
    assert frame.scale == pytest.approx(4.0, rel=0.01)
    counts = _octant_counts(points)
    assert counts.min() >= 0.9 * counts.max(), counts


def test_thinning_evens_out_a_cloud_scanned_denser_on_one_side():
    """Nine points in ten on the upper half: random sampling would keep that ratio (about 0.1 below/above);
    one point per voxel keeps the lower half nearly as dense as the upper."""
    rng = np.random.default_rng(1)
    sphere = _sphere(2_500_000, rng)
    cloud = np.concatenate([sphere[sphere[:, 2] > 0][:900_000], sphere[sphere[:, 2] <= 0][:100_000]])
    points, _, _ = normalize_points(cloud, CAP, thin=True)
    assert 0.8 * CAP <= len(points) <= CAP
    counts = _octant_counts(points)
    assert counts.min() >= 0.5 * counts.max(), counts


@pytest.mark.parametrize("count", [300, 3000, 50_000])
@pytest.mark.parametrize("clumped", [False, True], ids=["scattered", "clumped"])
def test_a_few_far_outliers_do_not_move_the_frame(count, clumped):
    rng = np.random.default_rng(count)
    clean = _sphere(count, rng) * [0.5, 1.0, 0.3] + [4, -2, 1]
    centre = (clean.max(0) + clean.min(0)) / 2
    size = float((clean.max(0) - clean.min(0)).max())
    directions = _sphere(1, rng) + rng.normal(scale=0.01, size=(5, 3)) if clumped else _sphere(5, rng)
    cloud = np.concatenate([clean, centre + 3 * size * directions])[rng.permutation(count + 5)]
    _, reference, _ = normalize_points(clean, CAP, thin=True)
    points, frame, dropped = normalize_points(cloud, CAP, thin=True)
    assert dropped == 5  # the cloud's five outliers survive thinning (each fills a voxel), then are found
    assert np.abs(np.subtract(frame.center, reference.center)).max() <= 0.02 * reference.scale
    assert frame.scale == pytest.approx(reference.scale, rel=0.02)
    assert np.abs(points).max() <= 0.5 + 1e-6


@pytest.mark.parametrize("count", [300, 3000, CAP])
def test_a_clean_cloud_within_the_cap_keeps_every_point(count):
    rng = np.random.default_rng(count)
    cloud = np.concatenate([_sphere(count // 2, rng) * 0.3, _sphere(count - count // 2, rng) * 0.2 + [0.6, 0, 0]])
    points, frame, dropped = normalize_points(cloud, CAP, thin=True)
    assert len(points) == count and dropped == 0
    expected = (cloud - frame.center) / frame.scale
    np.testing.assert_allclose(np.sort(points, axis=0), np.sort(expected, axis=0), atol=1e-6)


# --- Damaged and oversized files: one clear message, quickly -------------------------------------------------


def test_a_truncated_npz_is_reported_as_damaged(tmp_path):
    np.savez(tmp_path / "full.npz", points=np.random.default_rng(0).normal(size=(5000, 3)))
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged or cut short"):
        load_observation(tmp_path / "cut.npz")


def _glb(document: dict, binary: bytes) -> bytes:
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


@pytest.mark.parametrize("damage", ["no-buffer-views", "buffer-view-too-long"])
def test_a_corrupt_glb_is_reported_as_damaged(tmp_path, damage):
    data = trimesh.creation.icosphere().export(file_type="glb")
    (length,) = struct.unpack("<I", data[12:16])
    document = json.loads(data[20 : 20 + length])
    if damage == "no-buffer-views":
        del document["bufferViews"]
    else:
        document["bufferViews"][0]["byteLength"] = 10**9
    (tmp_path / "scan.glb").write_bytes(_glb(document, data[28 + length :]))
    with pytest.raises(InputError, match="damaged or cut short"):
        load_observation(tmp_path / "scan.glb")


def _bilevel_png(path, side: int) -> None:
    """A black square on white, 1 bit per pixel: kilobytes on disk for any size (a multiple of 32)."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    quarter = side // 32  # in bytes of 8 pixels
    white = b"\0" + b"\xff" * (side // 8)
    black = b"\0" + b"\xff" * quarter + b"\0" * (side // 8 - 2 * quarter) + b"\xff" * quarter
    packer = zlib.compressobj(9)
    rows = [packer.compress(black if side // 4 <= y < 3 * side // 4 else white) for y in range(side)]
    pixels = b"".join(rows) + packer.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def test_a_huge_image_is_refused_before_decoding(tmp_path):
    _bilevel_png(tmp_path / "huge.png", 20_000)
    start = time.perf_counter()
    with pytest.raises(InputError, match="million pixels.*Scale it down"):
        load_observation(tmp_path / "huge.png")
    assert time.perf_counter() - start < 1.0


def test_a_large_image_is_shrunk_as_it_is_read(tmp_path):
    _bilevel_png(tmp_path / "large.png", 10_000)
    start = time.perf_counter()
    pixels = load_observation(tmp_path / "large.png").pixels
    tensor, source = prepare_image(pixels, 64, background=1.0, mean=0.0, std=1.0)
    assert time.perf_counter() - start < 5.0  # was 160 s and 3 GB
    assert source["mask"] == "border" and source["object_share"] == pytest.approx(0.25, abs=0.01)
    assert max(pixels.shape) == MAX_IMAGE_SIDE
    assert tensor[:, 32, 32].max() < 0.1 and tensor[:, 2, 2].min() > 0.9  # the black square survives, centred


def test_a_large_pixel_array_is_shrunk_as_a_file_is_before_any_float_copy(tmp_path):
    rng = np.random.default_rng(0)
    strip = rng.integers(0, 256, (256, 16384, 3), dtype=np.uint8)  # how the add-on sends an image empty's pixels
    strip[:16], strip[-16:], strip[:, :16], strip[:, -16:] = 255, 255, 255, 255  # on a white backdrop
    Image.fromarray(strip).save(tmp_path / "strip.png")
    from_file = load_observation(tmp_path / "strip.png").pixels
    tracemalloc.start()
    tensor = prepare_image(strip, 64, background=1.0, mean=0.0, std=1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 128e6  # was 6.4 GB (the strip padded square in floats); now at most 2048^2 RGB floats, twice
    np.testing.assert_array_equal(prepare_image(from_file, 64, 1.0, 0.0, 1.0)[0], tensor[0])  # as the file gives


# --- Normalisation on numpy alone (the built-in engine runs it without SciPy or scikit-image) ---------------


@pytest.mark.parametrize(
    "name",
    ["scan with far strays", "small clump", "duplicates", "line", "huge coordinates"],
)
def test_neighbour_distances_are_exactly_scipys(name):
    from scipy.spatial import cKDTree

    from backend.inputs.pointcloud import NeighbourGrid

    rng = np.random.default_rng(7)
    cloud = {
        "scan with far strays": np.concatenate([_sphere(60_000, rng) * [1, 2, 0.5], _sphere(5, rng) * 40]),
        "small clump": rng.normal(size=(400, 3)),
        "duplicates": np.repeat(rng.normal(size=(500, 3)), 20, axis=0),
        "line": np.stack([np.linspace(0, 1, 9000)] * 3, axis=1),
        "huge coordinates": np.concatenate([_sphere(8000, rng), [[3e38, 0, 0], [-3e38, 1, 1]]]),
    }[name]
    queries = np.concatenate([cloud[rng.choice(len(cloud), 300, replace=False)], cloud[-5:]])
    expected = cKDTree(cloud).query(queries, k=9)[0][:, -1]
    np.testing.assert_array_equal(NeighbourGrid(cloud, 9).distances(queries), expected)


@pytest.mark.parametrize("side, size", [(1000, 224), (450, 224), (230, 224), (129, 64), (40, 64), (1, 32)])
def test_image_resizing_matches_scikit_image(side, size):
    """The image encoder was trained on images shrunk by scikit-image; the numpy resizing gives the same."""
    from skimage.transform import downscale_local_mean, resize

    pixels = np.random.default_rng(side).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    expected = pixels.astype(np.float32) / 255.0
    factor = side // (2 * size)
    if factor > 1:
        expected = downscale_local_mean(expected, (factor, factor, 1), cval=1.0)
    expected = resize(expected, (size, size), anti_aliasing=True, preserve_range=True).astype(np.float32)
    tensor = fit_square(pixels.astype(np.float32) / 255.0, size, background=1.0, mean=0.0, std=1.0)
    np.testing.assert_allclose(tensor.transpose(1, 2, 0), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("encoding", ["ascii", "binary"])
@pytest.mark.parametrize("kind", ["cloud", "mesh"])
def test_a_ply_cut_short_inside_its_lists_is_refused(tmp_path, encoding, kind):
    sphere = trimesh.creation.icosphere(subdivisions=3)
    whole = tmp_path / "whole.ply"
    (trimesh.PointCloud(sphere.vertices) if kind == "cloud" else sphere).export(whole, encoding=encoding)
    data = whole.read_bytes()
    cut = tmp_path / "cut.ply"
    cut.write_bytes(data[: data.index(b"\n", len(data) // 3) + 1])  # at a line's end: the rest reads cleanly
    assert len(load_observation(whole).points) > 0
    with pytest.raises(InputError, match=r"cut short|damaged or cut short"):
        load_observation(cut)


def test_an_obj_cut_inside_a_vertex_line_is_refused(tmp_path):
    path = tmp_path / "cut.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0.25 0.7")
    with pytest.raises(InputError, match="cut short inside its vertex list"):
        load_observation(path)


def test_a_huge_file_without_a_ply_header_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "scan.ply"
    with path.open("wb") as file:
        file.truncate(4 << 30)  # 4 GB of nothing (sparse): reading it whole would take minutes and the memory
    with pytest.raises(InputError, match="not a PLY file"):
        load_observation(path)
