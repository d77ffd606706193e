from pathlib import Path

import numpy as np
import pytest
import trimesh
from fitting import ellipsoid_occupancy, ellipsoid_surface
from PIL import Image

from backend import Latent, cli, interpolate, load_model
from backend.api import Model
from backend.errors import InputError, OccNetError
from backend.inputs import PointCloudInput
from backend.metrics import iou, mesh_contains
from backend.registry import MODELS_PATH_ENV

OFFSET = np.array([3.0, -1.0, 2.0])
SCALE = 2.0


def _iou_in_source_frame(mesh, axes, rng) -> float:
    q = rng.uniform(-0.55, 0.55, size=(100_000, 3))
    return iou(mesh_contains(mesh.vertices, mesh.faces, q * SCALE + OFFSET), ellipsoid_occupancy(q, axes))


def test_reconstruction_lands_where_the_source_was(tiny_model):
    rng = np.random.default_rng(7)
    axes = np.array([0.5, 0.35, 0.25])
    cloud = ellipsoid_surface(axes, 3000, rng) * SCALE + OFFSET
    model = load_model(tiny_model, "cpu")
    result = model.reconstruct(cloud, resolution=64)
    assert _iou_in_source_frame(result.mesh, axes, rng) > 0.7
    assert result.mesh.to_trimesh().is_watertight
    np.testing.assert_allclose(result.mesh.vertices.mean(axis=0), OFFSET, atol=0.05)
    assert set(result.stats["seconds"]) >= {"encode", "evaluate", "mesh", "normals"}
    assert result.stats["points_evaluated"] > 0


def test_model_default_threshold_and_explicit_threshold(tiny_model):
    model = load_model(tiny_model, "cpu")
    cloud = ellipsoid_surface(np.full(3, 0.5), 1000, np.random.default_rng(0))
    latent = model.encode(cloud)
    loose = model.extract(latent, resolution=32, threshold=0.2, normals=False).mesh.to_trimesh().volume
    tight = model.extract(latent, resolution=32, threshold=0.8, normals=False).mesh.to_trimesh().volume
    assert loose > tight
    with pytest.raises(OccNetError, match="Resolution 48"):
        model.extract(latent, resolution=48)
    with pytest.raises(OccNetError, match="Threshold"):
        model.extract(latent, threshold=1.5)


def test_interpolation_endpoints_and_midpoint(tiny_model, tmp_path):
    model = load_model(tiny_model, "cpu")
    rng = np.random.default_rng(1)
    a = model.encode(ellipsoid_surface(np.array([0.5, 0.2, 0.2]), 2000, rng))
    b = model.encode(ellipsoid_surface(np.array([0.2, 0.2, 0.5]), 2000, rng) + 10.0)
    for method in ("linear", "spherical"):
        np.testing.assert_allclose(interpolate(a, b, 0.0, method).code, a.code, atol=1e-5)
        np.testing.assert_allclose(interpolate(a, b, 1.0, method).code, b.code, atol=1e-5)
    middle = interpolate(a, b, 0.5)
    assert np.allclose(middle.frame.center, (np.array(a.frame.center) + b.frame.center) / 2)
    aspect = {}
    for t in (0.0, 0.5, 1.0):
        extent = np.ptp(model.extract(interpolate(a, b, t), resolution=32, normals=False).mesh.vertices, axis=0)
        aspect[t] = extent[0] / extent[2]
    assert aspect[0.0] > 1.5 and aspect[1.0] < 0.7  # long along X, then long along Z
    assert aspect[1.0] + 0.2 < aspect[0.5] < aspect[0.0] - 0.2  # the blend lies between them

    longer = Latent(np.concatenate([a.code.ravel(), [0.0]]), a.model, a.frame)
    with pytest.raises(InputError, match="differ in length .* both name model"):
        interpolate(a, longer, 0.5)
    for t in (1e30, -0.5, float("nan")):
        with pytest.raises(InputError, match="between 0 .the first shape. and 1"):
            interpolate(a, b, t)

    saved = Latent.load(a.save(tmp_path / "a.npz"))
    np.testing.assert_array_equal(saved.code, a.code)
    assert saved.frame == a.frame and saved.model == a.model
    with pytest.raises(InputError, match="different models"):
        interpolate(a, Latent(a.code, "another-model"), 0.5)


