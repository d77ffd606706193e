"""Rendering a signed distance by sphere tracing: shaded grey objects on a plain background, with alpha.

Images for the image encoder come from here; inference applies the same `prepare_image` to them as to
a user's photo, so training sees exactly what inference sees.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .sdf import Node

CAMERA_DISTANCE = 2.2
FIELD_OF_VIEW = math.radians(40.0)
STEPS = 64
ALBEDO = 0.75
AMBIENT = 0.25


def look_at(azimuth: float, elevation: float, distance: float = CAMERA_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Camera position and a 3x3 matrix whose rows are right, up and forward, looking at the origin."""
    eye = distance * np.array(
        [math.cos(elevation) * math.sin(azimuth), -math.cos(elevation) * math.cos(azimuth), math.sin(elevation)]
    )
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return eye, np.stack([right, up, forward])


@torch.no_grad()
def render(shape: Node, azimuth: float, elevation: float, size: int) -> np.ndarray:
    """RGBA uint8 image (size, size, 4) of the shape seen from (azimuth, elevation), in radians."""
    eye, axes = look_at(azimuth, elevation)
    pixel = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(-pixel, pixel, indexing="ij")
    half = math.tan(FIELD_OF_VIEW / 2)
    axes_t = torch.tensor(axes, dtype=torch.float32)
    directions = (u[..., None] * half * axes_t[0] + v[..., None] * half * axes_t[1] + axes_t[2]).reshape(-1, 3)
    directions = directions / directions.norm(dim=1, keepdim=True)
    origin = torch.tensor(eye, dtype=torch.float32)
    t = torch.full((len(directions),), CAMERA_DISTANCE - 1.0)
    hit = torch.zeros(len(directions), dtype=torch.bool)
    active = torch.ones(len(directions), dtype=torch.bool)
    for _ in range(STEPS):
        index = active.nonzero().squeeze(1)
        if len(index) == 0:
            break
        d = shape(origin + t[index, None] * directions[index])
        t[index] += d
        hit[index[d < 1e-3]] = True
        active[index[(d < 1e-3) | (t[index] > CAMERA_DISTANCE + 1.0)]] = False
    rgb = torch.ones(len(directions))
    index = hit.nonzero().squeeze(1)
    if len(index):
        points = (origin + t[index, None] * directions[index]).requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(shape(points).sum(), points)
        normal = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-9)
        light = torch.tensor(-0.4 * axes[0] + 0.6 * axes[1] - axes[2], dtype=torch.float32)
        light = light / light.norm()
        rgb[index] = ALBEDO * (AMBIENT + (1 - AMBIENT) * (normal @ light).clamp_min(0.0))
    gray = (rgb.reshape(size, size).numpy() * 255).round().astype(np.uint8)
    alpha = (hit.reshape(size, size).numpy() * 255).astype(np.uint8)
    return np.stack([gray, gray, gray, alpha], axis=-1)
