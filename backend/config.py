"""Model configuration: everything needed to rebuild a network lives here and in checkpoint metadata."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

CONFIG_VERSION = 5  # 2 added the triplane architecture, 3 point attention, 4 views, 5 the views thickness head; older
# files read unchanged
InputKind = Literal["pointcloud", "image", "voxels"]
Architecture = Literal["global", "triplane", "attention", "views"]
INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)
LOCAL_ARCHITECTURES = ("triplane", "attention")  # models that read every input point (up to n_points)

# The canonical frame: a unit cube centred on the origin, padded by 0.1 (the paper's box).
PADDING = 0.1
BOX_SIZE = 1.0 + PADDING


@dataclass
class ModelConfig:
    """Architecture and inference defaults of one Occupancy Network."""

    input_kind: InputKind = "pointcloud"
    architecture: Architecture = "global"  # one code per shape (the paper), feature planes (Peng et al. 2020),
    # feature planes plus features on the input points that each query reads by attention (after POCO), or
    # pixel-aligned features of reference pictures that each query reads where it projects in every view (PIFu)
    c_dim: int = 256  # the code's length, or the features per plane pixel
    decoder_hidden: int = 256
    decoder_blocks: int = 5
    encoder_hidden: int = 512
    encoder_blocks: int = 5
    image_size: int = 224
    mask_size: int = 128  # views: the silhouettes carve at this many pixels across
    image_widths: tuple[int, ...] = (64, 128, 256, 512)
    voxel_resolution: int = 32
    plane_resolution: int = 64
    unet_depth: int = 4
    unet_filters: int = 32
    n_points: int = 300  # global: points the encoder sees; triplane, attention: the cap a denser cloud is thinned to
    plane_points: int = 10_000  # attention: the feature planes see the cloud thinned to this many points
    point_features: int = 32  # attention: features per input point
    neighbours: int = 16  # attention: input points each point and each query reads
    attention_heads: int = 4  # attention: ways of weighing a query's neighbours
    read_values: int = 16  # attention: values a query reads from each level's neighbours
    directions: int = 6  # attention: directions per point whose projections tell a neighbour's side
    density_gate: bool = False  # attention: scale what queries read by the cloud's density (`DensityGate`)
    orient_normals: bool = False  # attention: a cloud without normals is read twice, the second time with normals
    # its first reading's field orients (`backend.inputs.normals`)
    threshold: float = 0.2
    views_shift: float = 0.0  # views: added to the network's logit given several pictures (calibrated on validation)
    thickness_width: int = 0  # views: the width of a head that judges how thick a lone picture's object is
    # (`backend.models.thickness`; `train-thickness` adds it); 0: none, the network guesses a lone picture's depth
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
        if self.architecture in LOCAL_ARCHITECTURES and self.input_kind != "pointcloud":
            raise ValueError(f"the {self.architecture} architecture encodes point clouds only")
        if self.architecture == "views" and self.input_kind != "image":
            raise ValueError("the views architecture encodes reference images only")
        self.image_widths = tuple(self.image_widths)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent: a code, or three planes of c_dim features. A point-attention latent also holds
        its points, so its length varies: (-1,), a flat array laid out as `PointLatentLayout` says; so does a
        views latent, one block per view (`ViewLatentLayout`)."""
        if self.architecture == "triplane":
            return self.plane_shape
        if self.architecture in ("attention", "views"):
            return (-1,)
        return (self.c_dim,)

    @property
    def mesh_normals(self) -> bool:
        """Whether a mesh's normals come from its faces rather than from the field: each point-attention field
        value reads two levels of neighbours, and probing the field four times a vertex would double the time."""
        return self.architecture == "attention"

    @property
    def plane_shape(self) -> tuple[int, int, int, int]:
        return (3, self.c_dim, self.plane_resolution, self.plane_resolution)

    def latent_size_problem(self, size: int) -> str | None:
        """Why a latent of `size` values cannot be this model's, or None."""
        if self.architecture == "attention":
            fixed, per_point = PointLatentLayout.of(self).fixed, 3 + self.point_features
            if size > fixed and (size - fixed) % per_point == 0:
                return None
            return f"{size} values, not {fixed} plus {per_point} per point"
        if self.architecture == "views":
            per_view = ViewLatentLayout.of(self).per_view
            return None if size > 0 and size % per_view == 0 else f"{size} values, not {per_view} per view"
        expected = int(np.prod(self.latent_shape))
        return None if size == expected else f"{size} values, not {expected}"

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


