"""Blender's objects in and out: the selection read as observations, the result objects with their meshes and
latents, and the blends between them."""
