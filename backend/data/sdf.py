"""Signed-distance trees: primitives, placement, and CSG (union, intersection, difference, smooth union).

Negative inside. Union and difference keep the sign exact even where the distance is only a bound,
so occupancy (sdf <= 0) is exact, which is what the training labels use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Tensor = torch.Tensor
EPS = 1e-12  # keeps sqrt differentiable on axes and surfaces; shifts distances by 1e-6 at most


class Node:
    def __call__(self, p: Tensor) -> Tensor:
        raise NotImplementedError


class Primitive(Node):
    """A primitive at `center`, turned by `yaw`/`pitch`/`roll` (radians, about Z, X, Y)."""

    def __init__(self, fn: Callable[..., Tensor], center=(0.0, 0.0, 0.0), yaw=0.0, pitch=0.0, roll=0.0, **params):
        self.fn = fn
        self.center = torch.tensor(center, dtype=torch.float32)
        self.rotation = _rotation(yaw, pitch, roll)
        self.params = params

    def __call__(self, p: Tensor) -> Tensor:
        local = (p - self.center.to(p)) @ self.rotation.to(p)
        return self.fn(local, **self.params)


class Union(Node):
    def __init__(self, *children: Node, smooth: float = 0.0):
        self.children = children
        self.smooth = smooth

    def __call__(self, p: Tensor) -> Tensor:
        d = self.children[0](p)
        for child in self.children[1:]:
            d = smooth_min(d, child(p), self.smooth) if self.smooth > 0 else torch.minimum(d, child(p))
        return d


class Intersection(Node):
    def __init__(self, *children: Node):
        self.children = children

    def __call__(self, p: Tensor) -> Tensor:
        d = self.children[0](p)
        for child in self.children[1:]:
            d = torch.maximum(d, child(p))
        return d


class Difference(Node):
    def __init__(self, base: Node, *cuts: Node):
        self.base = base
        self.cuts = cuts

    def __call__(self, p: Tensor) -> Tensor:
        d = self.base(p)
        for cut in self.cuts:
            d = torch.maximum(d, -cut(p))
        return d


class Normalized(Node):
    """The tree seen through canonical = (world - center) / scale, with distances in canonical units."""

    def __init__(self, tree: Node, center: Sequence[float], scale: float):
        self.tree = tree
        self.center = torch.tensor(center, dtype=torch.float32)
        self.scale = float(scale)

    def __call__(self, p: Tensor) -> Tensor:
        return self.tree(p * self.scale + self.center.to(p)) / self.scale


class Placed(Node):
    """A copy of a tree scaled by `scale`, turned by `yaw` about Z and moved to `offset`: an object put in a scene."""

    def __init__(self, tree: Node, offset: Sequence[float], yaw: float = 0.0, scale: float = 1.0):
        self.tree = tree
        self.offset = torch.tensor(offset, dtype=torch.float32)
        self.rotation = _rotation(yaw, 0.0, 0.0)
        self.scale = float(scale)

    def __call__(self, p: Tensor) -> Tensor:
        return self.tree((p - self.offset.to(p)) @ self.rotation.to(p) / self.scale) * self.scale


def smooth_min(a: Tensor, b: Tensor, k: float) -> Tensor:
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _rotation(yaw: float, pitch: float, roll: float) -> Tensor:
    cz, sz, cx, sx, cy, sy = (f(a) for a in (yaw, pitch, roll) for f in (math.cos, math.sin))
    rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return rz @ rx @ ry  # the primitive is turned by this R, so local = (world - center) @ R


def _radial(p: Tensor) -> Tensor:
    return torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2 + EPS)


# --- primitives in their local frame (Z up) -----------------------------------------------------------


def sphere(p: Tensor, radius: float) -> Tensor:
    return p.norm(dim=-1) - radius


def ellipsoid(p: Tensor, radii: Sequence[float]) -> Tensor:
    r = torch.tensor(radii, dtype=p.dtype, device=p.device)
    k0 = (p / r).norm(dim=-1)
    k1 = (p / (r * r)).norm(dim=-1).clamp_min(1e-9)
    return k0 * (k0 - 1.0) / k1


def box(p: Tensor, half: Sequence[float], rounding: float = 0.0) -> Tensor:
    q = p.abs() - (torch.tensor(half, dtype=p.dtype, device=p.device) - rounding)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0) - rounding


def cylinder(p: Tensor, radius: float, half_height: float, rounding: float = 0.0) -> Tensor:
    dx = _radial(p) - (radius - rounding)
    dz = p[..., 2].abs() - (half_height - rounding)
    d = torch.stack([dx, dz], dim=-1)
    return d.clamp_min(0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0) - rounding


def cone(p: Tensor, r_bottom: float, r_top: float, half_height: float) -> Tensor:
    """Capped cone (frustum) along Z, exact (after Inigo Quilez)."""
    qx = _radial(p)
    qy = p[..., 2]
    k2x, k2y = r_top - r_bottom, 2.0 * half_height
    cax = qx - torch.minimum(qx, torch.where(qy < 0, torch.full_like(qy, r_bottom), torch.full_like(qy, r_top)))
    cay = qy.abs() - half_height
    t = (((r_top - qx) * k2x + (half_height - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0.0, 1.0)
    cbx = qx - r_top + k2x * t
    cby = qy - half_height + k2y * t
    sign = torch.where((cbx < 0) & (cay < 0), -1.0, 1.0)
    return sign * torch.sqrt(torch.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby) + EPS)


def torus(p: Tensor, major: float, minor: float) -> Tensor:
    ring = _radial(p) - major
    return torch.sqrt(ring**2 + p[..., 2] ** 2 + EPS) - minor


def capsule(p: Tensor, half_length: float, radius: float) -> Tensor:
    """A segment along Z from -half_length to +half_length, thickened by radius."""
    z = p[..., 2].clamp(-half_length, half_length)
    return torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2 + (p[..., 2] - z) ** 2 + EPS) - radius
