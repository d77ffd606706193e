"""The conditional Occupancy Network: one encoder for the input kind plus the shared decoder."""

import torch
from torch import nn

from ..config import ModelConfig
from .decoder import OccupancyDecoder
from .image_resnet import ResNetImageEncoder
from .local_decoder import LocalDecoder
from .local_pointnet import LocalPoolPointNet
from .pointnet import ResnetPointNet
from .voxel_cnn import VoxelEncoder


class OccupancyNetwork(nn.Module):
    """encode(observation) -> latent (B, *config.latent_shape); decode(points, latent) -> occupancy logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _build_encoder(config)
        if config.architecture == "triplane":
            self.decoder = LocalDecoder(config.c_dim, config.decoder_hidden, config.decoder_blocks)
        else:
            self.decoder = OccupancyDecoder(config.c_dim, config.decoder_hidden, config.decoder_blocks)

    def encode(self, observation: torch.Tensor) -> torch.Tensor:
        return self.encoder(observation)

    def decode(self, points: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Occupancy logits of points (B, T, 3) given latents (B, *config.latent_shape)."""
        return self.decoder(points, code)

    def forward(self, points: torch.Tensor, observation: torch.Tensor) -> torch.Tensor:
        return self.decode(points, self.encode(observation))


def _build_encoder(config: ModelConfig) -> nn.Module:
    if config.architecture == "triplane":
        return LocalPoolPointNet(
            config.c_dim,
            config.encoder_hidden,
            config.encoder_blocks,
            config.plane_resolution,
            config.unet_depth,
            config.unet_filters,
        )
    if config.input_kind == "pointcloud":
        return ResnetPointNet(config.c_dim, config.encoder_hidden, config.encoder_blocks)
    if config.input_kind == "image":
        return ResNetImageEncoder(config.c_dim, config.image_widths)
    return VoxelEncoder(config.c_dim, config.voxel_resolution)


def build_model(config: ModelConfig) -> OccupancyNetwork:
    return OccupancyNetwork(config)
