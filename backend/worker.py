"""The process the Blender add-on starts: serves protocol requests (see protocol.py) on stdin/stdout.

Jobs run one at a time on the main thread, models stay loaded between jobs, and a reader thread
keeps listening so that a cancel arrives mid-job. The reader answers every malformed frame with a
"protocol" error and reads on; the worker ends when its stdin closes or its parent process goes
away, so it never outlives Blender. torch and the modules that import it load only in `main`, after
stdout is handed to the protocol alone, so nothing a library prints at import corrupts a frame.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from . import __version__
from .errors import Cancelled, DeviceError, EmptySurfaceError, InputError, ModelLoadError, OccNetError
from .inputs import Frame, ImageInput, Observation, PointCloudInput, VoxelInput, load_observation
from .protocol import (
    AUTO_MODEL,
    PROTOCOL_VERSION,
    CancelRequest,
    EncodeReply,
    EncodeRequest,
    ErrorReply,
    ExtractRequest,
    HelloReply,
    HelloRequest,
    InterpolateRequest,
    LatentFrame,
    MeshReply,
    ModelInfo,
    ModelsReply,
    ModelsRequest,
    ObservationSource,
    Progress,
    ProtocolError,
    ReconstructReply,
    ReconstructRequest,
    Request,
    ShutdownRequest,
    decode_request,
    encode,
    read_message,
    write_message,
)

if TYPE_CHECKING:
    from .api import Latent, Model, Reconstruction

PARENT_POLL_SECONDS = 1.0
_OBSERVATION_ARRAYS = {"points": PointCloudInput, "pixels": ImageInput, "voxels": VoxelInput}
_ERRORS = (
    (Cancelled, "cancelled"),
    (InputError, "input"),
    (ModelLoadError, "model"),
    (DeviceError, "device"),
    (EmptySurfaceError, "empty"),
    (OccNetError, "input"),
)
_OOM_MESSAGE = "The GPU ran out of memory. Lower the resolution, or set the device to CPU."


def error_reply(exc: BaseException, request: str) -> ErrorReply:
    """The reply for an exception a job raised: the backend's own errors by type, the rest as internal."""
    import torch

    # torch.OutOfMemoryError is PyTorch 2.5+; torch.cuda.OutOfMemoryError (its base there) is older than 2.1
    if isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return ErrorReply("oom", _OOM_MESSAGE)
    for kind_of, kind in _ERRORS:
        if isinstance(exc, kind_of):
            return ErrorReply(kind, "Cancelled; nothing was changed." if kind == "cancelled" else str(exc))
    if isinstance(exc, ProtocolError | KeyError | TypeError | ValueError):
        return ErrorReply("protocol", f"Malformed '{request}' request: {exc}.")
    traceback.print_exception(exc, file=sys.stderr)
    return ErrorReply("internal", f"The backend failed unexpectedly: {exc!r}. Details are in the backend log.")