@dataclass(frozen=True)
class PointLatentLayout:
    """A point-attention latent as one flat float array: the feature planes, the spacing (the unit of every
    neighbourhood, in the canonical frame), then each point's position and features (N x (3 + F), points in
    random order so that its first N / 4^l points thin it evenly)."""

    plane_shape: tuple[int, int, int, int]
    point_features: int

    @classmethod
    def of(cls, config: ModelConfig) -> PointLatentLayout:
        return cls(config.plane_shape, config.point_features)

    @property
    def fixed(self) -> int:
        return int(np.prod(self.plane_shape)) + 1

    def join(self, planes: np.ndarray, unit: float, points: np.ndarray, features: np.ndarray) -> np.ndarray:
        rows = np.concatenate([np.asarray(points, np.float32), np.asarray(features, np.float32)], axis=1)
        return np.concatenate([np.asarray(planes, np.float32).ravel(), [np.float32(unit)], rows.ravel()])

    def split(self, code: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """planes (3, C, R, R), unit, points (N, 3), features (N, F) of a flat latent (views, not copies)."""
        code = np.asarray(code).ravel()
        rows = code[self.fixed :].reshape(-1, 3 + self.point_features)
        return code[: self.fixed - 1].reshape(self.plane_shape), float(code[self.fixed - 1]), rows[:, :3], rows[:, 3:]


@dataclass(frozen=True)
class ViewLatentLayout:
    """A views latent as one flat float array, one block per view: its affine map (3 x 4, from the canonical frame
    to the picture's grid and depth), its feature map (C x S x S), its silhouette mask (M x M) and its sheets'
    weight, depth and half-thickness (3 x M x M, `backend.surface.silhouettes`)."""

    features: int
    size: int
    mask_size: int

    @classmethod
    def of(cls, config: ModelConfig) -> ViewLatentLayout:
        return cls(config.c_dim, config.image_size, config.mask_size)

    @property
    def per_view(self) -> int:
        return 12 + self.features * self.size**2 + 4 * self.mask_size**2

    def join(self, affines: np.ndarray, features: np.ndarray, masks: np.ndarray, sheets: np.ndarray) -> np.ndarray:
        views = len(affines)
        parts = [np.asarray(a, np.float32).reshape(views, -1) for a in (affines, features, masks, sheets)]
        return np.concatenate(parts, axis=1).ravel()

    def split(self, code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """affines (V, 3, 4), features (V, C, S, S), masks (V, 1, M, M), sheets (V, 3, M, M) of a flat latent
        (views, not copies)."""
        rows = np.asarray(code).reshape(-1, self.per_view)
        feature_end = 12 + self.features * self.size**2
        mask_end = feature_end + self.mask_size**2
        return (
            rows[:, :12].reshape(-1, 3, 4),
            rows[:, 12:feature_end].reshape(-1, self.features, self.size, self.size),
            rows[:, feature_end:mask_end].reshape(-1, 1, self.mask_size, self.mask_size),
            rows[:, mask_end:].reshape(-1, 3, self.mask_size, self.mask_size),
        )


PRESETS = ("small", "paper", "triplane-small", "triplane", "attention-small", "views-small")


def preset(name: str, input_kind: str = "pointcloud") -> ModelConfig:
    """'paper' is the architecture of Mescheder et al.; 'small' trains on a laptop CPU.

    'triplane' is Convolutional Occupancy Networks' 3-plane model at 128^2 for a GPU; 'triplane-small' the same
    at 64^2 with a U-Net of half the width, which trains on two CPU cores in about an hour (1.7 s a step of 16).
    'views-small' reads one to three reference pictures at 64 pixels (pixel-aligned features, carving by their
    silhouettes at 128), for images. 'attention-small' is 'triplane-small' plus features on up to 100,000 input
    points that each query reads from its 16 nearest (point attention), so detail follows the scan's density.
    """
    if name.startswith(("triplane", "attention")) and input_kind != "pointcloud":
        raise ValueError(f"preset {name!r} encodes point clouds only; use 'small' or 'paper' for {input_kind}")
    if name == "views-small":
        if input_kind != "image":
            raise ValueError(f"preset {name!r} encodes reference images only; train it with --input image")
        return ModelConfig(
            input_kind="image",
            architecture="views",
            c_dim=32,
            decoder_hidden=64,
            decoder_blocks=4,
            image_size=64,
            mask_size=128,
            unet_depth=4,
            unet_filters=16,
            threshold=0.5,
        )
    if name == "attention-small":
        return dataclasses.replace(
            preset("triplane-small"),
            architecture="attention",
            n_points=100_000,
            density_gate=True,
            orient_normals=True,
        )
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
