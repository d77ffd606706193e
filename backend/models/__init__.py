"""The networks: encoders turn an observation into a latent code, the decoder turns (point, code) into occupancy."""

from .occnet import OccupancyNetwork, build_model

__all__ = ["OccupancyNetwork", "build_model"]
