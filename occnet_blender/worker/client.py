"""Starting the backend worker and talking to it (protocol: backend/protocol.py).

Non-blocking by design: a reader thread sorts the worker's replies into one inbox per job. The UI drains
the inboxes of its jobs from a bpy.app.timers poller (`events`); background runs and renders, where timers
do not help, block on their own job's inbox (`run` or `wait`), so neither takes the other's replies.
A worker that dies, or breaks the protocol, is reported on every job it had and started again on the
next request. No lock is held while writing to the worker: only the write lock, which nothing else needs.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..backend_parts import (
    ERROR_KINDS,
    CancelRequest,
    ErrorReply,
    HelloReply,
    HelloRequest,
    Progress,
    ProtocolError,
    Reply,
    Request,
    ShutdownRequest,
    decode_reply,
    encode,
    read_message,
    write_message,
)

STDERR_LINES_KEPT = 40


class BackendError(Exception):
    """A job failed; `kind` is one of the protocol's ERROR_KINDS, the message is for the user."""

    def __init__(self, message: str, kind: str = "internal") -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"error kind '{kind}' is not one of {', '.join(ERROR_KINDS)}")
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Event:
    """A reply for job `job` (None: a reply to a message the worker could not read)."""

    job: int | None
    reply: Reply


@dataclass
class _Inbox:
    request: type
    events: queue.Queue[Event]
    waited: bool  # a blocking caller reads it; `events` leaves it alone
    done: bool = False  # its last reply (result or error) arrived


