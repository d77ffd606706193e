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


def torus_knot_mesh(p: int = 2, q: int = 3, tube: float = 0.06, segments: int = 600, sides: int = 24):
    """A closed tube around the (p, q) torus knot, longest side about 1: one watertight piece of genus 1, whose
    strands pass within a few tube widths of each other (a trimesh.Trimesh)."""
    import trimesh

    t = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    radius = 0.3 + 0.12 * np.cos(q * t)
    curve = np.stack([radius * np.cos(p * t), radius * np.sin(p * t), 0.12 * np.sin(q * t)], axis=1)
    tangent = np.roll(curve, -1, axis=0) - np.roll(curve, 1, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent, [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    angle = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    ring = np.cos(angle)[None, :, None] * normal[:, None] + np.sin(angle)[None, :, None] * binormal[:, None]
    vertices = (curve[:, None] + tube * ring).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(segments), np.arange(sides), indexing="ij")
    a, b = i * sides + j, ((i + 1) % segments) * sides + j
    c, d = ((i + 1) % segments) * sides + (j + 1) % sides, i * sides + (j + 1) % sides
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh
