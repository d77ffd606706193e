"""The bundled CPU runtime: the shipped models run with ONNX Runtime and numpy only, inside Blender's own Python.

Nothing here imports torch, SciPy, scikit-image, PIL or trimesh (tests/test_runtime_model.py checks it). The
graphs it runs are written by `python -m backend export-onnx` (backend/export_onnx.py) and read their weights
from the model's `.safetensors` file.
"""
