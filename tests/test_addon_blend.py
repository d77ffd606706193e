"""The interpolation slider in real Blender: endpoints, live latest-wins updates, keyframes, bake, bad selections,
with global codes and with feature-plane (triplane) latents, and how compactly latents are stored."""

import time

import bpy
import numpy as np
import pytest
from blender_scenes import held_out, is_closed, other_iou, scan_of, select, vertex_cloud

ENDPOINT_IOU = 0.95
TRIPLANE_SHAPE = (3, 32, 64, 64)
MEGABYTE = 1 << 20


@pytest.fixture(scope="module")
def triplane_models(addon, tiny_triplane_model):
    """The add-on's extra models folder holds a feature-plane model while this module's tests run."""
    prefs = addon.ui.preferences.preferences()
    prefs.models_dir = str(tiny_triplane_model.parent)
    yield tiny_triplane_model.stem
    prefs.models_dir = ""


@pytest.fixture
def triplane(blender, addon, triplane_models):
    """Reconstruct picks the triplane test model: its latents are (3, 32, 64, 64) feature planes."""
    addon.worker.lifecycle.BACKEND.require()  # the model list the panel's enum offers comes from the running worker
    blender.context.scene.occnet.model = triplane_models
    yield triplane_models
    blender.context.scene.occnet.model = "auto"


@pytest.fixture(params=["shipped", "triplane"])
def model(request, blender):
    """Which model reconstructs: the shipped default for point clouds (Automatic), or the triplane test model."""
    return "auto" if request.param == "shipped" else request.getfixturevalue("triplane")


def _two_reconstructions(offset=(0.0, 0.0, 0.0)):
    a = vertex_cloud("bottle", scan_of(held_out("bottle", 0)))
    b = vertex_cloud("mug", scan_of(held_out("mug", 1)))
    b.location = offset
    select(a, b)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    return bpy.data.objects["bottle.occnet"], bpy.data.objects["mug.occnet"]


def _blend_of(a, b):
    select(a, b)
    assert bpy.ops.occnet.blend() == {"FINISHED"}
    return next(o for o in bpy.data.objects if o.occnet.kind == "BLEND")


def test_factor_reproduces_the_endpoints_and_blends_between(blender, model):
    a, b = _two_reconstructions()
    blend = _blend_of(a, b)
    assert blend.occnet.blend_a == "bottle.occnet" and blend.occnet.blend_b == "mug.occnet"
    apart = other_iou(a, b)

    blend.occnet.factor = 0.0
    assert other_iou(blend, a) >= ENDPOINT_IOU
    blend.occnet.factor = 1.0
    assert other_iou(blend, b) >= ENDPOINT_IOU
    blend.occnet.factor = 0.5
    assert is_closed(blend)
    to_a, to_b = other_iou(blend, a), other_iou(blend, b)
    assert apart < to_a < ENDPOINT_IOU and apart < to_b < ENDPOINT_IOU, (apart, to_a, to_b)


def test_blend_moves_between_the_two_places(blender):
    a, b = _two_reconstructions(offset=(1.5, 0.5, 0.0))
    blend = _blend_of(a, b)
    for factor, where in ((0.0, (0.0, 0.0, 0.0)), (0.5, (0.75, 0.25, 0.0)), (1.0, (1.5, 0.5, 0.0))):
        blend.occnet.factor = factor
        assert tuple(blend.matrix_world.translation) == pytest.approx(where)
    assert other_iou(blend, b) >= ENDPOINT_IOU


def test_keyframed_factor_follows_the_frame(blender):
    a, b = _two_reconstructions()
    blend = _blend_of(a, b)
    for frame, factor in ((1, 0.0), (20, 1.0)):
        blend.occnet.factor = factor
        blend.occnet.keyframe_insert("factor", frame=frame)
    scene = blender.context.scene
    scene.frame_set(20)
    assert blend.occnet.factor == pytest.approx(1.0) and other_iou(blend, b) >= ENDPOINT_IOU
    scene.frame_set(1)
    assert other_iou(blend, a) >= ENDPOINT_IOU
    scene.frame_set(10)
    assert 0.0 < blend.occnet.shown_factor < 1.0
    assert other_iou(blend, a) < ENDPOINT_IOU and other_iou(blend, b) < ENDPOINT_IOU


