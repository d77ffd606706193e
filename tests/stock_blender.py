"""Blender as a user has it, for tests and benchmarks: real Blender (the bpy module) where torch, SciPy and
scikit-image cannot be imported and the extension's wheels are found only where Blender's installer put them.

This venv has all of those, so a sitecustomize hides them from Blender and from every worker Blender starts
(workers inherit PYTHONPATH). A script run here prints one line `REPORT {json}`, which is returned.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPORT = "REPORT "
SITE = """
import importlib.machinery, os, sys

SITE = os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", ".local", "lib", "python3.11", "site-packages")
HIDDEN = {"torch", "scipy", "skimage", "safetensors", "onnx", "flatbuffers", "packaging", "google", "sympy",
          "coloredlogs", "fast_simplification", "tqdm"}
BUNDLED = {"onnxruntime", "PIL", "trimesh"}


class StockBlender:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ImportError(f"{name} is not in stock Blender")
        if name in BUNDLED:
            spec = importlib.machinery.PathFinder.find_spec(name, [SITE])
            if spec is None:
                raise ImportError(f"{name} is not where Blender installs the extension's wheels")
            return spec
        return None


sys.meta_path.insert(0, StockBlender())
"""


def blender_ext():
    """Blender's own extension tool (validator, platform names), loaded from the bpy module's scripts."""
    import bpy

    path = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core/bl_pkg/cli/blender_ext.py"
    spec = importlib.util.spec_from_file_location("blender_ext", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_stock_blender(script: str, args: list[str], folder: Path, stock: bool = True, timeout: float = 600) -> dict:
    """Run `script` (which gets `REPORT` defined) in a fresh Blender with its user folder under `folder`;
    `stock=False` leaves this venv's packages importable (PyTorch found), for comparison."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(folder / "user")}
    if stock:
        site = folder / "stock-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITE)
        env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-c", f"REPORT = {REPORT!r}\n{script}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(REPORT)]
    if not lines:
        raise AssertionError(
            f"no report from Blender (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix(REPORT))