class BackendClient:
    def __init__(
        self,
        python: str,
        backend_root: str | Path,
        device: str = "auto",
        extra_env: dict[str, str] | None = None,
        engine: str = "torch",
    ) -> None:
        """`engine` is the worker's: "torch" (PyTorch) or "runtime" (the built-in CPU runtime); both speak the one
        protocol."""
        self.python = python
        self.engine = engine
        self.backend_root = Path(backend_root)
        self.device = device
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.hello: HelloReply | None = None
        self._ids = itertools.count(1)
        self._inboxes: dict[int, _Inbox] = {}
        self._stray: queue.Queue[Event] = queue.Queue()
        self._lock = threading.Lock()  # guards _inboxes; never held while writing to the worker
        self._write_lock = threading.Lock()  # one message at a time on the worker's stdin
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self.restarts = 0

    @property
    def alive(self) -> bool:
        process = self.process
        return process is not None and process.poll() is None

    def start(self, timeout: float = 120.0) -> HelloReply:
        """Start the worker (if it is not running) and return its hello: versions and device."""
        if self.alive and self.hello is not None:
            return self.hello
        if self.process is not None:
            self.restarts += 1
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.backend_root), env.get("PYTHONPATH")]))
        try:
            process = subprocess.Popen(
                [self.python, "-m", "backend.worker", "--engine", self.engine, "--device", self.device],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            )
        except OSError as exc:
            raise BackendError(
                f"Could not start the backend with '{self.python}' ({exc}). "
                "Set 'Backend Python' in the add-on preferences to an interpreter with PyTorch.",
                "device",
            ) from exc
        self.process, self.hello = process, None
        self._stderr.clear()
        threading.Thread(target=self._read_replies, args=(process,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(process,), daemon=True).start()
        self.hello = self.run(HelloRequest(), timeout=timeout)
        return self.hello

    def submit(self, request: Request, waited: bool = False) -> int:
        """Send a request and return its id; starts or restarts the worker if needed. `waited`: the caller
        will block on it with `wait`, so `events` never hands its replies to anyone else."""
        if not isinstance(request, HelloRequest) and not self.alive:
            self.start()
        job = next(self._ids)
        with self._lock:
            self._inboxes[job] = _Inbox(type(request), queue.Queue(), waited)
        try:
            self._send(request, job)
        except BackendError:
            with self._lock:
                self._inboxes.pop(job, None)
            raise
        return job

    def run(
        self, request: Request, on_progress: Callable[[str, float], None] | None = None, timeout: float | None = None
    ) -> Reply:
        """Submit and block until the reply (background runs, renders); BackendError if the job failed."""
        return self.wait(self.submit(request, waited=True), on_progress, timeout)

    def cancel(self, job: int) -> None:
        with self._lock:
            inbox = self._inboxes.get(job)
            pending = inbox is not None and not inbox.done
        if pending and self.alive:
            self._send(CancelRequest(job), None)

    def events(self) -> list[Event]:
        """Every reply that arrived since the last call for the jobs nobody waits on; never blocks (the UI's timer)."""
        out = []
        with self._lock:
            for job, inbox in list(self._inboxes.items()):
                if inbox.waited:
                    continue
                out.extend(_drain(inbox.events))
                if inbox.done and inbox.events.empty():
                    del self._inboxes[job]
        return out + _drain(self._stray)

    def wait(
        self, job: int, on_progress: Callable[[str, float], None] | None = None, timeout: float | None = None
    ) -> Reply:
        """Block until the job ends; raise BackendError if it failed."""
        with self._lock:
            inbox = self._inboxes.get(job)
            if inbox is None:
                raise BackendError(f"Job {job} is not running: its reply was already taken.", "internal")
            inbox.waited = True
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.cancel(job)
                    raise BackendError(f"The backend did not answer within {timeout:.0f} s.", "internal")
                try:
                    reply = inbox.events.get(timeout=remaining).reply
                except queue.Empty:
                    continue
                if isinstance(reply, Progress):
                    if on_progress is not None:
                        on_progress(reply.stage, reply.fraction)
                    continue
                raise_if_error(reply)
                return reply
        finally:
            with self._lock:
                self._inboxes.pop(job, None)

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; end it if it does not. Frees its memory, GPU memory included."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                with self._write_lock:
                    write_message(process.stdin, encode(ShutdownRequest(), None))
                    process.stdin.close()
            process.wait(timeout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def _send(self, request: Request, job: int | None) -> None:
        process = self.process
        try:
            with self._write_lock:
                write_message(process.stdin, encode(request, job))
        except (OSError, ValueError, AttributeError) as exc:
            raise BackendError(f"The backend is not running ({exc}); it restarts on the next request.") from exc

    def _read_replies(self, process: subprocess.Popen) -> None:
        broken = ""
        while True:
            try:
                message = read_message(process.stdout)
            except ProtocolError as exc:  # the stream cannot be trusted past this: end this worker
                broken = f"The backend broke the protocol ({exc})"
                process.kill()
                break
            except (OSError, ValueError):
                break
            if message is None:
                break
            self._deliver(message)
        code = process.wait()
        with self._lock:
            orphans = [job for job, inbox in self._inboxes.items() if not inbox.done]
        if self.process is process or self.process is None:
            detail = self.stderr_tail().strip().splitlines()[-1:] or [""]
            text = broken or f"The backend stopped unexpectedly (exit code {code}) {detail[0]}".strip()
            for job in orphans:
                self._put(
                    Event(
                        job,
                        ErrorReply("protocol" if broken else "crashed", text + ". It restarts on the next request."),
                    )
                )

    def _deliver(self, message) -> None:
        with self._lock:
            inbox = self._inboxes.get(message.id) if message.id is not None else None
        if inbox is None:
            reply = ErrorReply("protocol", str(message.fields.get("message", message.type)))
            self._stray.put(Event(message.id, reply))
            return
        try:
            reply = decode_reply(message, inbox.request)
        except ProtocolError as exc:
            reply = ErrorReply("protocol", f"The backend sent a malformed reply ({exc}).")
        self._put(Event(message.id, reply))

    def _put(self, event: Event) -> None:
        with self._lock:
            inbox = self._inboxes.get(event.job)
            if inbox is None or inbox.done:
                return
            inbox.done = not isinstance(event.reply, Progress)
            inbox.events.put(event)

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in iter(process.stderr.readline, b""):
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr.append(text)
            print(f"[occnet backend] {text}", file=sys.stderr)


def raise_if_error(reply: Reply) -> None:
    if isinstance(reply, ErrorReply):
        raise BackendError(reply.message, reply.kind)


def _drain(events: queue.Queue[Event]) -> list[Event]:
    out = []
    while True:
        try:
            out.append(events.get_nowait())
        except queue.Empty:
            return out
