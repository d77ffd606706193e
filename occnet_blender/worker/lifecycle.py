"""The one backend worker the add-on talks to: which interpreter and engine run it, its state, its model list.

The worker is the first that starts: PyTorch in the "Backend Python" preference, in the environment the
installer made, or in Blender's own Python; else the built-in CPU runtime in Blender's own Python, with the
wheels the extension bundles (ONNX Runtime, Pillow, trimesh). Stock Blender has no PyTorch, so a fresh install
runs on the built-in runtime at once. In the UI the start runs on a thread (a torch import takes seconds);
background runs start it synchronously.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import bpy

from ..backend_parts import AUTO_MODEL, MODELS_PATH_ENV, HelloReply, ModelInfo, ModelsRequest
from ..identity import ADDON_ID, ENV_FOLDER, preferences
from .client import BackendClient, BackendError

ROOT = Path(__file__).resolve().parents[2]  # holds backend/ both in the extension and in a checkout
WEIGHTS_DIR = ROOT / "backend" / "weights"


RUNTIME_PACKAGES = ("onnxruntime", "PIL", "trimesh")  # the bundled wheels the runtime worker imports
RUNTIME_LABEL = "the built-in CPU runtime"


@dataclass(frozen=True)
class Interpreter:
    """One way to run the worker: `label` names it in messages, `paths` go before the worker's PYTHONPATH."""

    label: str
    python: str
    engine: str = "torch"  # the worker's --engine: "torch", or "runtime" (the built-in CPU runtime)
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchSettings:
    """Read from the preferences on the main thread, used on the starting thread."""

    interpreters: tuple[Interpreter, ...]
    device: str
    models_dir: str


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def installed_env() -> Path | None:
    if not preferences():
        return None
    return Path(bpy.utils.extension_path_user(ADDON_ID, path=ENV_FOLDER, create=False))


def runtime_paths() -> tuple[str, ...]:
    """The folders Blender imports the bundled wheels from (its extensions' site-packages), found without
    importing them; the worker is a fresh interpreter that would not look there on its own."""
    folders = []
    for package in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = str(Path(next(iter(spec.submodule_search_locations))).parent)
            if folder not in folders:
                folders.append(folder)
    return tuple(folders)


def launch_settings() -> LaunchSettings:
    prefs = preferences()
    interpreters = []
    if prefs is not None and prefs.backend_python.strip():
        python = bpy.path.abspath(prefs.backend_python.strip())
        interpreters.append(Interpreter("the Backend Python preference", python))
    env = installed_env()
    if env is not None and env_python(env).is_file():
        interpreters.append(Interpreter("the installed backend", str(env_python(env))))
    interpreters.append(Interpreter("Blender's Python", sys.executable))
    interpreters.append(Interpreter(RUNTIME_LABEL, sys.executable, "runtime", runtime_paths()))
    models_dir = bpy.path.abspath(prefs.models_dir) if prefs is not None and prefs.models_dir else ""
    return LaunchSettings(tuple(interpreters), prefs.device if prefs is not None else "auto", models_dir)


