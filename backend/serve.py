"""Serving the worker protocol (protocol.py) on stdin/stdout, on either engine (`backend.engines`): framing, the
reader thread, the job queue, cancel, progress, the handlers (one table, `HANDLERS`), error kinds, stdout handed
to the protocol alone, ending with stdin or the parent. Never imports torch itself: the PyTorch engine's modules
load only in a worker that runs it.

Jobs run one at a time on the main thread, models stay loaded between jobs, and a reader thread keeps
listening so that a cancel arrives mid-job. The reader answers every malformed message with a "protocol" error
and reads on; the worker ends when its stdin closes or its parent process goes away, so it never outlives
Blender. A failure that is not the backend's own error is a bug: "internal", its traceback in the worker's log.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .config import ModelConfig
from .engines import EngineName, host
from .engines.base import Engine, extract, reconstruct
from .errors import Cancelled, DeviceError, EmptySurfaceError, InputError, ModelLoadError, OccNetError
from .inputs import ImageInput, Observation, PointCloudInput, VoxelInput
from .inputs.network import check_input_kind
from .inputs.views import View
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
    LatentInfo,
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
from .registry import ModelEntry, default_model, list_models
from .surface.frame import Frame
from .surface.latent import Latent, interpolate
from .surface.mesh import Mesh

PARENT_POLL_SECONDS = 1.0
OUT_OF_MEMORY = "The GPU ran out of memory. Lower the resolution, or set the device to CPU."
OBSERVATIONS = {"points": PointCloudInput, "pixels": ImageInput, "voxels": VoxelInput}  # by request field
_ERRORS = (
    (Cancelled, "cancelled"),
    (InputError, "input"),
    (ModelLoadError, "model"),
    (DeviceError, "device"),
    (EmptySurfaceError, "empty"),
    (OccNetError, "input"),
    (ProtocolError, "protocol"),
)


def default_log_path() -> Path:
    """Where a worker writes the tracebacks of its bugs: one file per process, in the system's temporary folder."""
    return Path(tempfile.gettempdir()) / f"occnet-worker-{os.getpid()}.log"


