"""Model configuration: everything needed to rebuild a network lives here and in checkpoint metadata."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

CONFIG_VERSION = 1
INPUT_KINDS = ("pointcloud", "image", "voxels")

# The canonical frame: a unit cube centred on the origin, padded by 0.1 (the paper's box).
PADDING = 0.1
BOX_SIZE = 1.0 + PADDING


@dataclass
class ModelConfig:
    """Architecture and inference defaults of one Occupancy Network."""

    input_kind: str = "pointcloud"
    c_dim: int = 256
    decoder_hidden: int = 256
    decoder_blocks: int = 5
    encoder_hidden: int = 512
    encoder_blocks: int = 5
    image_size: int = 224
    image_widths: tuple[int, ...] = (64, 128, 256, 512)
    voxel_resolution: int = 32
    n_points: int = 300
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
        self.image_widths = tuple(self.image_widths)

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


def preset(name: str, input_kind: str = "pointcloud") -> ModelConfig:
    """'paper' is the architecture of Mescheder et al.; 'small' trains on a laptop CPU."""
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
    raise ValueError(f"unknown preset {name!r}; choose 'paper' or 'small'")
