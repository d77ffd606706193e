"""A scan's colour carried onto its reconstruction: each vertex takes the inverse-distance weighted colour of the
input points nearest it, as Open3D, MeshLab and CloudCompare do. numpy only (the exact neighbour search both
engines share), so the built-in runtime colours its meshes exactly as the PyTorch engine does."""

from __future__ import annotations

import numpy as np

from .inputs.neighbours import nearest
from .inputs.observation import Observation, PointCloudInput
from .surface.frame import Frame
from .surface.mesh import Mesh

COLOR_NEIGHBOURS = 4  # input points blended into a vertex's colour: one alone shows the scan's noise as speckle


def colored(mesh: Mesh, points: np.ndarray, colors: np.ndarray, frame: Frame) -> Mesh:
    """The mesh (in the points' frame) with per-vertex colours from the points'. The search runs in the shape's
    canonical frame (`frame`), where float32 keeps a georeferenced scan's detail."""
    center, scale = frame.as_array(), frame.scale
    cloud = (np.asarray(points, np.float64) - center) / scale
    queries = (mesh.vertices.astype(np.float64) - center) / scale
    return Mesh(mesh.vertices, mesh.faces, mesh.normals, neighbour_colors(cloud, colors, queries))


def neighbour_colors(points: np.ndarray, colors: np.ndarray, queries: np.ndarray, k: int = COLOR_NEIGHBOURS):
    """(Q, 3) float32: each query's inverse-distance weighted colour of its k nearest points (exact search, numpy
    or SciPy). The add-on calls it with k=1 to carry a result's colours onto its re-extracted mesh."""
    cloud, queries = np.asarray(points, np.float32), np.asarray(queries, np.float32)
    found = nearest(cloud, k, queries)
    distance = np.linalg.norm(cloud[found] - queries[:, None, :], axis=2)
    weights = 1.0 / np.maximum(distance, 1e-6)
    weights /= weights.sum(axis=1, keepdims=True)
    blended = np.einsum("vk,vkc->vc", weights, np.asarray(colors, np.float32)[found])
    return np.clip(blended, 0.0, 1.0).astype(np.float32)


def with_input_colors(mesh: Mesh, observation: Observation, frame: Frame) -> Mesh:
    """The mesh coloured from the observation when it is a point cloud with colours; else the mesh as it is."""
    if not isinstance(observation, PointCloudInput) or observation.colors is None:
        return mesh
    return colored(mesh, observation.points, observation.colors, frame)
