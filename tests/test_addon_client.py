"""The add-on's side of the worker in real Blender with a real worker: jobs waited on synchronously (renders,
background runs) and jobs the UI poller drives share one worker without taking each other's replies, and the
backend's start on a thread cannot outlive a stop."""

import os
import time
from pathlib import Path

import bpy
from blender_scenes import held_out, scan_of, vertex_cloud


def _poll_until(addon, done, timeout=120):
    """Drive the UI path by hand: `poll` is what bpy.app.timers calls in the UI."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        addon.worker.jobs.JOBS.poll()
        time.sleep(0.01)
    return done()


def _scan_job(addon, blender, name):
    scan = vertex_cloud(name, scan_of(held_out("mug", 0)))
    bpy.context.view_layer.update()
    source = addon.scene.gather.gather_object(scan, blender.context.evaluated_depsgraph_get())
    return addon.scene.reconstruct.reconstruct_job(source, blender.context.scene.occnet)


def test_a_synchronous_job_leaves_the_pollers_replies_alone(blender, addon):
    """A render-time blend update waits on its own job while a UI job is in flight: the UI job still lands."""
    jobs = addon.worker.jobs.JOBS
    addon.worker.lifecycle.BACKEND.require()
    ui_job = _scan_job(addon, blender, "ui")
    jobs.start(ui_job)
    assert _poll_until(addon, lambda: ui_job.id is not None)
    # The worker runs one job at a time, so the UI job's progress and result arrive while this one waits.
    hello = jobs.run_now(
        addon.worker.jobs.Job("render-time update", addon.backend_parts.HelloRequest(), lambda reply: reply)
    )
    assert hello.pid == addon.worker.lifecycle.BACKEND.client.process.pid
    assert _poll_until(addon, lambda: not jobs.queue, timeout=60), "the UI job's reply was taken by the wait"
    assert "ui.occnet" in bpy.data.objects and not jobs.problems


def test_stop_while_the_backend_starts_leaves_it_stopped(blender, addon):
    """The start runs on a thread; a stop that comes first wins, and the worker that start made is ended."""
    backend = addon.worker.lifecycle.BACKEND
    backend.stop()
    before = _workers()
    backend.start_async()
    starting = backend._thread
    backend.stop()
    starting.join(120)
    assert (backend.state, backend.client) == ("stopped", None)
    assert _workers() == before, "the abandoned start left a worker running"


def test_a_stop_while_a_job_waits_does_not_strand_it(blender, addon):
    """E.g. the installer finishing, or a preference change, while a job waits for the backend."""
    jobs = addon.worker.jobs.JOBS
    job = _scan_job(addon, blender, "waiting")
    jobs.start(job)
    addon.worker.lifecycle.BACKEND.stop()
    assert _poll_until(addon, lambda: not jobs.queue), f"stranded: {job.stage}"
    assert "waiting.occnet" in bpy.data.objects and not jobs.problems


def _workers() -> set[int]:
    """This process's live backend workers."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if b"backend.worker" in command and int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def test_a_stop_while_a_job_runs_ends_that_job(blender, addon):
    """Restart Backend (or the installer) mid-job: the job ends (as cancelled: the worker stops it), the queue
    does not hang on it, and the next job runs on the new worker."""
    jobs = addon.worker.jobs.JOBS
    addon.worker.lifecycle.BACKEND.require()
    blender.context.scene.occnet.resolution = 256
    running = _scan_job(addon, blender, "running")
    jobs.start(running)
    assert _poll_until(addon, lambda: running.stage == "evaluate")
    addon.worker.lifecycle.BACKEND.stop()
    assert _poll_until(addon, lambda: not jobs.queue), f"stranded: {running.stage}"
    assert "running.occnet" not in bpy.data.objects
    blender.context.scene.occnet.resolution = 32
    after = _scan_job(addon, blender, "after")
    jobs.start(after)
    assert _poll_until(addon, lambda: not jobs.queue) and "after.occnet" in bpy.data.objects
