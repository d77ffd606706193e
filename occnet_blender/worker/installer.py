"""The "Install Backend" button: a virtual environment under the extension's user folder with PyTorch.

It downloads, so it runs only when the user pressed it and Blender's online access allows it. The
steps run on a thread; the preferences show the step and its result.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import bpy

from ..identity import ADDON_ID, ENV_FOLDER, preferences
from .lifecycle import BACKEND, ROOT, env_python

TORCH_INDEX = {"cpu": "https://download.pytorch.org/whl/cpu", "cuda": "https://download.pytorch.org/whl/cu128"}
REQUIREMENTS = ROOT / "backend" / "requirements.txt"


def install_steps(env: Path, build: str) -> list[tuple[str, list[str]]]:
    python = str(env_python(env))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    return [
        ("Creating the environment", [sys.executable, "-m", "venv", str(env)]),
        ("Installing PyTorch", [*pip, "torch", "--index-url", TORCH_INDEX[build]]),
        ("Installing the backend's packages", [*pip, "-r", str(REQUIREMENTS)]),
    ]


class Installation:
    def __init__(self) -> None:
        self.running = False
        self.message = ""

    def run(self, steps: list[tuple[str, list[str]]]) -> None:
        self.running = True
        try:
            for number, (title, command) in enumerate(steps, 1):
                self.message = f"Step {number} of {len(steps)}: {title}…"
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                    self.message = f"Install failed at '{title}': {last[0]}"
                    return
            self.message = "Backend installed. It starts on the next Reconstruct."
            BACKEND.stop()
        except OSError as exc:
            self.message = f"Install failed: {exc}"
        finally:
            self.running = False


INSTALL = Installation()


class OCCNET_OT_install_backend(bpy.types.Operator):
    """Download PyTorch and the backend's packages into an environment for this add-on (needs internet)"""

    bl_idname = "occnet.install_backend"
    bl_label = "Install Backend"

    def execute(self, context):
        if not bpy.app.online_access:
            self.report(
                {"ERROR"},
                "Online access is off, so nothing can be downloaded. Allow it in Preferences > System > Network, "
                "or set 'Backend Python' to an interpreter that has PyTorch.",
            )
            return {"CANCELLED"}
        if INSTALL.running:
            self.report({"WARNING"}, "The backend is already being installed.")
            return {"CANCELLED"}
        if not REQUIREMENTS.is_file() or preferences() is None:
            self.report({"ERROR"}, "Only the installed extension can set up a backend; in a checkout run `make setup`.")
            return {"CANCELLED"}
        env = Path(bpy.utils.extension_path_user(ADDON_ID, path=ENV_FOLDER, create=True))
        steps = install_steps(env, preferences().install_build)
        threading.Thread(target=INSTALL.run, args=(steps,), daemon=True).start()
        self.report({"INFO"}, f"Installing the backend into {env}; this downloads several hundred MB.")
        return {"FINISHED"}


classes = (OCCNET_OT_install_backend,)

register, unregister = bpy.utils.register_classes_factory(classes)
