"""The add-on in real Blender (bpy module): main-thread stalls, slider update rate, mesh insertion.

    python bench/addon.py [--resolution 128] [--seconds 5]

1. Longest main-thread stall during a reconstruction driven the way the UI drives it (the timer callback
   `JOBS.poll` plus gathering the selection), against the baseline of the synchronous path, which blocks
   for the whole job.
2. Slider update rate: results shown per second while the factor keeps changing, at the preview
   resolution against the full resolution.
3. Inserting a 1-million-triangle result with foreach_set, against Mesh.from_pydata with Python lists.
The backend runs in its worker process on this machine's CPU (or GPU with --device cuda).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hardware import describe  # noqa: E402

import occnet_blender  # noqa: E402
from occnet_blender.scene import blend, gather, meshes, reconstruct  # noqa: E402
from occnet_blender.worker import extraction, jobs  # noqa: E402
from occnet_blender.worker.lifecycle import BACKEND, LaunchSettings  # noqa: E402


def scan_object(name: str, offset: float) -> bpy.types.Object:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(3000, 3)) * [0.25, 0.2, 0.35]
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(points))
    mesh.vertices.foreach_set("co", points.astype(np.float32).ravel())
    obj = bpy.data.objects.new(name, mesh)
    obj.location.x = offset
    bpy.context.scene.collection.objects.link(obj)
    return obj


def stall(resolution: int) -> None:
    scene = bpy.context.scene
    scene.occnet.resolution = resolution
    obj = scan_object("scan", 0.0)
    started = time.perf_counter()
    source = gather.gather_object(obj, bpy.context.evaluated_depsgraph_get())
    job = reconstruct.reconstruct_job(source, scene.occnet)
    jobs.JOBS.start(job)
    longest = time.perf_counter() - started
    polls = 0
    began = time.perf_counter()
    while jobs.JOBS.queue:
        t = time.perf_counter()
        jobs.JOBS.poll()
        longest, polls = max(longest, time.perf_counter() - t), polls + 1
        time.sleep(jobs.POLL_SECONDS)
    total = time.perf_counter() - began
    t = time.perf_counter()
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.ops.occnet.reconstruct()
    blocking = time.perf_counter() - t
    faces = len(bpy.data.objects["scan.occnet"].data.polygons)
    print(f"reconstruction at {resolution} ({faces} faces), {polls} timer calls over {total:.2f} s:")
    print(f"  longest main-thread stall (UI path):  {longest * 1000:8.1f} ms")
    print(f"  synchronous operator (baseline):      {blocking * 1000:8.1f} ms")
    print(f"  ratio stall / baseline:               {longest / blocking:8.3f}")


def slider_rate(seconds: float, resolution: int) -> None:
    a, b = (bpy.data.objects[n] for n in ("scan.occnet", "scan.001.occnet"))
    obj = blend.create_blend(a, b)
    rates = {}
    blend.synchronous = lambda: False  # the UI path, driven by hand: timers do not run in a bpy module
    obj.occnet.resolution = resolution
    for label, preview in (("preview", extraction.PREVIEW_RESOLUTION), ("full", resolution)):
        blend.PREVIEW_RESOLUTION = preview  # the baseline drags at full resolution
        shown, last, began, i = 0, obj.occnet.shown_factor, time.perf_counter(), 0
        while time.perf_counter() - began < seconds:
            i += 1
            obj.occnet.factor = (i % 100) / 100
            jobs.JOBS.poll()
            if obj.occnet.shown_factor != last:
                shown, last = shown + 1, obj.occnet.shown_factor
            time.sleep(0.01)
        rates[label] = shown / (time.perf_counter() - began)
        while jobs.JOBS.queue:
            jobs.JOBS.poll()
    print(f"slider, {seconds:.0f} s of continuous dragging:")
    print(f"  updates shown per second at preview {extraction.PREVIEW_RESOLUTION}: {rates['preview']:6.1f}")
    print(f"  updates shown per second at full {resolution} (baseline): {rates['full']:6.1f}")
    ratio = rates["preview"] / rates["full"] if rates["full"] else float("inf")  # inf: no full update in time
    print(f"  ratio preview / full:                     {ratio:6.1f}")


def insertion(triangles: int = 1_000_000) -> None:
    side = int(np.sqrt(triangles / 2)) + 1
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)
    vertices = np.concatenate([grid, np.zeros((len(grid), 1))], 1).astype(np.float32)
    i = np.nonzero((grid[:, 0] < side - 1) & (grid[:, 1] < side - 1))[0]
    faces = np.concatenate([np.stack([i, i + side, i + 1], 1), np.stack([i + 1, i + side, i + side + 1], 1)])
    faces = faces[:triangles].astype(np.int32)
    t = time.perf_counter()
    meshes.fill_mesh(bpy.data.meshes.new("fast"), vertices, faces)
    fast = time.perf_counter() - t
    t = time.perf_counter()
    bpy.data.meshes.new("slow").from_pydata(vertices.tolist(), [], faces.tolist())
    slow = time.perf_counter() - t
    print(f"inserting {len(faces):,} triangles:")
    print(f"  foreach_set with flat arrays:  {fast:6.2f} s")
    print(f"  from_pydata with lists (base): {slow:6.2f} s   ratio {fast / slow:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    occnet_blender.register()
    BACKEND.launch_override = LaunchSettings((("this Python", sys.executable),), args.device, "")
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    print(describe(torch.device(args.device)) + "; Blender " + bpy.app.version_string + " (bpy module)")
    BACKEND.require()
    stall(args.resolution)
    scan_object("scan", 1.5)
    bpy.ops.object.select_all(action="DESELECT")
    bpy.data.objects["scan.001"].select_set(True)
    bpy.data.objects["scan.001"].scale = (1.0, 2.0, 0.6)
    bpy.ops.occnet.reconstruct()
    slider_rate(args.seconds, args.resolution)
    insertion()
    BACKEND.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
