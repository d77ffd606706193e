"""Model configuration: everything needed to rebuild a network lives here and in checkpoint metadata."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

CONFIG_VERSION = 2  # 2 added the local-feature (triplane) architecture; version 1 files read unchanged
INPUT_KINDS = ("pointcloud", "image", "voxels")
ARCHITECTURES = ("global", "triplane")

# The canonical frame: a unit cube centred on the origin, padded by 0.1 (the paper's box).
PADDING = 0.1
BOX_SIZE = 1.0 + PADDING


@dataclass
class ModelConfig:
    """Architecture and inference defaults of one Occupancy Network."""

    input_kind: str = "pointcloud"
    architecture: str = "global"  # one code per shape (the paper), or feature planes (Peng et al. 2020)
    c_dim: int = 256  # the code's length, or the features per plane pixel
    decoder_hidden: int = 256
    decoder_blocks: int = 5
    encoder_hidden: int = 512
    encoder_blocks: int = 5
    image_size: int = 224
    image_widths: tuple[int, ...] = (64, 128, 256, 512)
    voxel_resolution: int = 32
    plane_resolution: int = 64
    unet_depth: int = 4
    unet_filters: int = 32
    n_points: int = 300  # global: points the encoder sees; triplane: the cap a denser cloud is thinned to
    threshold: float = 0.2
    image_background: float = 1.0
    image_mean: float = 0.5
    image_std: float = 0.5
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, not {self.input_kind!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {self.architecture!r}")
        if self.architecture == "triplane" and self.input_kind != "pointcloud":
            raise ValueError("the triplane architecture encodes point clouds only")
        self.image_widths = tuple(self.image_widths)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent: a code, or three planes of c_dim features."""
        if self.architecture == "triplane":
            return (3, self.c_dim, self.plane_resolution, self.plane_resolution)
        return (self.c_dim,)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        return cls(**data)


PRESETS = ("small", "paper", "triplane-small", "triplane")


def preset(name: str, input_kind: str = "pointcloud") -> ModelConfig:
    """'paper' is the architecture of Mescheder et al.; 'small' trains on a laptop CPU.

    'triplane' is Convolutional Occupancy Networks' 3-plane model at 128^2 for a GPU; 'triplane-small' the same
    at 64^2 with a U-Net of half the width, which trains on two CPU cores in about an hour (1.7 s a step of 16).
    """
    if name.startswith("triplane") and input_kind != "pointcloud":
        raise ValueError(f"preset {name!r} encodes point clouds only; use 'small' or 'paper' for {input_kind}")
    if name in ("triplane-small", "triplane"):
        small = ModelConfig(
            input_kind=input_kind,
            architecture="triplane",
            c_dim=32,
            encoder_hidden=32,
            encoder_blocks=5,
            decoder_hidden=32,
            decoder_blocks=5,
            plane_resolution=64,
            unet_depth=4,
            unet_filters=16,
            n_points=10_000,
            threshold=0.5,
        )
        if name == "triplane-small":
            return small
        return dataclasses.replace(
            small,
            encoder_hidden=64,
            decoder_hidden=64,
            plane_resolution=128,
            unet_depth=5,
            unet_filters=32,
            n_points=30_000,
        )
    if name == "paper":
        return ModelConfig(input_kind=input_kind)
    if name == "small":
        return ModelConfig(
            input_kind=input_kind,
            c_dim=128,
            decoder_hidden=128,
            decoder_blocks=4,
            encoder_hidden=128,
            encoder_blocks=4,
            image_size=64,
            image_widths=(32, 64, 128, 256),
        )
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
