"""An observation as the network takes it: the one preparation both engines (PyTorch and the built-in CPU
runtime) run, so that they encode the same input to the same latent, in the same frame. numpy only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..errors import InputError
from ..surface.frame import Frame
from .attention import PointAttentionInput, prepare_points
from .image import prepare_image
from .observation import ImageInput, Observation, PointCloudInput, VoxelInput
from .pointcloud import normalize_points
from .views import PreparedViews, View, prepare_views

KIND_WORDS = {"pointcloud": "point clouds", "image": "images", "voxels": "voxel grids"}
_BY_KIND = {"pointcloud": PointCloudInput, "image": ImageInput, "voxels": VoxelInput}


def as_observation(observation: Observation | str | Path | np.ndarray, model: str, input_kind: str) -> Observation:
    """What a caller hands a model (an observation, a file, or an array of the model's input kind), checked
    against the kind the model reads."""
    if isinstance(observation, str | Path):
        from .files import load_observation  # trimesh and Pillow, imported when a file comes

        observation = load_observation(observation)
    elif isinstance(observation, np.ndarray):
        observation = _BY_KIND[input_kind](observation)
    check_input_kind(model, input_kind, observation)
    return observation


def check_input_kind(model: str, input_kind: str, observation: Observation) -> None:
    """A model reads one kind of input; another kind is the user's mistake, named with the fix."""
    if observation.kind != input_kind:
        fix = f"Choose a model for {KIND_WORDS[observation.kind]}."
        if observation.kind == "voxels":  # no shipped model reads them: say how to get one
            fix = (
                "No shipped model reads voxel grids: train one ('python -m backend train --input voxels') and pass "
                "it with --model, or give a point cloud or mesh."
            )
        raise InputError(
            f"Model '{model}' reconstructs from {KIND_WORDS[input_kind]}, but the input is "
            f"{KIND_WORDS[observation.kind]}. {fix}"
        )


def network_input(
    observation: Observation, config: ModelConfig, seed: int = 0
) -> tuple[np.ndarray | PointAttentionInput | PreparedViews, Frame, dict]:
    """The encoder's input without its batch axis (float32), the frame that maps results back to the source, and
    what the user should know of how the input was read (`Latent.source`: points used and thinned, an image's
    mask): canonical points (N, 3), a prepared image (3, S, S) or a 0/1 grid (R, R, R); for point attention, what
    `prepare_points` makes; for views, what `prepare_views` makes."""
    if isinstance(observation, ImageInput) and config.architecture == "views":
        prepared = prepare_views(observation.pictures(), config.image_size, config.mask_size)
        return prepared, prepared.frame, prepared.source
    if isinstance(observation, ImageInput) and observation.more:
        raise InputError(
            "This image model reads one picture; give one, or use a views model for several reference images."
        )
    if isinstance(observation, PointCloudInput) and config.architecture == "attention":
        prepared, frame = prepare_points(observation.points, observation.normals, config, seed)
        return prepared, frame, prepared.summary()
    if isinstance(observation, PointCloudInput):
        thin = config.architecture == "triplane"
        points, frame, _ = normalize_points(observation.points, config.n_points, seed, thin=thin)
        return points, frame, {}
    if isinstance(observation, ImageInput):
        image, source = prepare_image(
            observation.pixels, config.image_size, config.image_background, config.image_mean, config.image_std
        )
        return image, _upright_frame(observation.pictures()[0][1]), source
    return _prepare_voxels(observation.grid, config.voxel_resolution), Frame(), {}


def _upright_frame(view: View) -> Frame:
    """Where a one-picture model's upright object goes: at the picture's centre, as large as its longer side."""
    return Frame.of(view.centre, max(float(np.linalg.norm(view.right)), float(np.linalg.norm(view.up))))


def _prepare_voxels(grid: np.ndarray, resolution: int) -> np.ndarray:
    grid = np.asarray(grid)
    if grid.shape != (resolution,) * 3:
        raise InputError(f"The voxel model expects a {resolution}^3 grid; got shape {grid.shape}.")
    return (np.nan_to_num(grid.astype(np.float32)) > 0.5).astype(np.float32)