class Server:
    """A worker: jobs one at a time on the main thread, each answered by its handler in `HANDLERS`, with the
    models loaded on this worker's engine once and kept."""

    def __init__(
        self,
        channel: BinaryIO,
        engine: EngineName = "torch",
        device: str = "auto",
        threads: int = 0,
        log_path: Path | None = None,
    ) -> None:
        self.channel = channel
        self.engine, self.device, self.threads = engine, device, threads
        self.host = host(engine)
        self.log_path = log_path or default_log_path()
        self.loaded: dict[str, Engine] = {}
        self.jobs: queue.Queue[tuple[int | None, Request] | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.running: int | None = None
        self.lock = threading.Lock()  # guards cancelled and running; never held while writing
        self.write_lock = threading.Lock()  # one message at a time on stdout
        self.closing = threading.Event()

    def send(self, message: object, msg_id: int | None) -> None:
        try:
            wire = encode(message, msg_id)
            json.dumps(wire.fields)  # fails here, before a byte is written, rather than mid-message
        except Exception as exc:  # a reply that cannot be encoded still gets an answer, and the worker lives
            wire = encode(self.bug_reply(exc), msg_id)
        with self.write_lock:
            try:
                write_message(self.channel, wire)
            except (BrokenPipeError, OSError, ValueError):
                self.closing.set()

    def read_requests(self, stream: BinaryIO) -> None:
        """Reader thread: cancels act at once, everything else queues for the main thread. It ends only at the
        end of stdin (or a shutdown): a malformed message gets an error reply and the next one is read."""
        try:
            while not self.closing.is_set():
                try:
                    message = read_message(stream)
                    if message is None:
                        break
                    request = decode_request(message)
                except ProtocolError as exc:
                    if not exc.in_step:  # what follows cannot be found: end, and the add-on starts a new worker
                        self.send(ErrorReply("protocol", f"Malformed request ({exc}); the worker stops."), exc.id)
                        break
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
            reply = HANDLERS[type(request)](self, request, job)
        except Exception as exc:  # the worker must answer every job, whatever broke
            reply = self.error_reply(exc)
        finally:
            with self.lock:
                self.running = None
                self.cancelled.discard(job)
            self.host.after_job()
        self.send(reply, job)

    def error_reply(self, exc: BaseException) -> ErrorReply:
        """The reply for an exception a job raised: the backend's own errors by kind, a GPU out of memory as
        "oom"; anything else is a bug."""
        for kind_of, kind in _ERRORS:
            if isinstance(exc, kind_of):
                return ErrorReply(kind, "Cancelled; nothing was changed." if kind == "cancelled" else str(exc))
        if self.host.out_of_memory(exc):
            return ErrorReply("oom", OUT_OF_MEMORY)
        return self.bug_reply(exc)

    def bug_reply(self, exc: BaseException) -> ErrorReply:
        """A bug: its traceback to the worker's log (and stderr), the user told where it is."""
        text = "".join(traceback.format_exception(exc))
        print(text, file=sys.stderr)
        try:
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            where = f"the worker's log, {self.log_path}"
        except OSError:
            where = "the Blender console (the worker's log could not be written)"
        return ErrorReply(
            "internal",
            f"The backend failed unexpectedly ({type(exc).__name__}: {exc}). This is a bug: please report it with "
            f"the traceback in {where}.",
        )

    # --- the handlers ----------------------------------------------------------------------------------

    def hello(self, request: HelloRequest, job: int | None) -> HelloReply:
        from . import __version__

        library, device, devices = self.host.describe(self.device)
        return HelloReply(PROTOCOL_VERSION, __version__, library, device, devices, os.getpid(), self.engine)

    def models(self, request: ModelsRequest, job: int | None) -> ModelsReply:
        return ModelsReply([model_info(e) for e in list_models(request.extra_dirs) if self.host.runs(e)])

    def reconstruct(self, request: ReconstructRequest, job: int | None) -> ReconstructReply:
        observation = request_observation(request)
        engine = self.load(request.model, observation)
        result = reconstruct(engine, observation, request.options, self.progress(job), self.cancel_check(job))
        return mesh_reply(result.mesh, result.stats, result.latent)

    def encode(self, request: EncodeRequest, job: int | None) -> EncodeReply:
        observation = request_observation(request)
        latent = self.load(request.model, observation).encode(observation)
        return EncodeReply(latent=latent_info(latent), code=latent.code)

    def extract(self, request: ExtractRequest, job: int | None) -> MeshReply:
        engine = self.load(request.model)
        latent = latent_from(request.latent, request.code, engine.name, engine.config)
        return self.mesh_of(engine, latent, request, job)

    def interpolate(self, request: InterpolateRequest, job: int | None) -> MeshReply:
        engine = self.load(request.model)
        a = latent_from(request.a, request.code_a, engine.name, engine.config)
        b = latent_from(request.b, request.code_b, engine.name, engine.config)
        return self.mesh_of(engine, interpolate(a, b, request.t, request.method), request, job)

    def mesh_of(
        self, engine: Engine, latent: Latent, request: ExtractRequest | InterpolateRequest, job: int | None
    ) -> MeshReply:
        mesh, stats = extract(engine, latent, request.options, self.progress(job), self.cancel_check(job))
        return mesh_reply(mesh, stats.as_dict())

    # --- for the handlers -------------------------------------------------------------------------------

    def load(self, name: str, observation: Observation | None = None) -> Engine:
        """The requested model on this worker's engine, loaded once; "auto" is the shipped default for the
        observation's kind, and an observation of another kind is refused."""
        name = model_name(name, observation.kind if observation is not None else None)
        if name not in self.loaded:
            self.loaded[name] = self.host.load(name, self.device, self.threads)
        engine = self.loaded[name]
        if observation is not None:
            check_input_kind(engine.name, engine.config.input_kind, observation)
        return engine

    def cancel_check(self, job: int | None):
        return lambda: job in self.cancelled or self.closing.is_set()

    def progress(self, job: int | None):
        last = [0.0]

        def report(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if fraction in (0.0, 1.0) or now - last[0] > 0.05:
                last[0] = now
                self.send(Progress(stage, round(float(fraction), 4)), job)

        return report


HANDLERS: dict[type, Callable[[Server, Any, int | None], object]] = {
    HelloRequest: Server.hello,
    ModelsRequest: Server.models,
    ReconstructRequest: Server.reconstruct,
    EncodeRequest: Server.encode,
    ExtractRequest: Server.extract,
    InterpolateRequest: Server.interpolate,
}


def request_observation(request: ObservationSource) -> Observation:
    """What a request carries: a file the worker reads (as the CLI does), or an array."""
    if request.input_path is not None:
        from .inputs.files import load_observation  # trimesh and Pillow, imported when a file comes

        return load_observation(request.input_path)
    if request.points is not None:
        return PointCloudInput(request.points, request.point_normals, request.point_colors)
    if request.views is not None:
        views = [View(*(tuple(float(v) for v in row) for row in view)) for view in np.asarray(request.views)]
        (first, *more), (view, *more_views) = request.pictures(), views
        return ImageInput(first, view, tuple(zip(more, more_views, strict=True)))
    for name, kind in OBSERVATIONS.items():
        if getattr(request, name) is not None:
            return kind(getattr(request, name))
    raise InputError("The request carries no input: send 'input_path' or an array 'points', 'pixels' or 'voxels'.")


def model_name(name: str, input_kind: str | None) -> str:
    """The model a request names; "auto" is the shipped default for the input's kind."""
    if name != AUTO_MODEL:
        return name
    if input_kind is None:
        raise InputError("Name the model: 'auto' only works where there is an input to choose by.")
    return default_model(input_kind)


def model_info(entry: ModelEntry) -> ModelInfo:
    """What the add-on lists of a model."""
    config = entry.config
    return ModelInfo(
        name=entry.name,
        input_kind=config.input_kind,
        architecture=config.architecture,
        latent_shape=tuple(config.latent_shape),
        size_mb=round(entry.size_mb, 2),
        threshold=config.threshold,
        c_dim=config.c_dim,
        evaluation=config.evaluation or {},
    )


def latent_info(latent: Latent) -> LatentInfo:
    return LatentInfo(latent.model, tuple(latent.frame.center), latent.frame.scale, latent.blends_by_field)


def latent_from(info: LatentInfo, code: np.ndarray, model: str, config: ModelConfig) -> Latent:
    """A latent the add-on sent back: float16 as it stores them (or float32), in any shape with the model's
    number of values; the model reshapes it and checks the count. Point-attention latents blend by field."""
    try:
        where = Frame.of(info.center, info.scale)
    except (ValueError, TypeError):
        raise InputError(f"A latent's centre must be three numbers (x, y, z), not {info.center}.") from None
    by_field = config.architecture == "attention"
    return Latent(np.asarray(code, np.float32).ravel().copy(), info.latent_model or model, where, by_field)


def mesh_reply(mesh: Mesh, stats: dict, latent: Latent | None = None) -> MeshReply:
    """The mesh (and, for a reconstruction, the latent the add-on keeps for blends)."""
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces, "normals": mesh.normals, "colors": mesh.colors}
    if latent is not None:
        return ReconstructReply(**arrays, stats=stats, latent=latent_info(latent), code=latent.code)
    return MeshReply(**arrays, stats=stats)


def protocol_channel() -> BinaryIO:
    """The real stdout, for protocol messages alone; file descriptor 1 and sys.stdout go to stderr from here on."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return channel


def serve_forever(server: Server) -> None:
    """Read requests from stdin on a thread, watch the parent on another, run jobs here until the end."""
    threading.Thread(target=server.read_requests, args=(sys.stdin.buffer,), daemon=True).start()
    threading.Thread(target=_watch_parent, args=(os.getppid(), server.closing), daemon=True).start()
    server.serve()


def _watch_parent(parent: int, closing: threading.Event) -> None:
    while not closing.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os._exit(0)