class Worker:
    def __init__(self, channel: BinaryIO, device: str) -> None:
        self.channel = channel
        self.device = device
        self.models: dict[tuple[str, str], Model] = {}
        self.jobs: queue.Queue[tuple[int | None, Request] | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.running: int | None = None
        self.lock = threading.Lock()  # guards cancelled and running; never held while writing
        self.write_lock = threading.Lock()  # one frame at a time on stdout
        self.closing = threading.Event()

    def send(self, message: object, msg_id: int | None) -> None:
        try:
            frame = encode(message, msg_id)
            json.dumps(frame.fields)  # fails here, before a byte is written, rather than mid-frame
        except Exception as exc:  # a reply that cannot be encoded still gets an answer, and the worker lives
            traceback.print_exc(file=sys.stderr)
            frame = encode(ErrorReply("internal", f"The backend could not send its reply: {exc!r}."), msg_id)
        with self.write_lock:
            try:
                write_message(self.channel, frame)
            except (BrokenPipeError, OSError, ValueError):
                self.closing.set()

    def read_requests(self, stream: BinaryIO) -> None:
        """Reader thread: cancels act at once, everything else queues for the main thread. It ends only at the
        end of stdin (or a shutdown): a malformed frame gets an error reply and the next frame is read."""
        try:
            while not self.closing.is_set():
                try:
                    message = read_message(stream)
                    if message is None:
                        break
                    request = decode_request(message)
                except ProtocolError as exc:
                    self.send(ErrorReply("protocol", f"Malformed request ({exc}); it was ignored."), exc.id)
                    continue
                if isinstance(request, ShutdownRequest):
                    break
                if isinstance(request, CancelRequest):
                    with self.lock:
                        self.cancelled.add(request.target)
                    continue
                self.jobs.put((message.id, request))
        except Exception:  # a broken stdin (OSError, ValueError) or a bug: either way, end like at EOF
            traceback.print_exc(file=sys.stderr)
        finally:
            self.closing.set()
            with self.lock:
                if self.running is not None:
                    self.cancelled.add(self.running)
            self.jobs.put(None)

    def serve(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None or self.closing.is_set():
                return
            self.run(*item)

    def run(self, job: int | None, request: Request) -> None:
        with self.lock:
            skip = job in self.cancelled
            self.cancelled.discard(job)
            self.running = None if skip else job
        if skip:
            self.send(ErrorReply("cancelled", "Cancelled before it started."), job)
            return
        try:
            reply = getattr(self, f"do_{request.TYPE}")(request, job)
        except Exception as exc:  # the worker must answer every job, whatever broke
            reply = error_reply(exc, request.TYPE)
        finally:
            with self.lock:
                self.running = None
                self.cancelled.discard(job)
            _free_gpu_cache()
        self.send(reply, job)

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

        models = [
            ModelInfo(
                name=e.name,
                input_kind=e.config.input_kind,
                architecture=e.config.architecture,
                latent_shape=tuple(e.config.latent_shape),
                size_mb=round(e.size_mb, 2),
                threshold=e.config.threshold,
                c_dim=e.config.c_dim,
                evaluation=e.config.evaluation or {},
            )
            for e in list_models(request.extra_dirs)
        ]
        return ModelsReply(models)

    def do_reconstruct(self, request: ReconstructRequest, job: int | None) -> ReconstructReply:
        observation = self.observation(request)
        model = self.model(request.model, observation)
        result = model.reconstruct(observation, progress=self.progress(job), **self.extract_options(request, job))
        return _mesh_reply(result, with_latent=True)

    def do_encode(self, request: EncodeRequest, job: int | None) -> EncodeReply:
        observation = self.observation(request)
        latent = self.model(request.model, observation).encode(observation)
        return EncodeReply(latent=_latent_frame(latent), code=latent.code)

    def do_extract(self, request: ExtractRequest, job: int | None) -> MeshReply:
        model = self.model(request.model)
        latent = _latent_from(request.latent, request.code, model.name)
        return _mesh_reply(model.extract(latent, progress=self.progress(job), **self.extract_options(request, job)))

    def do_interpolate(self, request: InterpolateRequest, job: int | None) -> MeshReply:
        from .api import interpolate

        model = self.model(request.model)
        a = _latent_from(request.a, request.code_a, model.name)
        b = _latent_from(request.b, request.code_b, model.name)
        blend = interpolate(a, b, request.t, request.method)
        return _mesh_reply(model.extract(blend, progress=self.progress(job), **self.extract_options(request, job)))

    # --- helpers --------------------------------------------------------------------------------------

    def model(self, name: str, observation: Observation | None = None) -> Model:
        """The requested model, loaded once; "auto" is the shipped default for the observation's kind."""
        from .api import load_model
        from .registry import default_model

        if name == AUTO_MODEL:
            if observation is None:
                raise InputError("Name the model: 'auto' only works where there is an input to choose by.")
            name = default_model(observation.kind)
        key = (name, self.device)
        if key not in self.models:
            self.models[key] = load_model(name, self.device)
        return self.models[key]

    def observation(self, request: ObservationSource) -> Observation:
        if request.input_path is not None:
            return load_observation(request.input_path)
        for name, kind in _OBSERVATION_ARRAYS.items():
            if getattr(request, name) is not None:
                return kind(getattr(request, name))
        raise InputError("The request carries no input: send 'input_path' or an array 'points', 'pixels' or 'voxels'.")

    def extract_options(
        self, request: ReconstructRequest | ExtractRequest | InterpolateRequest, job: int | None
    ) -> dict:
        return {**request.extraction_options(), "cancel": lambda: job in self.cancelled or self.closing.is_set()}

    def progress(self, job: int | None):
        last = [0.0]

        def report(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if fraction in (0.0, 1.0) or now - last[0] > 0.05:
                last[0] = now
                self.send(Progress(stage, round(float(fraction), 4)), job)

        return report


def _free_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _latent_frame(latent: Latent) -> LatentFrame:
    return LatentFrame(latent.model, tuple(latent.frame.center), latent.frame.scale)


def _latent_from(frame: LatentFrame, code: np.ndarray, model: str) -> Latent:
    """A latent the add-on sent back: float16 as it stores them (or float32), in any shape with the model's
    number of values; the model reshapes it and checks the count."""
    from .api import Latent

    try:
        where = Frame.of(frame.center, frame.scale)
    except ValueError:
        raise InputError(f"A latent's center has {len(frame.center)} values; it needs 3 (x, y, z).") from None
    return Latent(np.asarray(code, np.float32).copy(), frame.latent_model or model, where)


def _mesh_reply(result: Reconstruction, with_latent: bool = False) -> MeshReply:
    """The mesh (and, for a reconstruction, the latent the add-on keeps for blends)."""
    mesh = {"vertices": result.mesh.vertices, "faces": result.mesh.faces, "normals": result.mesh.normals}
    if with_latent:
        return ReconstructReply(
            **mesh, stats=result.stats, latent=_latent_frame(result.latent), code=result.latent.code
        )
    return MeshReply(**mesh, stats=result.stats)


def _watch_parent(parent: int, closing: threading.Event) -> None:
    while not closing.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os._exit(0)


def _protocol_channel() -> BinaryIO:
    """The real stdout, for protocol frames alone; file descriptor 1 and sys.stdout go to stderr from here on."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return channel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="default device for jobs: auto, cuda, mps or cpu")
    args = parser.parse_args(argv)
    channel = _protocol_channel()
    from . import api  # noqa: F401  (torch, the models: loaded now that stdout is safe, so hello is quick)

    worker = Worker(channel, args.device)
    threading.Thread(target=worker.read_requests, args=(sys.stdin.buffer,), daemon=True).start()
    threading.Thread(target=_watch_parent, args=(os.getppid(), worker.closing), daemon=True).start()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
