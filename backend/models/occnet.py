"""The conditional Occupancy Network: one encoder for the input kind plus the shared decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..inputs.neighbours import LEVELS, level_unit
from .decoder import OccupancyDecoder
from .image_resnet import ResNetImageEncoder
from .local_decoder import LocalDecoder
from .local_pointnet import LocalPoolPointNet
from .pixel_aligned import PixelAlignedDecoder, ViewEncoder
from .point_attention import DensityGate, NeighbourAttention, PointFeatures
from .pointnet import ResnetPointNet
from .thickness import ThicknessHead
from .triplane import sample_planes
from .voxel_cnn import VoxelEncoder


@dataclass
class PointLatent:
    """A point-attention latent: feature planes (B, 3, C, R, R), the spacing (B,), and features (B, N, F) on the
    input points (B, N, 3), all in the canonical frame."""

    planes: torch.Tensor
    unit: torch.Tensor
    points: torch.Tensor
    features: torch.Tensor
    terms: list[tuple[torch.Tensor, ...]] | None = None  # OccupancyNetwork.point_terms(features), computed ahead


@dataclass
class ViewLatent:
    """A views latent: each view's pixel features (B, V, C, S, S), silhouette masks (B, V, 1, M, M), the sheets
    that keep every silhouette pixel (B, V, 3, M, M; `backend.surface.silhouettes`) and affine maps (B, V, 3, 4)
    from the canonical frame to its grid and depth."""

    features: torch.Tensor
    masks: torch.Tensor
    sheets: torch.Tensor
    affines: torch.Tensor


class OccupancyNetwork(nn.Module):
    """encode(observation) -> latent; decode(points, latent) -> occupancy logits.

    A latent is (B, *config.latent_shape) for the global and triplane models, a `PointLatent` for point attention,
    a `ViewLatent` for views, whose observation is a dict of images (B, V, 4, S, S), masks (B, V, 1, M, M), sheets
    (B, V, 3, M, M) and affines (B, V, 3, 4) (`backend.inputs.views.PreparedViews`); a views model with a
    thickness head (`thickness`) judges a lone picture's depth with it.
    Point attention's observation is a dict of tensors (`backend.data.point_inputs` makes it): plane_points,
    points, normals, has_normals, neighbours, coarse_neighbours, parents, unit; its decoder also takes each query's
    neighbours.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = _build_encoder(config)
        if config.architecture == "views":
            self.decoder = PixelAlignedDecoder(
                config.c_dim,
                config.decoder_hidden,
                config.decoder_blocks,
                config.views_shift,
                config.thickness_width > 0,
            )
            if config.thickness_width:
                self.thickness = ThicknessHead(config.thickness_width)
        elif config.architecture in ("triplane", "attention"):
            extra = LEVELS * config.read_values if config.architecture == "attention" else 0
            self.decoder = LocalDecoder(config.c_dim, config.decoder_hidden, config.decoder_blocks, extra)
        else:
            self.decoder = OccupancyDecoder(config.c_dim, config.decoder_hidden, config.decoder_blocks)
        if config.architecture == "attention":
            self.point_features = PointFeatures(config.point_features, config.c_dim)
            self.attention = nn.ModuleList(
                NeighbourAttention(config.point_features, config.read_values, config.attention_heads, config.directions)
                for _ in range(LEVELS)
            )
            self.density = DensityGate(LEVELS * config.read_values) if config.density_gate else None

    def encode(self, observation: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor | PointLatent | ViewLatent:
        if self.config.architecture == "views":
            images = observation["images"]
            features = self.encoder(images.flatten(0, 1)).unflatten(0, images.shape[:2])
            return ViewLatent(features, observation["masks"], observation["sheets"], observation["affines"])
        if self.config.architecture != "attention":
            return self.encoder(observation)
        planes = self.encoder(observation["plane_points"])
        points = observation["points"]
        features = self.point_features(
            points,
            observation["normals"],
            observation["has_normals"],
            observation["neighbours"],
            observation["coarse_neighbours"],
            observation["parents"],
            observation["unit"],
            sample_planes(planes, points),
        )
        return PointLatent(planes, observation["unit"], points, features)

    def decode(
        self,
        points: torch.Tensor,
        code: torch.Tensor | PointLatent | ViewLatent,
        neighbours: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Occupancy logits of points (B, T, 3) given latents; point attention also needs each query's neighbours
        at each level: (indices (B, T, k), which exist (B, T, k)), as `backend.inputs.neighbours.within` finds."""
        if isinstance(code, ViewLatent):
            return self.decoder(points, code.features, code.masks, code.sheets, code.affines)
        if not isinstance(code, PointLatent):
            return self.decoder(points, code)
        if neighbours is None or len(neighbours) != LEVELS:
            raise ValueError(f"the point-attention decoder needs each query's neighbours at {LEVELS} levels")
        terms = code.terms if code.terms is not None else self.point_terms(code.features)
        read = sample_planes(code.planes, points)
        return decode_read(
            self.attention, self.decoder, points, read, code.points, code.unit, terms, neighbours, self.density
        )

    def point_terms(self, features: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """What each level's attention reads of every point, from the point features: computed once per latent
        when many batches of queries follow (`PointLatent.terms`)."""
        return [attention.point_terms(features) for attention in self.attention]

    def forward(
        self,
        points: torch.Tensor,
        observation: torch.Tensor | dict[str, torch.Tensor],
        neighbours: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        return self.decode(points, self.encode(observation), neighbours)


def decode_read(
    attention: nn.ModuleList,
    decoder: LocalDecoder,
    queries: torch.Tensor,
    plane_features: torch.Tensor,
    points: torch.Tensor,
    unit: torch.Tensor,
    terms: list[tuple[torch.Tensor, ...]],
    neighbours: list[tuple[torch.Tensor, torch.Tensor]],
    density: DensityGate | None = None,
) -> torch.Tensor:
    """Point attention's logits (B, T) from what the queries read of the planes (B, T, C) and, at each level, of
    their neighbours among the points (what the ONNX decoder graph runs too)."""
    levels = enumerate(zip(attention, terms, neighbours, strict=True))
    z = [read(points, own, unit * level_unit(1.0, level), queries, *found) for level, (read, own, found) in levels]
    read_all = torch.cat(z, dim=-1)
    if density is not None:
        read_all = density(read_all, unit)
    return decoder.decode_features(queries, plane_features, read_all)


def _build_encoder(config: ModelConfig) -> nn.Module:
    if config.architecture == "views":
        return ViewEncoder(config.c_dim, config.unet_filters, config.unet_depth)
    if config.architecture in ("triplane", "attention"):
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
