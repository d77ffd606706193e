"""Starting the backend worker and talking to it (protocol: backend/protocol.py).

Non-blocking by design: a reader thread turns the worker's replies into a queue that the UI drains
from a bpy.app.timers poller (`events`); background runs, where timers never fire, use `wait`.
A worker that dies is reported on every job it had, and started again on the next request.
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
from pathlib import Path

import numpy as np

from .shared import Message, ProtocolError, read_message, write_message

STDERR_LINES_KEPT = 40


class BackendError(Exception):
    """A job failed; `kind` is the protocol's error kind, the message is for the user."""

    def __init__(self, message: str, kind: str = "internal") -> None:
        super().__init__(message)
        self.kind = kind


class BackendClient:
    def __init__(
        self,
        python: str,
        backend_root: str | Path,
        device: str = "auto",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.python = python
        self.backend_root = Path(backend_root)
        self.device = device
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.hello: dict | None = None
        self._ids = itertools.count(1)
        self._events: queue.Queue[Message] = queue.Queue()
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 120.0) -> dict:
        """Start the worker (if it is not running) and return its hello: versions and device."""
        if self.alive and self.hello is not None:
            return self.hello
        if self.process is not None:
            self.restarts += 1
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.backend_root), env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [self.python, "-m", "backend.worker", "--device", self.device],
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
        self.hello = None
        self._stderr.clear()
        threading.Thread(target=self._read_replies, args=(self.process,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process,), daemon=True).start()
        reply = self.wait(self.submit("hello"), timeout=timeout)
        self.hello = reply.fields
        return self.hello

    def submit(self, kind: str, fields: dict | None = None, arrays: dict[str, np.ndarray] | None = None) -> int:
        """Send a request and return its id; starts or restarts the worker if needed."""
        if kind != "hello" and not self.alive:
            self.start()
        job = next(self._ids)
        with self._lock:
            self._pending.add(job)
            self._send(Message(kind, job, fields or {}, arrays or {}))
        return job

    def cancel(self, job: int) -> None:
        with self._lock:
            if job in self._pending and self.alive:
                self._send(Message("cancel", None, {"target": job}))

    def events(self) -> list[Message]:
        """Every reply that arrived since the last call; never blocks (for the UI's timer)."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def wait(
        self, job: int, on_progress: Callable[[str, float], None] | None = None, timeout: float | None = None
    ) -> Message:
        """Block until the job ends (for background mode); raise BackendError if it failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.cancel(job)
                raise BackendError(f"The backend did not answer within {timeout:.0f} s.", "internal")
            try:
                message = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if message.id != job:
                continue
            if message.type == "progress":
                if on_progress is not None:
                    on_progress(message.fields["stage"], message.fields["fraction"])
                continue
            raise_if_error(message)
            return message

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; end it if it does not. Frees its memory, GPU memory included."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                write_message(process.stdin, Message("shutdown", None))
                process.stdin.close()
            process.wait(timeout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def _send(self, message: Message) -> None:
        try:
            write_message(self.process.stdin, message)
        except (OSError, ValueError) as exc:
            raise BackendError(f"The backend is not running ({exc}); it restarts on the next request.") from exc

    def _read_replies(self, process: subprocess.Popen) -> None:
        while True:
            try:
                message = read_message(process.stdout)
            except (ProtocolError, OSError, ValueError):
                message = None
            if message is None:
                break
            if message.type != "progress" and message.id is not None:
                with self._lock:
                    self._pending.discard(message.id)
            self._events.put(message)
        code = process.wait()
        with self._lock:
            orphans, self._pending = sorted(self._pending), set()
        if self.process is process or self.process is None:
            detail = self.stderr_tail().strip().splitlines()[-1:] or [""]
            for job in orphans:
                self._events.put(
                    Message(
                        "error",
                        job,
                        {
                            "kind": "crashed",
                            "message": f"The backend stopped unexpectedly (exit code {code}) {detail[0]}".strip()
                            + ". It restarts on the next request.",
                        },
                    )
                )

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in iter(process.stderr.readline, b""):
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr.append(text)
            print(f"[occnet backend] {text}", file=sys.stderr)


def raise_if_error(message: Message) -> None:
    if message.type == "error":
        raise BackendError(message.fields.get("message", "unknown error"), message.fields.get("kind", "internal"))
