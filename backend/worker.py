"""The process the Blender add-on starts for the PyTorch engine: serves protocol requests (see protocol.py) on
stdin/stdout through backend/serve.py (reader thread, job queue, cancel, progress, error kinds), with the
request handlers that run the networks in torch. torch and the modules that import it load only in `main`,
after stdout is handed to the protocol alone, so nothing a library prints at import corrupts a frame.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, BinaryIO

from . import __version__
from .inputs import Observation
from .latent import Latent
from .mesh import Mesh
from .protocol import (
    PROTOCOL_VERSION,
    ErrorReply,
    Extraction,
    HelloReply,
    HelloRequest,
    ModelsReply,
    ModelsRequest,
)
from .runtime.extract import ExtractStats
from .serve import (
    Server,
    model_info,
    model_name,
    protocol_channel,
    serve_forever,
)
from .serve import error_reply as _engine_error_reply

if TYPE_CHECKING:
    from .api import Model

_OOM_MESSAGE = "The GPU ran out of memory. Lower the resolution, or set the device to CPU."


def error_reply(exc: BaseException, request: str) -> ErrorReply:
    """The reply for an exception a job raised: a GPU out of memory as "oom", the rest as any engine's."""
    import torch

    # torch.OutOfMemoryError is PyTorch 2.5+; torch.cuda.OutOfMemoryError (its base there) is older than 2.1
    if isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return ErrorReply("oom", _OOM_MESSAGE)
    return _engine_error_reply(exc, request)


class Worker(Server):
    def __init__(self, channel: BinaryIO, device: str) -> None:
        super().__init__(channel)
        self.device = device
        self.models: dict[tuple[str, str], Model] = {}

    def error_reply(self, exc: BaseException, request: str) -> ErrorReply:
        return error_reply(exc, request)

    def after_job(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- request handlers: (request, id) -> reply -----------------------------------------------------

    def do_hello(self, request: HelloRequest, job: int | None) -> HelloReply:
        import torch

        from .device import describe_devices, resolve_device

        device = resolve_device(self.device)
        return HelloReply(
            PROTOCOL_VERSION, __version__, torch.__version__, str(device), describe_devices(), os.getpid()
        )

    def do_models(self, request: ModelsRequest, job: int | None) -> ModelsReply:
        from .registry import list_models

        return ModelsReply([model_info(e) for e in list_models(request.extra_dirs)])

    # --- helpers --------------------------------------------------------------------------------------

    def model(self, name: str, observation: Observation | None = None) -> Model:
        from .api import load_model

        name = model_name(name, observation.kind if observation is not None else None)
        key = (name, self.device)
        if key not in self.models:
            self.models[key] = load_model(name, self.device)
        return self.models[key]

    def encode(self, model: Model, observation: Observation) -> Latent:
        return model.encode(observation)

    def extraction(self, request: Extraction, model: Model, job: int | None) -> dict:
        return {**request.extraction_options(), "cancel": self.cancel_check(job)}

    def extract(self, model: Model, latent: Latent, extraction: dict, job: int | None, stats: ExtractStats) -> Mesh:
        return model.extract(latent, progress=self.progress(job), stats=stats, **extraction).mesh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="default device for jobs: auto, cuda, mps or cpu")
    args = parser.parse_args(argv)
    channel = protocol_channel()
    from . import api  # noqa: F401  (torch, the models: loaded now that stdout is safe, so hello is quick)

    serve_forever(Worker(channel, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
