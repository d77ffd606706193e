"""The bundled CPU engine: everything the worker needs to reconstruct inside Blender's own Python, with only the
standard library, numpy and ONNX Runtime (never torch, SciPy, scikit-image, PIL or trimesh)."""
