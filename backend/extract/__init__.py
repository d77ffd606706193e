"""Turning an occupancy field into a mesh: MISE, marching cubes, refinement, simplification, normals."""

from .pipeline import ExtractOptions, ExtractStats, extract_mesh

__all__ = ["ExtractOptions", "ExtractStats", "extract_mesh"]
