"""Serving the worker protocol (protocol.py) on stdin/stdout, for either engine: the PyTorch worker
(backend/worker.py) and the built-in CPU runtime's (backend/runtime/worker.py) subclass `Server` with their
request handlers; everything else (framing, the reader thread, the job queue, cancel, progress, error kinds,
stdout handed to the protocol alone, ending with stdin or the parent) is here, once, and never imports torch.

Jobs run one at a time on the main thread, models stay loaded between jobs, and a reader thread keeps
listening so that a cancel arrives mid-job. The reader answers every malformed frame with a "protocol" error
and reads on; the worker ends when its stdin closes or its parent process goes away, so it never outlives
Blender.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from typing import BinaryIO

import numpy as np

from .colors import with_input_colors
from .config import ModelConfig
from .errors import Cancelled, DeviceError, EmptySurfaceError, InputError, ModelLoadError, OccNetError
from .inputs import Frame, ImageInput, Observation, PointCloudInput, VoxelInput
from .latent import Latent, interpolate
from .mesh import Mesh
from .protocol import (
    AUTO_MODEL,
    CancelRequest,
    EncodeReply,
    EncodeRequest,
    ErrorReply,
    Extraction,
    ExtractRequest,
    InterpolateRequest,
    LatentFrame,
    MeshReply,
    ModelInfo,
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
from .registry import ModelEntry, default_model
from .runtime.extract import ExtractStats

PARENT_POLL_SECONDS = 1.0
OBSERVATIONS = {"points": PointCloudInput, "pixels": ImageInput, "voxels": VoxelInput}  # by request field
_ERRORS = (
    (Cancelled, "cancelled"),
    (InputError, "input"),
    (ModelLoadError, "model"),
    (DeviceError, "device"),
    (EmptySurfaceError, "empty"),
    (OccNetError, "input"),
)


def error_reply(exc: BaseException, request: str) -> ErrorReply:
    """The reply for an exception a job raised: the backend's own errors by type, the rest as internal."""
    for kind_of, kind in _ERRORS:
        if isinstance(exc, kind_of):
            return ErrorReply(kind, "Cancelled; nothing was changed." if kind == "cancelled" else str(exc))
    if isinstance(exc, ProtocolError | KeyError | TypeError | ValueError):
        return ErrorReply("protocol", f"Malformed '{request}' request: {exc}.")
    traceback.print_exception(exc, file=sys.stderr)
    return ErrorReply("internal", f"The backend failed unexpectedly: {exc!r}. Details are in the backend log.")


