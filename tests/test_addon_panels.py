"""The sidebar and the preferences draw in every state (idle, running, failed backend, a blend selected).

Headless Blender has no window to draw in, so each draw() runs against a layout that checks every call
against Blender's own UILayout definition: method names, keyword arguments, icons, operators, properties.
"""

import bpy
import pytest
from blender_scenes import held_out, scan_of, select, vertex_cloud

UI = bpy.types.UILayout.bl_rna.functions
ICONS = set(UI["label"].parameters["icon"].enum_items.keys())


class CheckedLayout:
    """Records what a draw() asks for and fails on anything Blender's UILayout would reject."""

    def __init__(self, log):
        self.log = log
        self.enabled = True

    def __getattr__(self, name):
        if name not in UI:
            raise AttributeError(f"UILayout has no '{name}'")
        parameters = {p.identifier for p in UI[name].parameters}

        def call(*args, **kwargs):
            unknown = set(kwargs) - parameters
            assert not unknown, f"{name}() has no parameters {unknown}"
            if "icon" in kwargs:
                assert kwargs["icon"] in ICONS, f"unknown icon {kwargs['icon']}"
            if name == "operator":
                module, op = args[0].split(".")
                getattr(getattr(bpy.ops, module), op).get_rna_type()  # KeyError unless it is registered
            if name == "prop":
                assert args[1] in args[0].bl_rna.properties, f"no property {args[1]}"
            self.log.append((name, args[1] if name == "prop" else args[0] if args else kwargs.get("text")))
            return CheckedLayout(self.log)

        return call


def _draw(panel_class, context=None):
    log = []
    panel_class.draw(_Self(CheckedLayout(log)), context or bpy.context)
    return log


class _Self:
    def __init__(self, layout):
        self.layout = layout


def test_main_panel_idle_running_and_failed(blender, addon):
    log = _draw(bpy.types.OCCNET_PT_main)
    assert ("operator", "occnet.reconstruct") in log and ("prop", "model") in log and ("prop", "resolution") in log

    job = addon.worker.jobs.Job("scan", "reconstruct", {})
    job.stage, job.fraction = "evaluate", 0.4
    addon.worker.jobs.JOBS.queue.append(job)
    try:
        log = _draw(bpy.types.OCCNET_PT_main)
    finally:
        addon.worker.jobs.JOBS.queue.remove(job)
    assert ("progress", "scan: evaluate 40%") in log
    assert ("operator", "occnet.cancel") in log

    backend = addon.worker.lifecycle.BACKEND
    state, message = backend.state, backend.message
    backend.state, backend.message = "failed", "The backend could not start."
    addon.worker.jobs.JOBS.report("scan: something went wrong")
    try:
        log = _draw(bpy.types.OCCNET_PT_main)
    finally:
        backend.state, backend.message = state, message
    assert ("operator", "screen.userpref_show") in log
    assert any(n == "label" and "something went wrong" in str(a) for n, a in log)


def test_advanced_blend_and_preferences_draw(blender, addon):
    assert [a for n, a in _draw(bpy.types.OCCNET_PT_advanced) if n == "prop"] == [
        "refine_steps",
        "faces",
        "snap",
        "smooth",
    ]
    assert ("operator", "occnet.blend") in _draw(bpy.types.OCCNET_PT_blend)
    a = vertex_cloud("a", scan_of(held_out("bottle", 0)))
    b = vertex_cloud("b", scan_of(held_out("mug", 0)))
    select(a, b)
    bpy.context.scene.occnet.resolution = 32
    bpy.ops.occnet.reconstruct()
    select(bpy.data.objects["a.occnet"], bpy.data.objects["b.occnet"])
    bpy.ops.occnet.blend()
    blend = next(o for o in bpy.data.objects if o.occnet.kind == "BLEND")
    bpy.context.view_layer.objects.active = blend
    log = _draw(bpy.types.OCCNET_PT_blend)
    assert ("prop", "factor") in log and ("operator", "occnet.bake") in log
    prefs = addon.ui.preferences.preferences()
    log = []
    type(prefs).draw(_PrefsSelf(prefs, CheckedLayout(log)), bpy.context)
    assert ("prop", "backend_python") in log


def test_install_backend_is_offered_only_where_online_access_is_allowed(blender, addon):
    prefs = addon.ui.preferences.preferences()
    system = bpy.context.preferences.system
    drawn = {}
    for online in (False, True):
        system.use_online_access = online
        try:
            log = []
            type(prefs).draw(_PrefsSelf(prefs, CheckedLayout(log)), bpy.context)
            main = _draw(bpy.types.OCCNET_PT_main)
        finally:
            system.use_online_access = False
        drawn[online] = log, main
    assert ("operator", "occnet.install_backend") not in drawn[False][0]
    assert any(n == "label" and "set Backend Python" in str(a) for n, a in drawn[False][0])
    assert ("operator", "occnet.install_backend") in drawn[True][0]


