"""The interpolation slider in real Blender: endpoints, live latest-wins updates, keyframes, bake, bad selections."""

import time

import bpy
import pytest
from blender_scenes import held_out, is_closed, other_iou, scan_of, select, vertex_cloud

ENDPOINT_IOU = 0.95


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


def test_factor_reproduces_the_endpoints_and_blends_between(blender):
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
    jobs = addon.jobs.JOBS
    monkeypatch.setattr(addon.blend, "synchronous", lambda: False)
    submitted = []
    start = jobs.start
    monkeypatch.setattr(jobs, "start", lambda job: submitted.append(job.fields["resolution"]) or start(job))
    for i in range(1, 21):  # a drag: each value runs the property's update callback, as in the UI
        blend.occnet.factor = i / 20
        jobs.poll()
        assert sum(1 for j in jobs.queue if j.request == "interpolate") <= 1
        time.sleep(0.01)
    deadline = time.monotonic() + 60
    while (jobs.queue or addon.blend._pending) and time.monotonic() < deadline:
        jobs.poll()
        time.sleep(0.02)
    assert submitted[0] == addon.properties.PREVIEW_RESOLUTION and submitted[-1] == blend.occnet.resolution
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


def test_cancel_while_dragging_does_not_freeze_the_slider(blender, addon, monkeypatch):
    a, b = _two_reconstructions()
    blend = _blend_of(a, b)
    jobs = addon.jobs.JOBS
    monkeypatch.setattr(addon.blend, "synchronous", lambda: False)
    blend.occnet.factor = 0.3
    jobs.poll()
    assert jobs.queue, "the slider started a job"
    jobs.cancel()
    deadline = time.monotonic() + 30
    while jobs.queue and time.monotonic() < deadline:
        jobs.poll()
    blend.occnet.factor = 0.8
    deadline = time.monotonic() + 60
    while (jobs.queue or addon.blend._pending) and time.monotonic() < deadline:
        jobs.poll()
        time.sleep(0.02)
    assert blend.occnet.shown_factor == pytest.approx(0.8)
