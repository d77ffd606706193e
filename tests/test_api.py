import numpy as np
import pytest
from fitting import ellipsoid_occupancy, ellipsoid_surface
from PIL import Image

from backend import Latent, interpolate, load_model
from backend.errors import InputError, OccNetError
from backend.metrics import iou, mesh_contains

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

    saved = Latent.load(a.save(tmp_path / "a"))
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