class Server:
    """The engine-independent part of a worker. A subclass adds `do_hello` and `do_models`, and the engine's part
    of the shape requests: `model`, `encode`, `extraction` and `extract`."""

    def __init__(self, channel: BinaryIO) -> None:
        self.channel = channel
        self.jobs: queue.Queue[tuple[int | None, Request] | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.running: int | None = None
        self.lock = threading.Lock()  # guards cancelled and running; never held while writing
        self.write_lock = threading.Lock()  # one frame at a time on stdout
        self.closing = threading.Event()

    def error_reply(self, exc: BaseException, request: str) -> ErrorReply:
        return error_reply(exc, request)

    def after_job(self) -> None:
        """Called after every job, whatever its end (the PyTorch worker frees cached GPU memory)."""

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
            reply = getattr(self, f"do_{request.TYPE}")(request, job)
        except Exception as exc:  # the worker must answer every job, whatever broke
            reply = self.error_reply(exc, request.TYPE)
        finally:
            with self.lock:
                self.running = None
                self.cancelled.discard(job)
            self.after_job()
        self.send(reply, job)

    # --- the shape requests, the same on every engine ------------------------------------------------------

    def do_reconstruct(self, request: ReconstructRequest, job: int | None) -> ReconstructReply:
        start = time.perf_counter()
        observation = request_observation(request)
        model = self.model(request.model, observation)
        extraction = self.extraction(request, model, job)
        self.progress(job)("encode", 0.0)
        latent = self.encode(model, observation)
        stats = ExtractStats(seconds={"encode": time.perf_counter() - start}, source=latent.source)
        mesh = with_input_colors(self.extract(model, latent, extraction, job, stats), observation, latent.frame)
        return mesh_reply(mesh, stats.as_dict(), latent)

    def do_encode(self, request: EncodeRequest, job: int | None) -> EncodeReply:
        observation = request_observation(request)
        latent = self.encode(self.model(request.model, observation), observation)
        return EncodeReply(latent=latent_frame(latent), code=latent.code)

    def do_extract(self, request: ExtractRequest, job: int | None) -> MeshReply:
        model = self.model(request.model)
        latent = latent_from(request.latent, request.code, model.name, model.config)
        return self.extract_reply(model, latent, request, job)

    def do_interpolate(self, request: InterpolateRequest, job: int | None) -> MeshReply:
        model = self.model(request.model)
        a = latent_from(request.a, request.code_a, model.name, model.config)
        b = latent_from(request.b, request.code_b, model.name, model.config)
        return self.extract_reply(model, interpolate(a, b, request.t, request.method), request, job)

    def extract_reply(self, model, latent: Latent, request: Extraction, job: int | None) -> MeshReply:
        stats = ExtractStats()
        mesh = self.extract(model, latent, self.extraction(request, model, job), job, stats)
        return mesh_reply(mesh, stats.as_dict())

    # --- the engine's part ------------------------------------------------------------------------------

    def model(self, name: str, observation: Observation | None = None):
        """The requested model, loaded once; "auto" is the shipped default for the observation's kind."""
        raise NotImplementedError

    def encode(self, model, observation: Observation) -> Latent:
        raise NotImplementedError

    def extraction(self, request: Extraction, model, job: int | None):
        """The request's extraction settings as the engine takes them, checked before any work."""
        raise NotImplementedError

    def extract(self, model, latent: Latent, extraction, job: int | None, stats: ExtractStats) -> Mesh:
        """The latent's mesh in its source's frame; the stage times go into `stats`."""
        raise NotImplementedError

    # --- for the engines ----------------------------------------------------------------------------------

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


def request_observation(request: ObservationSource) -> Observation:
    """What a request carries: a file the worker reads (as the CLI does), or an array."""
    if request.input_path is not None:
        from .inputs.files import load_observation  # trimesh and Pillow, imported when a file comes

        return load_observation(request.input_path)
    if request.points is not None:
        return PointCloudInput(request.points, request.point_normals, request.point_colors)
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


def latent_frame(latent: Latent) -> LatentFrame:
    return LatentFrame(latent.model, tuple(latent.frame.center), latent.frame.scale, latent.blends_by_field)


def latent_from(frame: LatentFrame, code: np.ndarray, model: str, config: ModelConfig) -> Latent:
    """A latent the add-on sent back: float16 as it stores them (or float32), in any shape with the model's
    number of values; the model reshapes it and checks the count. Point-attention latents blend by field."""
    try:
        where = Frame.of(frame.center, frame.scale)
    except (ValueError, TypeError):
        raise InputError(f"A latent's centre must be three numbers (x, y, z), not {frame.center}.") from None
    by_field = config.architecture == "attention"
    return Latent(np.asarray(code, np.float32).ravel().copy(), frame.latent_model or model, where, by_field)


def mesh_reply(mesh: Mesh, stats: dict, latent: Latent | None = None) -> MeshReply:
    """The mesh (and, for a reconstruction, the latent the add-on keeps for blends)."""
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces, "normals": mesh.normals, "colors": mesh.colors}
    if latent is not None:
        return ReconstructReply(**arrays, stats=stats, latent=latent_frame(latent), code=latent.code)
    return MeshReply(**arrays, stats=stats)


def protocol_channel() -> BinaryIO:
    """The real stdout, for protocol frames alone; file descriptor 1 and sys.stdout go to stderr from here on."""
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