def test_the_panel_names_the_engine_and_how_to_get_gpu_speed(blender, addon):
    backend = addon.worker.lifecycle.BACKEND
    saved = backend.state, backend.message, backend.hello
    runtime = addon.backend_parts.HelloReply(2, "0.1.0", None, "cpu", ["cpu"], 1, engine="runtime")
    torch = addon.backend_parts.HelloReply(2, "0.1.0", "2.13.0", "cuda", ["cpu", "cuda"], 1, engine="torch")
    system = bpy.context.preferences.system
    try:
        backend.state, backend.hello = "ready", runtime
        backend.message = f"Ready: {addon.worker.lifecycle.engine_name(runtime)}"
        on_runtime = _draw(bpy.types.OCCNET_PT_main), _draw(bpy.types.OCCNET_PT_advanced)
        system.use_online_access = True
        online_hint = _labels(_draw(bpy.types.OCCNET_PT_main))
        system.use_online_access = False
        backend.hello = torch
        backend.message = f"Ready: {addon.worker.lifecycle.engine_name(torch)}"
        on_torch = _draw(bpy.types.OCCNET_PT_main), _draw(bpy.types.OCCNET_PT_advanced)
    finally:
        system.use_online_access = False
        backend.state, backend.message, backend.hello = saved
    labels = _labels(on_runtime[0])
    assert "Backend: Ready: Built-in CPU runtime" in labels
    assert "set Backend Python" in labels and "Install Backend" in online_hint
    assert "need the PyTorch backend" in _labels(on_runtime[1])
    assert "Backend: Ready: PyTorch 2.13.0 on CUDA" in _labels(on_torch[0])
    assert "GPU speed" not in _labels(on_torch[0]) and "PyTorch backend" not in _labels(on_torch[1])


def _labels(log) -> str:
    """The label texts as one string: wrapped lines joined by spaces."""
    return " ".join(str(a) for n, a in log if n == "label")


def test_checked_layout_rejects_what_blender_would(blender):
    """bpy.ops builds a callable for any name, so the check asks Blender for the operator's definition."""
    layout = CheckedLayout([])
    layout.operator("occnet.reconstruct")
    with pytest.raises(KeyError):
        layout.operator("occnet.no_such_operator")
    with pytest.raises(AssertionError, match="no property"):
        layout.prop(bpy.context.scene.occnet, "no_such_property")


def test_model_choice_survives_list_changes(blender, addon, tmp_path, monkeypatch):
    """Blender keeps a dynamic enum's choice as a number: each model's number comes from its name, so a model
    added before it, or the worker's list replacing the disk scan, leaves the artist's pick as it was."""
    backend = addon.worker.lifecycle.BACKEND
    backend.require()
    worker_models = list(backend.models)
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, names in ((one, ["ab-extra"]), (two, ["aa-extra", "ab-extra"])):
        folder.mkdir()
        for name in names:  # the disk scan only reads names
            (folder / f"{name}.safetensors").write_bytes(b"")
    settings = blender.context.scene.occnet
    prefs = addon.ui.preferences.preferences()
    monkeypatch.setattr(backend, "models", [])  # the disk scan, as before the worker has started
    prefs.models_dir = str(one)
    try:
        settings.model = "ab-extra"
        prefs.models_dir = str(two)  # a model file added to the extra folder, listed before the chosen one
        assert [i[0] for i in backend.model_items()][1:3] == ["aa-extra", "ab-extra"]
        assert settings.model == "ab-extra"
        settings.model = "onet-pointcloud"
        backend.models = worker_models  # the running worker's list (no extra models) replaces the disk scan
        assert "aa-extra" not in [i[0] for i in backend.model_items()]
        assert settings.model == "onet-pointcloud"
        backend.models = []
        settings.model = "ab-extra"
        backend.models = worker_models  # a list without the chosen model: Reconstruct says so in one line
        assert settings.model == ""
        with pytest.raises(RuntimeError, match="The model picked is no longer in the list. Pick a model"):
            bpy.ops.occnet.reconstruct()
        backend.models = []
        assert settings.model == "ab-extra", "the choice comes back with its model"
    finally:
        prefs.models_dir = ""


class _PrefsSelf:
    def __init__(self, prefs, layout):
        self._prefs, self.layout = prefs, layout

    def __getattr__(self, name):
        return getattr(self._prefs, name)


@pytest.fixture(autouse=True)
def _clear_problems(addon):
    yield
    addon.worker.jobs.JOBS.problems.clear()
