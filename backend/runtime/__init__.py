"""The bundled CPU engine: everything the worker needs to reconstruct inside Blender's own Python, with only the
standard library, numpy and ONNX Runtime, plus Pillow and trimesh when a file is read (never torch, SciPy or
scikit-image; tests check it).

    model.load_runtime_model(name) -> RuntimeModel      encode(canonical input) -> code, logits(code, points)
        the shipped models' ONNX graphs (written by `python -m backend export-onnx`), weights read from the
        model's .safetensors file
    extract.extract_mesh(logits, ExtractOptions, progress, cancel) -> (backend.mesh.Mesh, ExtractStats)
        MISE + marching cubes + normals for a callable logits(points (N, 3) float32) -> (N,) float32
    reconstruct.encode(model, observation) -> Latent; reconstruct.extract(model, latent, options) -> (Mesh, stats)
        an observation to a mesh in its source's frame (the worker and `evaluate --engine runtime`)
    marching.marching_cubes(values, level) -> (vertices, faces)    the numpy marching cubes (both engines)
    mise.mise_grid / dense_grid / valid_resolutions                 the grid both engines extract from
    worker (python -m backend.runtime.worker)                      the add-on's worker protocol on this engine,
        served by backend/serve.py like the PyTorch worker; latents interchangeable with it
Inputs are prepared by backend.inputs.network.network_input (both engines' one preparation, numpy only); a mesh
goes back to the source's frame with Mesh.transformed (float64).
"""
