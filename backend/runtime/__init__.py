"""ONNX Runtime's part of the built-in CPU engine (`backend.engines.onnx_runtime`): the shipped models' graphs run
in Blender's own Python with only the standard library, numpy and ONNX Runtime (never torch, SciPy or
scikit-image; tests check it).

    model.load_runtime_model(name) -> RuntimeModel      encode(canonical input) -> code, field(code) -> logits
        the shipped models' ONNX graphs (written by `python -m backend export-onnx`), weights read from the
        model's .safetensors file
    graphs                                              where the graphs lie beside a checkpoint, what they record
"""
