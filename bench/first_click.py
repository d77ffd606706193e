"""The first Reconstruct after Blender starts, as a user meets it, on each engine.

    python bench/first_click.py [--resolution 128]

Builds this platform's extension zip and, in a fresh Blender (the bpy module) per engine, installs it and
reconstructs a 3,000-point scan object, then a reference-image empty, each twice. Engines: the built-in CPU
runtime in stock Blender (torch, SciPy and scikit-image cannot be imported: tests/stock_blender.py), and PyTorch
on the CPU where Blender's Python has it. The second Reconstruct of each input runs on the warm worker with the
model loaded, so it is the model's own time and the baseline: the first one's extra is the worker's start and
the model's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from extract import torus_scan  # noqa: E402
from hardware import describe  # noqa: E402
from PIL import Image  # noqa: E402
from stock_blender import blender_ext, run_in_stock_blender  # noqa: E402

import build  # noqa: E402

SESSION = """
import os, sys, time
import bpy, numpy as np

zip_path, folder, resolution = sys.argv[1], sys.argv[2], int(sys.argv[3])
report = {}
start = time.perf_counter()
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
report["install"] = time.perf_counter() - start
addon = sys.modules["bl_ext.user_default.occnet.occnet_blender"]
for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
scene = bpy.context.scene
scene.occnet.resolution = resolution
points = np.load(os.path.join(folder, "scan.npy"))
mesh = bpy.data.meshes.new("scan")
mesh.vertices.add(len(points))
mesh.vertices.foreach_set("co", points.ravel())
scan = bpy.data.objects.new("scan", mesh)
scene.collection.objects.link(scan)
picture = bpy.data.objects.new("picture", None)
picture.empty_display_type = "IMAGE"
picture.data = bpy.data.images.load(os.path.join(folder, "picture.png"))
scene.collection.objects.link(picture)
for obj in (scan, picture):
    for attempt in ("first", "second"):
        bpy.context.view_layer.update()
        for other in bpy.context.view_layer.objects:
            other.select_set(other == obj)
        bpy.context.view_layer.objects.active = obj
        start = time.perf_counter()
        assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
        report[f"{obj.name} {attempt}"] = time.perf_counter() - start
        report[f"{obj.name} faces"] = len(bpy.data.objects[obj.name + ".occnet"].data.polygons)
        bpy.data.objects.remove(bpy.data.objects[obj.name + ".occnet"])
report["engine"] = addon.worker.lifecycle.BACKEND.summary()
print(REPORT + __import__("json").dumps(report))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    print(describe(torch.device("cpu")), f"(this process), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        platform = blender_ext().platform_from_this_system()
        extension = build.build(folder / "dist", [platform])[platform]
        np.save(folder / "scan.npy", torus_scan(3000).astype(np.float32))
        yy, xx = np.mgrid[:96, :128]
        disc = ((yy - 48) ** 2 + (xx - 60) ** 2 < 900).astype(np.uint8)
        Image.fromarray(np.dstack([np.full((96, 128, 3), 180, np.uint8), 255 * disc])).save(folder / "picture.png")
        print(f"{extension.name}, resolution {args.resolution}; seconds per Reconstruct in a fresh Blender")
        for stock in (True, False):
            run = folder / ("stock" if stock else "with-torch")
            run.mkdir()
            report = run_in_stock_blender(SESSION, [str(extension), str(folder), str(args.resolution)], run, stock)
            print(f"{report['engine']} (install {report['install']:.1f} s):")
            for name in ("scan", "picture"):
                first, second = report[f"{name} first"], report[f"{name} second"]
                print(
                    f"  {name:8s} first {first:6.2f}  second (model's own time) {second:6.2f}  "
                    f"first - second {first - second:5.2f}  ({report[f'{name} faces']} faces)"
                )


if __name__ == "__main__":
    main()
