"""Which files the backend reads, by extension. Standard library only: the add-on shares it without torch."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
TEXT_CLOUD_SUFFIXES = {".xyz", ".txt", ".pts", ".csv"}
MESH_SUFFIXES = {".ply", ".obj", ".stl", ".off", ".glb", ".gltf"}
ARRAY_SUFFIXES = {".npy", ".npz"}
SUPPORTED = sorted(IMAGE_SUFFIXES | TEXT_CLOUD_SUFFIXES | MESH_SUFFIXES | ARRAY_SUFFIXES)
# Formats trimesh writes a triangle mesh to without optional packages (.3mf needs lxml, .dae pycollada).
MESH_OUTPUT_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
LATENT_MARKER = "occnet_latent"  # the entry that marks a saved latent (.npz): a shape's code, not an input


def input_kind(path: str | Path) -> str:
    """The model input a file gives: "image" for pictures, "pointcloud" for clouds, meshes and arrays."""
    return "image" if Path(path).suffix.lower() in IMAGE_SUFFIXES else "pointcloud"
