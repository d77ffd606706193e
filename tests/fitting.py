"""A tiny point-cloud Occupancy Network fitted in seconds on analytic ellipsoids, for tests needing a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.checkpoint import save_checkpoint
from backend.config import ModelConfig
from backend.data.dataset import point_attention_batch
from backend.inputs.attention import prepare_points
from backend.models import build_model

TINY = dict(c_dim=32, decoder_hidden=64, decoder_blocks=3, encoder_hidden=64, encoder_blocks=3, n_points=300)
TINY_TRIPLANE = dict(
    architecture="triplane",
    c_dim=32,
    plane_resolution=64,
    encoder_hidden=16,
    encoder_blocks=2,
    decoder_hidden=32,
    decoder_blocks=2,
    unet_depth=2,
    unet_filters=8,
    n_points=3000,
)


TINY_ATTENTION = dict(
    TINY_TRIPLANE,
    architecture="attention",
    point_features=16,
    read_values=8,
    attention_heads=2,
    directions=4,
    plane_resolution=32,
    plane_points=2000,
    n_points=20_000,
    density_gate=True,
)


def random_axes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Semi-axes of ellipsoids whose longest side is 1, as the input normalisation makes it."""
    axes = rng.uniform(0.2, 0.5, size=(count, 3))
    axes[np.arange(count), rng.integers(0, 3, count)] = 0.5
    return axes


def ellipsoid_surface(axes: np.ndarray, count: int, rng: np.random.Generator, noise: float = 0.005) -> np.ndarray:
    direction = rng.normal(size=(count, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * axes + rng.normal(scale=noise, size=(count, 3))


def ellipsoid_occupancy(points: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return ((points / axes) ** 2).sum(-1) <= 1.0


def fit_tiny_pointcloud_model(path: Path, steps: int = 500, seed: int = 0) -> Path:
    return fit_on_ellipsoids(ModelConfig(input_kind="pointcloud", threshold=0.5, **TINY), path, steps, seed)


def fit_tiny_triplane_model(path: Path, steps: int = 150, seed: int = 0) -> Path:
    """A feature-plane model with the shipped small preset's latent shape, (3, 32, 64, 64), but a light U-Net
    and narrow layers, so that it fits in about 25 s of one CPU core (IoU about 0.9 on held-out ellipsoids)."""
    config = ModelConfig(threshold=0.5, **TINY_TRIPLANE)
    return fit_on_ellipsoids(config, path, steps, seed, cloud=500, batch=4, lr=5e-3)


def fit_on_ellipsoids(
    config: ModelConfig, path: Path, steps: int, seed: int = 0, cloud: int = 300, batch: int = 8, lr: float = 3e-3
) -> Path:
    """Fit any point-cloud architecture to random ellipsoids (exact occupancy, noisy surface clouds)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(steps):
        axes = random_axes(rng, batch)
        clouds = np.stack([ellipsoid_surface(a, cloud, rng) for a in axes])
        uniform = rng.uniform(-0.55, 0.55, size=(batch, 512, 3))
        near = np.stack([ellipsoid_surface(a, 512, rng, noise=0.05) for a in axes])
        queries = np.concatenate([uniform, near], axis=1)
        labels = np.stack([ellipsoid_occupancy(q, a) for q, a in zip(queries, axes, strict=True)])
        logits = model(torch.tensor(queries, dtype=torch.float32), torch.tensor(clouds, dtype=torch.float32))
        loss = F.binary_cross_entropy_with_logits(logits, torch.tensor(labels, dtype=torch.float32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return save_checkpoint(model.eval(), path)


def fit_tiny_attention_model(path: Path, steps: int = 100, seed: int = 0) -> Path:
    """A point-attention model (the shipped preset's architecture, narrow) fitted to ellipsoids through the same
    input preparation as training and inference (`prepare_points`, the queries' neighbours), in about 30 s."""
    config = ModelConfig(threshold=0.5, **TINY_ATTENTION)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(steps):
        axes = random_axes(rng, 4)
        prepared, queries, labels = [], [], []
        for a in axes:
            cloud = ellipsoid_surface(a, int(rng.integers(300, 1500)), rng)
            normals = cloud / a**2 if rng.random() < 0.5 else None
            ready, frame = prepare_points(cloud, normals, config, int(rng.integers(1 << 30)))
            q = np.concatenate([rng.uniform(-0.55, 0.55, (512, 3)), ellipsoid_surface(a, 512, rng, noise=0.05)])
            prepared.append(ready)
            labels.append(ellipsoid_occupancy(q, a))
            queries.append(((q - frame.as_array()) / frame.scale).astype(np.float32))
        inputs, neighbours = point_attention_batch(prepared, queries, config, rng)
        logits = model(torch.from_numpy(np.stack(queries)), inputs, neighbours)
        loss = F.binary_cross_entropy_with_logits(logits, torch.tensor(np.stack(labels), dtype=torch.float32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return save_checkpoint(model.eval(), path)