def test_wrong_input_kind_names_the_fix(tiny_model, untrained_image_model, tmp_path):
    with pytest.raises(InputError, match="reconstructs from point clouds, but the input is images"):
        load_model(tiny_model, "cpu").encode(ImageLike())
    image_model = load_model(untrained_image_model, "cpu")
    pixels = np.random.default_rng(0).integers(0, 255, (120, 80, 4), dtype=np.uint8)
    latent = image_model.encode(pixels)
    assert latent.code.shape == (32,) and latent.frame.scale == 1.0
    Image.fromarray(pixels).save(tmp_path / "view.png")
    np.testing.assert_allclose(image_model.encode(tmp_path / "view.png").code, latent.code, atol=1e-6)
    assert np.abs(image_model.encode(pixels[::-1].copy()).code - latent.code).max() > 1e-4  # the image matters


def ImageLike():  # noqa: N802  (reads like the observation it builds)
    from backend.inputs import ImageInput

    return ImageInput(np.zeros((8, 8, 3), np.uint8))


def _image_latent(image_model: Model, seed: int) -> Latent:
    pixels = np.full((64, 64, 3), 255, np.uint8)  # a random picture on a white backdrop
    pixels[8:-8, 8:-8] = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    return image_model.encode(pixels)


def test_a_latent_decodes_only_with_the_model_that_made_it(tiny_model, untrained_image_model):
    points = load_model(tiny_model, "cpu")
    image = _image_latent(load_model(untrained_image_model, "cpu"), 0)
    assert image.code.size == points.config.c_dim  # the length alone cannot tell them apart
    with pytest.raises(InputError, match="made by model 'tiny-image'.*'tiny-pointcloud'"):
        points.extract(image, resolution=32)


