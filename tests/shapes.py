"""Analytic occupancy fields (logits = -k * signed distance) for testing extraction exactly."""

import numpy as np
import torch

SHARPNESS = 100.0


def sphere(p: torch.Tensor, radius: float = 0.35) -> torch.Tensor:
    return p.norm(dim=-1) - radius


def torus(p: torch.Tensor, major: float = 0.3, minor: float = 0.1) -> torch.Tensor:
    ring = torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - major
    return torch.sqrt(ring**2 + p[..., 2] ** 2) - minor


def thin_plate(p: torch.Tensor, half=(0.4, 0.4, 0.03)) -> torch.Tensor:
    q = p.abs() - torch.tensor(half, dtype=p.dtype, device=p.device)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def two_spheres(p: torch.Tensor) -> torch.Tensor:
    shift = torch.tensor([0.25, 0.0, 0.0], dtype=p.dtype, device=p.device)
    return torch.minimum(sphere(p - shift, 0.18), sphere(p + shift, 0.18))


SHAPES = {"sphere": sphere, "torus": torus, "thin_plate": thin_plate, "two_spheres": two_spheres}


def logits(sdf):
    return lambda p: -SHARPNESS * sdf(p)


def occupancy(sdf, points: np.ndarray) -> np.ndarray:
    return (sdf(torch.from_numpy(points)) <= 0).numpy()
