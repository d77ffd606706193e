"""The process the Blender add-on starts: serves protocol requests (see protocol.py) on stdin/stdout.

Jobs run one at a time on the main thread, models stay loaded between jobs, and a reader thread
keeps listening so that a cancel arrives mid-job. The worker ends when its stdin closes or its
parent process goes away, so it never outlives Blender.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
import traceback
from typing import BinaryIO

import numpy as np
import torch

from . import __version__
from .api import Latent, Model, Reconstruction, interpolate, load_model
from .device import describe_devices, resolve_device
from .errors import Cancelled, DeviceError, EmptySurfaceError, InputError, ModelLoadError, OccNetError
from .inputs import Frame, ImageInput, Observation, PointCloudInput, VoxelInput, load_observation
from .protocol import AUTO_MODEL, PROTOCOL_VERSION, Message, ProtocolError, read_message, write_message
from .registry import default_model, list_models

PARENT_POLL_SECONDS = 1.0
_HANDLED = ("hello", "models", "reconstruct", "encode", "extract", "interpolate")
_OBSERVATION_ARRAYS = {"points": PointCloudInput, "pixels": ImageInput, "voxels": VoxelInput}


class Worker:
    def __init__(self, channel: BinaryIO, device: str) -> None:
        self.channel = channel
        self.device = device
        self.models: dict[tuple[str, str], Model] = {}
        self.jobs: queue.Queue[Message | None] = queue.Queue()
        self.cancelled: set[int] = set()
        self.running: int | None = None
        self.lock = threading.Lock()
        self.closing = threading.Event()

    def send(self, message: Message) -> None:
        with self.lock:
            try:
                write_message(self.channel, message)
            except (BrokenPipeError, OSError, ValueError):
                self.closing.set()

    def error(self, msg_id: int | None, kind: str, message: str) -> None:
        self.send(Message("error", msg_id, {"kind": kind, "message": message}))

    def read_requests(self, stream: BinaryIO) -> None:
        """Reader thread: cancels act at once, everything else queues for the main thread."""
        while not self.closing.is_set():
            try:
                message = read_message(stream)
            except ProtocolError as exc:
                self.error(None, "protocol", f"Malformed request ({exc}); it was ignored.")
                continue
            except (OSError, ValueError):
                message = None
            if message is None or message.type == "shutdown":
                break
            if message.type == "cancel":
                target = message.fields.get("target")
                with self.lock:
                    self.cancelled.add(target)
                continue
            self.jobs.put(message)
        self.closing.set()
        with self.lock:
            if self.running is not None:
                self.cancelled.add(self.running)
        self.jobs.put(None)

    def serve(self) -> None:
        while True:
            message = self.jobs.get()
            if message is None or self.closing.is_set():
                return
            self.run(message)

    def run(self, message: Message) -> None:
        job = message.id
        with self.lock:
            if job in self.cancelled:
                self.cancelled.discard(job)
                skip = True
            else:
                self.running, skip = job, False
        if skip:
            self.error(job, "cancelled", "Cancelled before it started.")
            return
        try:
            if message.type not in _HANDLED:
                self.error(job, "protocol", f"Unknown request type '{message.type}'.")
                return
            fields, arrays = getattr(self, f"do_{message.type}")(message)
            self.send(Message("result" if message.type != "hello" else "hello", job, fields, arrays))
        except Cancelled:
            self.error(job, "cancelled", "Cancelled; nothing was changed.")
        except (KeyError, TypeError, ValueError) as exc:
            self.error(job, "protocol", f"Malformed '{message.type}' request: {exc!r}.")
        except InputError as exc:
            self.error(job, "input", str(exc))
        except ModelLoadError as exc:
            self.error(job, "model", str(exc))
        except DeviceError as exc:
            self.error(job, "device", str(exc))
        except EmptySurfaceError as exc:
            self.error(job, "empty", str(exc))
        except OccNetError as exc:
            self.error(job, "input", str(exc))
        except torch.OutOfMemoryError:
            self.error(job, "oom", "The GPU ran out of memory. Lower the resolution, or set the device to CPU.")
        except Exception as exc:  # the worker must answer every job, whatever broke
            traceback.print_exc(file=sys.stderr)
            self.error(job, "internal", f"The backend failed unexpectedly: {exc!r}. Details are in the backend log.")
        finally:
            with self.lock:
                self.running = None
                self.cancelled.discard(job)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # --- request handlers: (message) -> (reply fields, reply arrays) -------------------------------

    def do_hello(self, message: Message) -> tuple[dict, dict]:
        device = resolve_device(self.device)
        return {
            "protocol": PROTOCOL_VERSION,
            "backend": __version__,
            "torch": torch.__version__,
            "device": str(device),
            "devices": describe_devices(),
            "pid": os.getpid(),
        }, {}

    def do_models(self, message: Message) -> tuple[dict, dict]:
        models = [
            {
                "name": e.name,
                "input_kind": e.config.input_kind,
                "size_mb": round(e.size_mb, 2),
                "threshold": e.config.threshold,
                "c_dim": e.config.c_dim,
                "architecture": e.config.architecture,
                "latent_shape": list(e.config.latent_shape),
                "evaluation": e.config.evaluation,
            }
            for e in list_models(message.fields.get("extra_dirs"))
        ]
        return {"models": models}, {}

    def do_reconstruct(self, message: Message) -> tuple[dict, dict]:
        observation = self.observation(message)
        model = self.model(message, observation)
        result = model.reconstruct(observation, progress=self.progress(message), **self.extract_options(message))
        return _mesh_reply(result)

    def do_encode(self, message: Message) -> tuple[dict, dict]:
        observation = self.observation(message)
        latent = self.model(message, observation).encode(observation)
        return _latent_fields(latent), {"code": latent.code}

    def do_extract(self, message: Message) -> tuple[dict, dict]:
        model = self.model(message)
        latent = _latent_from(message.fields, message.arrays["code"], model.name)
        return _mesh_reply(model.extract(latent, progress=self.progress(message), **self.extract_options(message)))

    def do_interpolate(self, message: Message) -> tuple[dict, dict]:
        model = self.model(message)
        a = _latent_from(message.fields["a"], message.arrays["code_a"], model.name)
        b = _latent_from(message.fields["b"], message.arrays["code_b"], model.name)
        blend = interpolate(a, b, float(message.fields["t"]), message.fields.get("method", "linear"))
        return _mesh_reply(model.extract(blend, progress=self.progress(message), **self.extract_options(message)))

    # --- helpers --------------------------------------------------------------------------------------

    def model(self, message: Message, observation: Observation | None = None) -> Model:
        """The requested model, loaded once; "auto" is the shipped default for the observation's kind."""
        name = str(message.fields["model"])
        if name == AUTO_MODEL:
            if observation is None:
                raise InputError("Name the model: 'auto' only works where there is an input to choose by.")
            name = default_model(observation.kind)
        device = str(message.fields.get("device") or self.device)
        key = (name, device)
        if key not in self.models:
            self.models[key] = load_model(name, device)
        return self.models[key]

    def observation(self, message: Message) -> Observation:
        if "input_path" in message.fields:
            return load_observation(message.fields["input_path"])
        for name, kind in _OBSERVATION_ARRAYS.items():
            if name in message.arrays:
                return kind(message.arrays[name])
        raise InputError("The request carries no input: send 'input_path' or an array 'points', 'pixels' or 'voxels'.")

    def extract_options(self, message: Message) -> dict:
        f = message.fields
        options = {
            "resolution": int(f.get("resolution", 128)),
            "threshold": None if f.get("threshold") is None else float(f["threshold"]),
            "refine_steps": int(f.get("refine_steps", 0)),
            "faces": int(f.get("faces", 0)),
            "normals": bool(f.get("normals", True)),
        }
        job = message.id
        options["cancel"] = lambda: job in self.cancelled or self.closing.is_set()
        return options

    def progress(self, message: Message):
        last = [0.0]

        def report(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if fraction in (0.0, 1.0) or now - last[0] > 0.05:
                last[0] = now
                self.send(Message("progress", message.id, {"stage": stage, "fraction": round(float(fraction), 4)}))

        return report


def _latent_fields(latent: Latent) -> dict:
    return {"latent_model": latent.model, "center": list(latent.frame.center), "scale": latent.frame.scale}


def _latent_from(fields: dict, code: np.ndarray, model: str) -> Latent:
    """A latent the add-on sent back: float16 as it stores them (or float32), in any shape with the model's
    number of values; the model reshapes it and checks the count."""
    frame = Frame.of(fields.get("center", (0, 0, 0)), fields.get("scale", 1.0))
    return Latent(np.asarray(code, np.float32).copy(), str(fields.get("latent_model", model)), frame)


def _mesh_reply(result: Reconstruction) -> tuple[dict, dict]:
    arrays = {"vertices": result.mesh.vertices, "faces": result.mesh.faces, "code": result.latent.code}
    if result.mesh.normals is not None:
        arrays["normals"] = result.mesh.normals
    return {**_latent_fields(result.latent), "stats": result.stats}, arrays


def _watch_parent(parent: int, closing: threading.Event) -> None:
    while not closing.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="default device for jobs: auto, cuda, mps or cpu")
    args = parser.parse_args(argv)
    # Only protocol frames may go to the real stdout; anything a library prints goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    worker = Worker(channel, args.device)
    threading.Thread(target=worker.read_requests, args=(sys.stdin.buffer,), daemon=True).start()
    threading.Thread(target=_watch_parent, args=(os.getppid(), worker.closing), daemon=True).start()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
