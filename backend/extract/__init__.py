"""Turning a torch occupancy field into a mesh: the runtime's MISE and marching cubes, plus refinement,
simplification and gradient normals, which need torch."""

from .pipeline import ExtractOptions, ExtractStats, extract_mesh

__all__ = ["ExtractOptions", "ExtractStats", "extract_mesh"]
