"""Backend jobs: queued and polled from a bpy.app.timers callback in the UI, run to the end in background mode.

Every bpy change happens in a job's callback on the main thread. The poller only drains the replies of its
own jobs (a synchronous job's replies stay with its caller), so the main thread never waits on the worker.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass

import bpy
from bpy.app.handlers import persistent

from ..backend_parts import Progress, Reply, Request
from .client import BackendClient, BackendError, Event, raise_if_error
from .lifecycle import BACKEND

POLL_SECONDS = 0.05
CANCELLED = BackendError("Cancelled; nothing was changed.", "cancelled")
PROBLEMS_KEPT = 5


@dataclass
class Job:
    label: str
    request: Request
    on_result: Callable[[Reply], object] = lambda reply: None
    on_error: Callable[[BackendError], None] | None = None
    undo_message: str = ""
    id: int | None = None
    client: BackendClient | None = None  # the worker it went to: its reply comes from there even after a restart
    stage: str = "waiting for the backend"
    fraction: float = 0.0
    cancelled: bool = False


class Jobs:
    def __init__(self) -> None:
        self.queue: list[Job] = []
        self.problems: list[str] = []
        self.ticks: list[Callable[[], bool]] = []  # called every poll; True keeps the poller alive

    @property
    def current(self) -> Job | None:
        return self.queue[0] if self.queue else None

    def start(self, job: Job) -> None:
        """UI mode: queue the job and make sure the backend and the poller run."""
        self.queue.append(job)
        BACKEND.start_async()
        self.ensure_polling()

    def run_now(self, job: Job, on_progress: Callable[[str, float], None] | None = None) -> object:
        """Run the job to its end, blocking, and return what its on_result made; BackendError if it fails.
        Background mode, and operators whose redo panel needs the result before they return (Re-Extract)."""
        client = BACKEND.require()

        def progress(stage: str, fraction: float) -> None:
            _print_progress(job, stage, fraction)
            if on_progress is not None:
                on_progress(stage, fraction)

        return job.on_result(client.run(job.request, on_progress=progress))

    def cancel(self) -> int:
        """Cancel every queued and running job; the scene stays as it was. Returns how many."""
        count = 0
        for job in list(self.queue):
            if job.cancelled:
                continue
            job.cancelled, job.stage, count = True, "cancelling", count + 1
            if job.id is None:
                self._fail(job, CANCELLED)
            else:
                try:
                    job.client.cancel(job.id)
                except BackendError:  # the worker is gone: its jobs fail as crashed on the next poll
                    pass
        _redraw()
        return count

    def report(self, problem: str) -> None:
        print(f"OccNet: {problem}")
        self.problems = [problem, *self.problems][:PROBLEMS_KEPT]

    def ensure_polling(self) -> None:
        if not bpy.app.background and not bpy.app.timers.is_registered(_poll):
            bpy.app.timers.register(_poll, first_interval=0.0)

    def poll(self) -> float | None:
        """One timer step: submit what can go, apply what came back. Returns the next interval or None."""
        state, client = BACKEND.state, BACKEND.client  # read once: the starting thread or stop() may change them
        for sender in {id(j.client): j.client for j in self.queue if j.client is not None}.values():
            for event in sender.events():  # a stopped worker's jobs end too (as crashed), never stranded
                self._dispatch(sender, event)
        waiting = [j for j in self.queue if j.id is None]
        if state == "failed":
            for job in waiting:
                self._fail(job, BackendError(BACKEND.message, "device"))
        elif waiting and state == "ready" and client is not None and client.alive:
            for job in waiting:
                try:
                    job.id, job.client = client.submit(job.request), client
                    job.stage = "queued"
                except BackendError as exc:
                    self._fail(job, exc)
        elif waiting and state in ("ready", "stopped") and all(j.id is None for j in self.queue):
            BACKEND.start_async()  # the worker died: start another off the main thread, once its jobs are answered
        busy = [tick() for tick in self.ticks]
        _show_status(self.current)
        _redraw()
        return POLL_SECONDS if self.queue or any(busy) or BACKEND.state == "starting" else None

    def _dispatch(self, sender: BackendClient, event: Event) -> None:
        job = next((j for j in self.queue if j.id is not None and j.id == event.job and j.client is sender), None)
        if job is None:
            return
        if isinstance(event.reply, Progress):
            job.stage, job.fraction = event.reply.stage, event.reply.fraction
            return
        self.queue.remove(job)
        if job.cancelled:  # whatever came back: its owner learns it ended, the scene does not change
            self._fail(job, CANCELLED)
            return
        try:
            raise_if_error(event.reply)
            job.on_result(event.reply)
        except BackendError as exc:
            self._fail(job, exc)
            return
        except Exception as exc:  # an escaped error would end the timer and strand every other job
            traceback.print_exc()
            self._fail(job, BackendError(f"the result could not be added ({exc!r}); details are in the console"))
            return
        if job.undo_message:
            _push_undo(job.undo_message)

    def _fail(self, job: Job, error: BackendError) -> None:
        if job in self.queue:
            self.queue.remove(job)
        if job.on_error is not None:
            job.on_error(error)
        if error.kind != "cancelled":
            self.report(f"{job.label}: {error}")


def _poll() -> float | None:
    return JOBS.poll()


@persistent
def _cancel_on_load(*args) -> None:
    """A result must not land in another file than the one it was asked for in."""
    JOBS.cancel()


def _push_undo(message: str) -> None:
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError as exc:  # no window to push from; the result stays, only the undo step is missing
        print(f"OccNet: no undo step for '{message}' ({exc})")


def _print_progress(job: Job, stage: str, fraction: float) -> None:
    if fraction in (0.0, 1.0):
        print(f"OccNet: {job.label}: {stage} {fraction:.0%}", flush=True)


def _show_status(job: Job | None) -> None:
    """Mirror the running job's progress on the window manager: setting a property redraws every region, the
    status bar included, which tag_redraw cannot reach (it lives outside screen.areas). -1: nothing runs."""
    manager = bpy.context.window_manager
    value = -1.0 if job is None else round(float(job.fraction), 3)
    if manager is not None and hasattr(manager, "occnet_progress") and manager.occnet_progress != value:
        manager.occnet_progress = value


def _redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


JOBS = Jobs()


def register() -> None:
    bpy.app.handlers.load_pre.append(_cancel_on_load)


def unregister() -> None:
    if _cancel_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_cancel_on_load)
    JOBS.cancel()
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
