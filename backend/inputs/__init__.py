"""Observations the networks condition on, read from files or arrays and normalised into the canonical frame."""

from .files import load_observation
from .observation import Frame, ImageInput, Observation, PointCloudInput, VoxelInput

__all__ = ["Frame", "ImageInput", "Observation", "PointCloudInput", "VoxelInput", "load_observation"]
