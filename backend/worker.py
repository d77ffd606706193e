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
from .latent import interpolate
from .protocol import (
    PROTOCOL_VERSION,
    EncodeReply,
    EncodeRequest,
    ErrorReply,
    ExtractRequest,
    HelloReply,
    HelloRequest,
    InterpolateRequest,
    MeshReply,
    ModelsReply,
    ModelsRequest,
    ReconstructReply,
    ReconstructRequest,
)
from .serve import (
    Server,
    latent_frame,
    latent_from,
    mesh_reply,
    model_info,
    model_name,
    protocol_channel,
    request_observation,
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

    def do_reconstruct(self, request: ReconstructRequest, job: int | None) -> ReconstructReply:
        observation = request_observation(request)
        model = self.model(request.model, observation)
        result = model.reconstruct(observation, progress=self.progress(job), **self.extract_options(request, job))
        return mesh_reply(result.mesh, result.stats, result.latent)

    def do_encode(self, request: EncodeRequest, job: int | None) -> EncodeReply:
        observation = request_observation(request)
        latent = self.model(request.model, observation).encode(observation)
        return EncodeReply(latent=latent_frame(latent), code=latent.code)

    def do_extract(self, request: ExtractRequest, job: int | None) -> MeshReply:
        model = self.model(request.model)
        latent = latent_from(request.latent, request.code, model.name)
        result = model.extract(latent, progress=self.progress(job), **self.extract_options(request, job))
        return mesh_reply(result.mesh, result.stats)

    def do_interpolate(self, request: InterpolateRequest, job: int | None) -> MeshReply:
        model = self.model(request.model)
        a = latent_from(request.a, request.code_a, model.name)
        b = latent_from(request.b, request.code_b, model.name)
        blend = interpolate(a, b, request.t, request.method)
        result = model.extract(blend, progress=self.progress(job), **self.extract_options(request, job))
        return mesh_reply(result.mesh, result.stats)

    # --- helpers --------------------------------------------------------------------------------------

    def model(self, name: str, observation: Observation | None = None) -> Model:
        """The requested model, loaded once; "auto" is the shipped default for the observation's kind."""
        from .api import load_model

        name = model_name(name, observation.kind if observation is not None else None)
        key = (name, self.device)
        if key not in self.models:
            self.models[key] = load_model(name, self.device)
        return self.models[key]


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