def test_dragging_is_latest_wins_with_a_coarse_preview(blender, addon, monkeypatch):
    """The UI path, driven by hand (timers do not run in background mode): slider events while a job runs
    give one job at a time; the preview is coarse, and the full resolution follows once the slider settles."""
    a, b = _two_reconstructions()
    blend = _blend_of(a, b)
    jobs = addon.worker.jobs.JOBS
    monkeypatch.setattr(addon.scene.blend, "synchronous", lambda: False)
    submitted = []
    start = jobs.start
    monkeypatch.setattr(jobs, "start", lambda job: submitted.append(job.request.options.resolution) or start(job))
    for i in range(1, 21):  # a drag: each value runs the property's update callback, as in the UI
        blend.occnet.factor = i / 20
        jobs.poll()
        assert sum(1 for j in jobs.queue if j.request == "interpolate") <= 1
        time.sleep(0.01)
    deadline = time.monotonic() + 60
    while (jobs.queue or addon.scene.blend._pending) and time.monotonic() < deadline:
        jobs.poll()
        time.sleep(0.02)
    assert submitted[0] == addon.worker.extraction.PREVIEW_RESOLUTION and submitted[-1] == blend.occnet.resolution
    assert len(submitted) < 20
    assert (blend.occnet.shown_factor, blend.occnet.shown_resolution) == (1.0, blend.occnet.resolution)
    assert other_iou(blend, b) >= ENDPOINT_IOU


def test_bake_makes_a_plain_copy(blender):
    a, b = _two_reconstructions()
    blend = _blend_of(a, b)
    blender.context.view_layer.objects.active = blend
    assert bpy.ops.occnet.bake() == {"FINISHED"}
    baked = bpy.data.objects[f"{blend.name}.baked"]
    assert baked.occnet.kind == "NONE" and len(baked.data.vertices) == len(blend.data.vertices)
    assert baked.data != blend.data


def test_blend_refuses_what_it_cannot_blend(blender):
    a, b = _two_reconstructions()
    plain = vertex_cloud("plain", scan_of(held_out("mug", 2)))
    select(a)
    with pytest.raises(RuntimeError, match="Select exactly two reconstructions"):
        bpy.ops.occnet.blend()
    select(a, plain)
    with pytest.raises(RuntimeError, match="'plain' is not an OccNet reconstruction"):
        bpy.ops.occnet.blend()
    b.occnet.model = "onet-image"
    select(a, b)
    with pytest.raises(RuntimeError, match="only shapes from the same model can be blended"):
        bpy.ops.occnet.blend()
    select(a)
    with pytest.raises(RuntimeError, match="is not an OccNet blend"):
        bpy.ops.occnet.bake()


def test_blend_and_bake_grey_out_with_a_reason(blender):
    """The buttons are disabled, with the reason as their tooltip, until the selection can be used."""
    blend, bake = bpy.ops.occnet.blend, bpy.ops.occnet.bake
    a, b, c = (vertex_cloud(name, np.zeros((4, 3))) for name in "abc")
    select()
    assert not blend.poll() and not bake.poll()
    with pytest.raises(
        RuntimeError, match=r"blend.poll\(\) Select exactly two reconstructions to blend \(0 selected\)"
    ):
        blend()
    with pytest.raises(RuntimeError, match=r"bake.poll\(\) No active object"):
        bake()
    select(a, b)
    assert not blend.poll()
    a.occnet.kind = b.occnet.kind = c.occnet.kind = "RECONSTRUCTION"
    assert blend.poll()
    select(a, b, c)
    assert not blend.poll()
    select(a)
    assert not bake.poll()
    a.occnet.kind = "BLEND"
    assert bake.poll()