class Backend:
    """The worker's lifecycle. A start runs on a thread in the UI; `_lock` makes what it publishes (client,
    state, models) change together, and a start that `stop` overtook closes its worker instead of publishing."""

    def __init__(self) -> None:
        self.state = "stopped"  # stopped | starting | ready | failed
        self.message = ""
        self.client: BackendClient | None = None
        self.hello: HelloReply | None = None
        self.models: list[ModelInfo] = []
        self._items: list[tuple[str, str, str]] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every start and stop; a start publishes only if still current
        self.launch_override: LaunchSettings | None = None  # the batch script's --backend-python

    # --- lifecycle ------------------------------------------------------------------------------------

    def start_async(self) -> None:
        """Start the worker on a thread unless it is running or starting (UI mode)."""
        settings = self.launch_override or launch_settings()
        with self._lock:
            if self.state == "starting" or self._ready():
                return
            generation = self._begin()
            self._thread = threading.Thread(target=self._start, args=(settings, generation), daemon=True)
            self._thread.start()

    def require(self) -> BackendClient:
        """The running client, started here if needed (background mode); BackendError if none starts."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join()
        settings = self.launch_override or launch_settings()
        with self._lock:
            generation = None if self._ready() else self._begin()
        if generation is not None:
            self._start(settings, generation)
        with self._lock:
            if self.state != "ready" or self.client is None:
                raise BackendError(self.message, "device")
            return self.client

    def restart(self) -> None:
        self.stop()
        if bpy.app.background:
            self.require()
        else:
            self.start_async()

    def stop(self) -> None:
        """End the worker; a start still under way is abandoned (it closes the worker it made)."""
        with self._lock:
            self._generation += 1
            client, self.client, self.state, self.message = self.client, None, "stopped", ""
        if client is not None:
            client.close()

    def _ready(self) -> bool:
        return self.state == "ready" and self.client is not None and self.client.alive

    def _begin(self) -> int:
        """Under the lock: mark a start, and return its generation."""
        self._generation += 1
        self.state, self.message = "starting", "Starting the backend…"
        return self._generation

    def _start(self, settings: LaunchSettings, generation: int) -> None:
        tried = []
        for interpreter in settings.interpreters:
            if not Path(interpreter.python).is_file():
                tried.append(f"{interpreter.label} ({interpreter.python}: no such file)")
                continue
            client = BackendClient(
                interpreter.python, ROOT, settings.device, _worker_env(interpreter, settings), interpreter.engine
            )
            try:
                hello = client.start()
                models = client.run(ModelsRequest(), timeout=60).models
            except BackendError as exc:
                client.close()
                tried.append(f"{interpreter.label} ({interpreter.python}): {_first_line(exc)}")
                continue
            self._publish(generation, client, "ready", f"Ready: {engine_name(hello)}", hello, models)
            return
        message = (
            "The backend could not start. Tried " + "; ".join(tried) + ". "
            "Fix: install the extension's zip for this platform (it carries the built-in CPU runtime), or set "
            "'Backend Python' in the add-on preferences (the batch script: --backend-python) to an interpreter "
            "that has PyTorch."
        )
        self._publish(generation, None, "failed", message)

    def _publish(
        self,
        generation: int,
        client: BackendClient | None,
        state: str,
        message: str,
        hello: HelloReply | None = None,
        models: list[ModelInfo] = (),
    ) -> None:
        """Make a start's outcome current, unless a stop or another start came after it; close the worker
        that is left over (the replaced one, or this start's own when it came too late)."""
        with self._lock:
            if generation != self._generation:
                unused = client
            else:
                unused, self.client, self.state, self.message = self.client, client, state, message
                if client is not None:
                    self.hello, self.models = hello, sorted(models, key=lambda m: m.name)
        if unused is not None:
            unused.close()

    # --- what the UI shows ----------------------------------------------------------------------------

    def summary(self) -> str:
        return {"stopped": "not started (starts on the first Reconstruct)"}.get(self.state, self.message)

    @property
    def on_runtime(self) -> bool:
        """The built-in CPU runtime answers: no GPU, no face budget, no refinement."""
        return self.state == "ready" and self.hello is not None and self.hello.engine == "runtime"

    def model_info(self, name: str) -> ModelInfo | None:
        return next((m for m in self.models if m.name == name), None)

    def model_items(self) -> list[tuple[str, str, str]]:
        """Enum items (kept referenced, as Blender requires): Automatic, then every model found."""
        if self.models:
            found = [(m.name, f"{m.name} ({m.input_kind})", _describe(m)) for m in self.models]
        else:
            found = [(name, name, "Found on disk; details show once the backend runs") for name in _model_files()]
        automatic = (AUTO_MODEL, "Automatic", "The shipped model for each input: point clouds and meshes, or images")
        self._items = [automatic, *found]
        return self._items


def engine_name(hello: HelloReply) -> str:
    if hello.engine == "runtime":
        return "Built-in CPU runtime"
    return f"PyTorch {hello.torch} on {hello.device.upper()}"


def faster_engine_hint() -> str:
    """What to do for GPU speed: the installer when it may download, else an interpreter of one's own."""
    if bpy.app.online_access:
        return "For GPU speed: Preferences > Add-ons > OccNet > Install Backend (CUDA)."
    return "For GPU speed: set Backend Python (add-on preferences) to a Python that has PyTorch."


def _worker_env(interpreter: Interpreter, settings: LaunchSettings) -> dict[str, str]:
    env = {MODELS_PATH_ENV: settings.models_dir} if settings.models_dir else {}
    if interpreter.paths:
        env["PYTHONPATH"] = os.pathsep.join([*interpreter.paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _model_files() -> list[str]:
    prefs = preferences()
    extra = bpy.path.abspath(prefs.models_dir) if prefs is not None and prefs.models_dir else ""
    return _model_files_in(str(WEIGHTS_DIR), extra)


@functools.lru_cache(maxsize=8)
def _model_files_in(*folders: str) -> list[str]:
    """Enum items are asked for on every redraw: read each set of folders once."""
    paths = [Path(f) for f in folders if f]
    return sorted({p.stem for folder in paths if folder.is_dir() for p in folder.glob("*.safetensors")})


def _describe(model: ModelInfo) -> str:
    if model.architecture == "attention":
        latent = "feature planes plus features on every input point"
    elif model.architecture == "views":
        latent = "a feature map and silhouette per picture; select several reference images for one object"
    else:
        latent = " x ".join(str(n) for n in model.latent_shape)
    text = f"Reads {model.input_kind} input, {model.size_mb:.1f} MB, latent {latent}"
    scores = model.evaluation
    if "test_iou" in scores:
        text += f"; held-out IoU {scores['test_iou']:.3f}"
    return text


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


BACKEND = Backend()


def register() -> None:
    pass


def unregister() -> None:
    BACKEND.stop()
