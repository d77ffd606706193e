"""The worker for the built-in CPU runtime: the same protocol (backend/protocol.py), served by the same loop
(backend/serve.py) as the PyTorch worker, with handlers that run the shipped models' ONNX graphs on ONNX
Runtime. It needs only the standard library, numpy, onnxruntime, and (to read files) Pillow and trimesh: what
Blender ships and the extension's zip bundles, so it runs in Blender's own Python:

    python -m backend.runtime.worker

Its latents are the PyTorch worker's (same code layout, same frame): either engine extracts the other's. The
face budget and refinement need the PyTorch backend, and asking for them here is an "input" error that says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, BinaryIO

from .. import __version__
from ..inputs import Observation
from ..inputs.network import check_input_kind
from ..latent import Latent
from ..mesh import Mesh
from ..protocol import (
    PROTOCOL_VERSION,
    Extraction,
    HelloReply,
    HelloRequest,
    ModelsReply,
    ModelsRequest,
)
from ..registry import ModelEntry, list_models
from ..serve import (
    Server,
    model_info,
    model_name,
    protocol_channel,
    serve_forever,
)
from .extract import ExtractOptions, ExtractStats
from .graphs import graph_path, stages

if TYPE_CHECKING:
    from .model import RuntimeModel

ENGINE = "runtime"


def has_graphs(entry: ModelEntry) -> bool:
    """A model the runtime can run: its ONNX graphs lie beside its checkpoint."""
    return all(graph_path(entry.path, stage).is_file() for stage in stages(entry.config.architecture))


class RuntimeWorker(Server):
    def __init__(self, channel: BinaryIO, threads: int = 0) -> None:
        super().__init__(channel)
        self.threads = threads
        self.models: dict[str, RuntimeModel] = {}

    # --- request handlers: (request, id) -> reply -----------------------------------------------------

    def do_hello(self, request: HelloRequest, job: int | None) -> HelloReply:
        return HelloReply(PROTOCOL_VERSION, __version__, None, "cpu", ["cpu"], os.getpid(), engine=ENGINE)

    def do_models(self, request: ModelsRequest, job: int | None) -> ModelsReply:
        return ModelsReply([model_info(e) for e in list_models(request.extra_dirs) if has_graphs(e)])

    # --- helpers --------------------------------------------------------------------------------------

    def model(self, name: str, observation: Observation | None = None) -> RuntimeModel:
        from .model import load_runtime_model

        name = model_name(name, observation.kind if observation is not None else None)
        if name not in self.models:
            self.models[name] = load_runtime_model(name, self.threads)
        model = self.models[name]
        if observation is not None:
            check_input_kind(model.name, model.config.input_kind, observation)
        return model

    def extraction(self, request: Extraction, model: RuntimeModel, job: int | None) -> ExtractOptions:
        """The request's extraction settings, checked before any work (the face budget and refinement are
        refused here, naming the PyTorch backend)."""
        threshold = model.config.threshold if request.threshold is None else request.threshold
        options = ExtractOptions(
            resolution=request.resolution,
            threshold=threshold,
            refine_steps=request.refine_steps,
            faces=request.faces,
            normals=request.normals,
            normals_from_mesh=model.config.mesh_normals,
            min_piece=request.min_piece,
        )
        options.validate_for_runtime()
        return options

    def encode(self, model: RuntimeModel, observation: Observation) -> Latent:
        from .reconstruct import encode

        return encode(model, observation)

    def extract(
        self, model: RuntimeModel, latent: Latent, extraction: ExtractOptions, job: int | None, stats: ExtractStats
    ) -> Mesh:
        from .reconstruct import extract

        return extract(model, latent, extraction, self.progress(job), self.cancel_check(job), stats)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.runtime.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="accepted for the add-on's sake; the runtime runs on the CPU")
    parser.add_argument("--threads", type=int, default=0, help="threads per model; 0: as PyTorch")
    args = parser.parse_args(argv)
    channel = protocol_channel()
    from . import model  # noqa: F401  (ONNX Runtime: loaded now that stdout is safe, so hello is quick)

    serve_forever(RuntimeWorker(channel, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
