"""The two engines behind one seam (`base.Engine`): PyTorch (`pytorch`, CUDA/MPS/CPU, training, refinement) and
the built-in CPU runtime (`onnx_runtime`, ONNX Runtime and numpy, what runs inside Blender). `base.reconstruct` and
`base.extract` are the one way from an observation or a latent to a mesh, whichever engine runs.

    load_engine(name, engine="torch", device="auto")   # or engine="runtime"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the protocol imports EngineName from here, and must not load the engines' modules with it
    from .base import Engine

EngineName = Literal["torch", "runtime"]
ENGINES: tuple[EngineName, ...] = ("torch", "runtime")


def load_engine(
    name_or_path: str | Path, engine: EngineName = "torch", device: str = "auto", threads: int = 0
) -> Engine:
    """A model on an engine; only the engine's own libraries are imported (the runtime never imports torch)."""
    if engine == "runtime":
        from .onnx_runtime import load_runtime_engine

        return load_runtime_engine(name_or_path, threads)
    from .pytorch import load_torch_engine

    return load_torch_engine(name_or_path, device)