def test_cli_blends_saved_latents_with_their_own_model(
    tiny_model, untrained_image_model, tmp_path, capsys, monkeypatch
):
    points = load_model(tiny_model, "cpu")
    rng = np.random.default_rng(3)
    a = points.encode(ellipsoid_surface(np.array([0.5, 0.3, 0.3]), 1000, rng)).save(tmp_path / "a.npz")
    b = points.encode(ellipsoid_surface(np.array([0.3, 0.3, 0.5]), 1000, rng)).save(tmp_path / "b.npz")
    image_model = load_model(untrained_image_model, "cpu")
    c = _image_latent(image_model, 1).save(tmp_path / "c.npz")
    d = _image_latent(image_model, 2).save(tmp_path / "d.npz")
    options = ["--steps", "2", "--resolution", "32", "--device", "cpu", "--no-normals"]
    assert cli.main(["interpolate", str(a), str(b), "--out", str(tmp_path / "ab"), *options]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "made by model 'tiny-pointcloud'" in error and "--model" in error
    monkeypatch.setenv(MODELS_PATH_ENV, str(tiny_model.parent))
    assert cli.main(["interpolate", str(a), str(b), "--out", str(tmp_path / "ab"), *options]) == 0
    first = trimesh.load(tmp_path / "ab" / "blend_000.obj", process=False)
    assert len(first.faces) == len(points.extract(Latent.load(a), resolution=32, normals=False).mesh.faces)

    # Image latents are not decoded by a point-cloud model, even one with codes of the same length.
    capsys.readouterr()
    assert cli.main(["interpolate", str(c), str(d), "--out", str(tmp_path / "cd"), "--model", str(tiny_model)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'tiny-image'" in error and "'tiny-pointcloud'" in error
    assert not (tmp_path / "cd").exists()

    # Two latents from different models: one line naming both, before any model is loaded.
    assert cli.main(["interpolate", str(a), str(c), "--out", str(tmp_path / "ac"), *options]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'tiny-pointcloud'" in error and "'tiny-image'" in error


GEO_OFFSET = np.array([512_000.25, 5_400_000.5, 312.75])  # a georeferenced scan: UTM metres


def test_large_coordinates_keep_the_inputs_precision(tiny_model, tmp_path):
    model = load_model(tiny_model, "cpu")
    cloud = ellipsoid_surface(np.array([0.5, 0.35, 0.25]), 2000, np.random.default_rng(5)) * SCALE
    local = model.reconstruct(cloud, resolution=32, normals=False).mesh
    geo = model.reconstruct(cloud + GEO_OFFSET, resolution=32, normals=False)
    assert geo.mesh.vertices.dtype == np.float64
    assert len(np.unique(geo.mesh.vertices[:, 1])) > 100
    np.testing.assert_allclose(geo.mesh.vertices - GEO_OFFSET, local.vertices, atol=1e-5)
    assert Latent.load(geo.latent.save(tmp_path / "geo.npz")).frame == geo.latent.frame

    # The files the CLI writes keep them too, in the formats that store doubles.
    scan = tmp_path / "scan.xyz"
    np.savetxt(scan, cloud + GEO_OFFSET, fmt="%.6f")
    for suffix in ("obj", "ply", "off"):
        out = tmp_path / f"scan.{suffix}"
        assert cli.main(["reconstruct", str(scan), "--out", str(out), "--model", str(tiny_model),
                         "--resolution", "32", "--device", "cpu", "--no-normals"]) == 0  # fmt: skip
        written = np.asarray(trimesh.load(out, process=False).vertices)
        np.testing.assert_allclose(written - GEO_OFFSET, local.vertices, atol=1e-4, err_msg=suffix)


@pytest.mark.parametrize("extreme", [1e300, 1e39, np.finfo(np.float64).max])
def test_absurd_extents_are_refused_in_words(tiny_model, extreme):
    cloud = ellipsoid_surface(np.full(3, 0.5), 500, np.random.default_rng(0))
    cloud[:250] *= extreme
    with pytest.raises(InputError, match="coordinates reach"):
        load_model(tiny_model, "cpu").encode(cloud)


def _broken_latents(folder: Path, good: Path) -> dict[str, Path]:
    """Each way a saved latent can be damaged, with the words its error must use."""
    data = dict(np.load(good))
    broken = {}
    truncated = folder / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    broken["damaged"] = truncated
    for key in ("code", "model", "center", "scale"):
        path = folder / f"no_{key}.npz"
        np.savez(path, **{k: v for k, v in data.items() if k != key})
        broken[f"'{key}'"] = path
    for key, value in (("scale", np.float64(-1.0)), ("center", np.array([0.0, np.nan, 0.0])), ("code", np.zeros(0))):
        path = folder / f"bad_{key}.npz"
        np.savez(path, **{**data, key: value})
        broken[f"'{key}'"] = path
    return broken


def test_broken_latent_files_get_one_line_with_the_fix(tiny_model, tmp_path, capsys):
    model = load_model(tiny_model, "cpu")
    good = model.encode(ellipsoid_surface(np.full(3, 0.5), 500, np.random.default_rng(0))).save(tmp_path / "good.npz")
    for words, path in _broken_latents(tmp_path, good).items():
        with pytest.raises(InputError, match=words):
            Latent.load(path)
        capsys.readouterr()
        assert cli.main(["interpolate", str(good), str(path), "--out", str(tmp_path / "out"), "--steps", "2"]) == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and str(path) in error and "--save-latent" in error, error
    assert not (tmp_path / "out").exists()
    truncated = _broken_latents(tmp_path, good)["damaged"]
    assert cli.main(["reconstruct", str(truncated), "--out", str(tmp_path / "out.obj")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(truncated) in error and "damaged" in error, error


@pytest.mark.parametrize(
    "colors, message",
    [
        (np.zeros((10, 3)), r"one RGB row per point, \(2000, 3\)"),
        (np.full((2000, 3), 2.0), "between 0 and 1"),
        (np.zeros((2000, 3), bool), "one RGB row per point"),
    ],
    ids=["count", "range", "bool"],
)
def test_colours_that_do_not_fit_the_points_are_refused_in_words(colors, message):
    points = np.random.default_rng(0).normal(size=(2000, 3))
    with pytest.raises(InputError, match=message):
        PointCloudInput(points, colors=colors)


def test_eight_and_sixteen_bit_colours_become_0_to_1():
    points = np.zeros((2, 3))
    np.testing.assert_allclose(PointCloudInput(points, colors=np.array([[255, 0, 51]] * 2)).colors[0], [1, 0, 0.2])
    np.testing.assert_allclose(PointCloudInput(points, colors=np.array([[65535, 0, 0]] * 2)).colors[0], [1, 0, 0])
