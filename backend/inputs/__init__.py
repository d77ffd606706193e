"""Observations the networks condition on, read from files or arrays and normalised into the canonical frame.

`load_observation` (files: trimesh, PIL) is imported lazily, so the normalisation modules (`pointcloud`, `image`,
numpy only) also serve the built-in engine, which runs where neither library is.
"""

from .observation import ImageInput, Observation, PointCloudInput, VoxelInput

__all__ = ["ImageInput", "Observation", "PointCloudInput", "VoxelInput", "load_observation"]


def __getattr__(name: str):
    if name == "load_observation":
        from .files import load_observation

        return load_observation
    raise AttributeError(f"module 'backend.inputs' has no attribute {name!r}")
