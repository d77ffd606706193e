"""The two engines behind one seam (`base.Engine`): PyTorch (`pytorch`, CUDA/MPS/CPU, training, refinement) and
the built-in CPU runtime (`onnx_runtime`, ONNX Runtime and numpy, what runs inside Blender). `base.reconstruct` and
`base.extract` are the one way from an observation or a latent to a mesh, whichever engine runs.

    load_engine(name, engine="torch", device="auto")   # or engine="runtime"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

if TYPE_CHECKING:  # the protocol imports EngineName from here, and must not load the engines' modules with it
    from ..registry import ModelEntry
    from .base import Engine

EngineName = Literal["torch", "runtime"]
ENGINES: tuple[EngineName, ...] = get_args(EngineName)


class Host(Protocol):
    """What a worker needs of its engine beyond a model: what to say in hello, which models it can run, how to
    load one, a failure of its own (PyTorch's GPU out of memory), and what to do after each job."""

    def describe(self, device: str) -> tuple[str | None, str, list[str]]:
        """The engine library's version (None for the runtime), the device jobs run on, every device there is."""
        ...

    def runs(self, entry: ModelEntry) -> bool: ...

    def load(self, name: str, device: str, threads: int) -> Engine: ...

    def out_of_memory(self, exc: BaseException) -> bool: ...

    def after_job(self) -> None: ...


def host(engine: EngineName) -> Host:
    """The engine's host, importing that engine's libraries (and only those) now."""
    if engine == "runtime":
        from .onnx_runtime import RuntimeHost

        return RuntimeHost()
    from .pytorch import TorchHost

    return TorchHost()


def load_engine(
    name_or_path: str | Path, engine: EngineName = "torch", device: str = "auto", threads: int = 0
) -> Engine:
    """A model on an engine; only the engine's own libraries are imported (the runtime never imports torch)."""
    return host(engine).load(name_or_path, device, threads)
