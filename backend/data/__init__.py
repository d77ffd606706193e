"""Training data: procedural shape families, the user's mesh folders, samplers and a renderer for image inputs."""