def test_cancel_while_dragging_does_not_freeze_the_slider(blender, addon, monkeypatch):
    a, b = _two_reconstructions()
    blend = _blend_of(a, b)
    jobs = addon.worker.jobs.JOBS
    monkeypatch.setattr(addon.scene.blend, "synchronous", lambda: False)
    blend.occnet.factor = 0.3
    jobs.poll()
    assert jobs.queue, "the slider started a job"
    jobs.cancel()
    deadline = time.monotonic() + 30
    while jobs.queue and time.monotonic() < deadline:
        jobs.poll()
    blend.occnet.factor = 0.8
    deadline = time.monotonic() + 60
    while (jobs.queue or addon.scene.blend._pending) and time.monotonic() < deadline:
        jobs.poll()
        time.sleep(0.02)
    assert blend.occnet.shown_factor == pytest.approx(0.8)


def _saved_bytes(path) -> int:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, compress=False)
    return path.stat().st_size


def test_triplane_latents_are_compact_and_survive_undo_and_save(blender, addon, triplane, tmp_path):
    latents = addon.scene.latents
    a, b = _two_reconstructions()
    code = latents.latent_of(a)
    assert code.shape == TRIPLANE_SHAPE and code.dtype == np.float32 and np.isfinite(code).all()
    bpy.ops.ed.undo_push(message="before the blend")
    name = _blend_of(a, b).name
    bpy.ops.ed.undo_push(message="blend")  # operators called from a script push no undo step of their own
    bpy.ops.ed.undo()
    assert name not in bpy.data.objects  # undo invalidated every earlier reference: look objects up by name
    assert np.array_equal(latents.latent_of(bpy.data.objects["bottle.occnet"]), code)
    bpy.ops.ed.redo()
    blend = bpy.data.objects[name]
    assert np.array_equal(latents.latent_of(blend, latents.BLEND_LATENT_KEYS[0]), code)
    blend.occnet.factor = 1.0
    assert other_iou(blend, bpy.data.objects["mug.occnet"]) >= ENDPOINT_IOU

    saved = _saved_bytes(tmp_path / "with.blend")
    with bpy.data.libraries.load(str(tmp_path / "with.blend")) as (_, appended):
        appended.objects = ["bottle.occnet"]
    copy = appended.objects[0]
    assert np.array_equal(latents.latent_of(copy), code), "the latent reads back from the .blend"
    mesh = copy.data
    bpy.data.objects.remove(copy)
    bpy.data.meshes.remove(mesh)
    del bpy.data.objects["bottle.occnet"][latents.LATENT_KEY]
    one = saved - _saved_bytes(tmp_path / "without-one.blend")
    for key in latents.BLEND_LATENT_KEYS:
        del blend[key]
    two = saved - one - _saved_bytes(tmp_path / "without-blend.blend")
    print(f"bytes the latents add to a .blend: a reconstruction {one:,}, a blend object {two:,}")
    assert code.size * 2 <= one < MEGABYTE and 2 * code.size * 2 <= two < 2 * MEGABYTE


def test_blend_reads_latents_stored_as_float_arrays_by_earlier_versions(blender, addon):
    blender.context.scene.occnet.model = "onet-pointcloud"  # a global code: all that earlier versions made
    a, b = _two_reconstructions()
    for obj in (a, b):  # as versions before compact latents stored it: an ID-property array of doubles
        obj[addon.scene.latents.LATENT_KEY] = addon.scene.latents.latent_of(obj).astype(np.float64).tolist()
    assert addon.scene.latents.latent_of(a).shape == (128,)
    blend = _blend_of(a, b)
    blend.occnet.factor = 0.0
    assert other_iou(blend, a) >= ENDPOINT_IOU
    blend.occnet.factor = 1.0
    assert other_iou(blend, b) >= ENDPOINT_IOU
