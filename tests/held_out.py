"""Held-out procedural shapes (the test split, never seen in training) and how well a reconstruction matches one.

Shared by the tests of the shipped models. IoU is measured in the input's own frame: a cloud turned by
`rotation` is compared with the shape turned the same way.
"""

from __future__ import annotations

import numpy as np

from backend.data.procedural import canonical_shape, occupancy, shape_id, shape_mesh, surface_samples
from backend.metrics import iou, mesh_contains
from backend.surface.mesh import Mesh

HELD_OUT = [("chair", 1), ("table", 4), ("car", 2), ("mug", 0), ("airplane", 3), ("sofa", 6)]
BOX_HALF = 0.55  # IoU is measured over the padded canonical box


def held_out_shape(category: str, index: int):
    return canonical_shape(category, int(shape_id("test", index)))


def noisy_scan(shape, rng: np.random.Generator, count: int = 300, noise: float = 0.005, mesh: Mesh | None = None):
    """`count` points on the shape's surface with Gaussian noise, as a scanner sees it."""
    cloud, _ = surface_samples(shape, mesh if mesh is not None else shape_mesh(shape), count, rng)
    return cloud + rng.normal(scale=noise, size=cloud.shape)


def mesh_iou(mesh: Mesh, shape, rng: np.random.Generator, rotation: np.ndarray | None = None, count: int = 50_000):
    """Volumetric IoU of a reconstructed mesh and the exact shape, in the frame of an input turned by
    `rotation` (row points p become p @ rotation.T)."""
    points = rng.uniform(-BOX_HALF, BOX_HALF, (count, 3))
    turned = points if rotation is None else points @ np.asarray(rotation).T
    return iou(mesh_contains(mesh.vertices, mesh.faces, turned), occupancy(shape, points))


def reconstruction_iou(model, observation, shape, rng: np.random.Generator, rotation=None, resolution=64) -> float:
    mesh = model.reconstruct(observation, resolution=resolution, normals=False).mesh
    return mesh_iou(mesh, shape, rng, rotation)
