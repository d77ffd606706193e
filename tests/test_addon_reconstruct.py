"""Reconstruct in real Blender with the installed extension and the shipped models: placement, provenance,
the UI's job path (poller, progress, Cancel), undo, and the messages for every selection it cannot use."""

import os
import signal
import sys
import threading
import time

import bpy
import numpy as np
import pytest
import trimesh
from blender_scenes import (
    held_out,
    image_empty,
    image_empty_of,
    is_closed,
    link,
    other_iou,
    scan_of,
    select,
    vertex_cloud,
    world_iou,
    world_mesh,
)
from mathutils import Euler, Matrix, Vector
from PIL import Image
from reference_pictures import pictures_of

from backend.data.procedural import shape_mesh
from backend.metrics import solid_iou

# Held-out sofa, 3,000 noisy points, resolution 64: the default model scores 0.81 outside Blender. (Its weak spot
# is thin-walled open containers such as the mugs, 0.37: docs/MODELS.md.)
POINTCLOUD_IOU = 0.72
IMAGE_IOU = 0.5  # held-out mug, one 128 px render; onet-image's test mean inside its 12 families is 0.67
VIEWS_IOU = 0.9  # a cylinder from front, side and top reference images (issue 17's floor; it scores 0.94)
MUG = ("mug", 0)
SOFA = ("sofa", 6)


def _placed_scan(name="scan"):
    shape = held_out(*SOFA)
    obj = vertex_cloud(name, scan_of(shape))
    obj.location, obj.rotation_euler, obj.scale = (2.0, -1.0, 0.5), (0.3, -0.2, 1.1), (1.5, 1.5, 1.5)
    bpy.context.view_layer.update()
    return obj, shape


def test_point_cloud_placed_rotated_and_scaled(blender, addon):
    collection = bpy.data.collections.new("Scans")
    blender.context.scene.collection.children.link(collection)
    scan, shape = _placed_scan()
    blender.context.scene.collection.objects.unlink(scan)
    collection.objects.link(scan)
    before = np.array([v.co[:] for v in scan.data.vertices])
    select(scan)

    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}

    result = bpy.data.objects["scan.occnet"]
    assert result.users_collection[0] == collection
    assert np.allclose(np.array(result.matrix_world), np.array(scan.matrix_world), atol=1e-6)
    assert is_closed(result)
    score = world_iou(result, shape, np.array(scan.matrix_world))
    assert score > POINTCLOUD_IOU, score
    state = result.occnet
    assert (state.kind, state.model, state.source, state.input_kind) == (
        "RECONSTRUCTION",
        "attention-pointcloud",
        "scan",
        "pointcloud",
    )
    code = addon.scene.latents.latent_of(
        result
    )  # Automatic: point attention, the planes and the features on the points
    assert code.ndim == 1 and code.size > 3 * 32 * 64 * 64 and state.blends_by_field
    assert "points" in state.input_summary
    assert np.array_equal(before, np.array([v.co[:] for v in scan.data.vertices])), "the source changed"


def test_mesh_with_faces_is_sampled_on_its_surface(blender):
    shape = held_out(*SOFA)
    source = shape_mesh(shape)
    mesh = bpy.data.meshes.new("rough")
    mesh.from_pydata(source.vertices.tolist(), [], source.faces.tolist())
    obj = link(bpy.data.objects.new("rough", mesh))
    obj.location = (-3.0, 0.0, 1.0)
    bpy.context.view_layer.update()
    select(obj)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    score = world_iou(bpy.data.objects["rough.occnet"], shape, np.array(obj.matrix_world))
    assert score > POINTCLOUD_IOU, score


def test_a_one_picture_model_reconstructs_upright_at_the_empty(blender, tmp_path):
    """onet-image (one global code, upright objects of its 12 families) ignores the empty's turn."""
    shape = held_out(*MUG)
    empty = image_empty("photo", shape, tmp_path, size=2.0)
    empty.location, empty.rotation_euler = (0.0, 4.0, 1.0), (1.5708, 0.0, 0.3)
    bpy.context.view_layer.update()
    select(empty)
    bpy.context.scene.occnet.model = "onet-image"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = bpy.data.objects["photo.occnet"]
    assert result.occnet.model == "onet-image"
    placement = Matrix.Translation(empty.location) @ Matrix.Scale(2.0, 4)
    score = world_iou(result, shape, np.array(placement))
    assert score > IMAGE_IOU, score


def test_a_photo_without_alpha_is_masked_by_its_backdrop_and_says_so(blender, tmp_path):
    """A JPEG-like picture (no alpha; Blender holds it as opaque RGBA): the plain white backdrop is the mask, the
    result is as good as from the alpha render, and the panel says which rule masked it."""
    shape = held_out(*MUG)
    with_alpha = image_empty("cutout", shape, tmp_path)
    pixels = np.asarray(Image.open(tmp_path / "cutout.png"), dtype=np.float64)
    alpha = pixels[:, :, 3:] / 255.0
    Image.fromarray((pixels[:, :, :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8), "RGB").save(
        tmp_path / "photo_rgb.png"
    )
    empty = image_empty_of("photo_rgb", tmp_path / "photo_rgb.png")
    for obj in (with_alpha, empty):
        select(obj)
        assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    result = bpy.data.objects["photo_rgb.occnet"]
    assert "No alpha channel" in result.occnet.input_summary and "covers" in result.occnet.input_summary
    assert "alpha channel keeps" in bpy.data.objects["cutout.occnet"].occnet.input_summary
    # the same object from nearly the same silhouette (0.73): the backdrop's flood cannot reach the background the
    # mug's handle encloses, so the photo's mask fills that hole (421 pixels of 7,335), and the round inflation of
    # a lone picture, as deep as the silhouette's widest part, comes out a fifth deeper (0.873 when the network
    # guessed the depth); a picture masked wrongly (a slab of the whole frame) scores far below
    assert other_iou(result, bpy.data.objects["cutout.occnet"]) > 0.65


def test_front_side_and_top_image_empties_become_one_object_in_place(blender, tmp_path):
    """A blueprint: reference images of a cylinder, each as Add > Image > Reference places it in Blender's front,
    right and top views (behind the object), selected together: one object that fits every silhouette, in place."""
    place = np.array([2.0, 1.0, 0.5])
    solid = trimesh.creation.cylinder(radius=0.3, height=0.8, sections=64)
    solid.apply_translation(place)
    empties = []
    names = ("front", "side", "top")
    for name, rotation, (pixels, view) in zip(
        names, ((90, 0, 0), (90, 0, 90), (0, 0, 0)), pictures_of(solid, list(names), place, 2.0, 160), strict=True
    ):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        empty = image_empty_of(name, tmp_path / f"{name}.png", size=2.0)
        empty.location = tuple(place - 1.5 * view.axes[2])  # behind the object, seen from the view's side
        empty.rotation_euler = tuple(np.radians(rotation))
        empties.append(empty)
    select(*empties)
    before = set(bpy.data.objects.keys())
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    (name,) = set(bpy.data.objects.keys()) - before
    result = bpy.data.objects[name]
    assert "3 reference images" in result.occnet.input_summary
    assert solid_iou(world_mesh(result), (solid.vertices, solid.faces)) >= VIEWS_IOU


def test_image_file_path_lands_at_the_cursor(blender, tmp_path):
    shape = held_out(*MUG)
    empty = image_empty("file_photo", shape, tmp_path)
    bpy.data.objects.remove(empty)
    blender.context.scene.cursor.location = (1.0, 2.0, 3.0)
    assert bpy.ops.occnet.reconstruct(filepath=str(tmp_path / "file_photo.png")) == {"FINISHED"}
    result = bpy.data.objects["file_photo.occnet"]
    vertices, _ = world_mesh(result)
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    assert np.allclose(centre, (1.0, 2.0, 3.0), atol=0.1), centre  # a file's shape lands at the cursor
    assert tuple(result.matrix_world.translation) == pytest.approx(tuple(centre), abs=1e-4)  # its origin on itself


def test_several_selected_objects_each_get_a_result(blender):
    a = vertex_cloud("a", scan_of(held_out("bottle", 0)))
    b = vertex_cloud("b", scan_of(held_out("mug", 1)))
    select(a, b)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert {"a.occnet", "b.occnet"} <= set(bpy.data.objects.keys())


def _run_ui_job(addon, job, until):
    """Drive the UI path by hand: the timer callback (`poll`) is what bpy.app.timers calls in the UI."""
    addon.worker.jobs.JOBS.start(job)
    deadline = time.monotonic() + 120
    while not until() and time.monotonic() < deadline:
        addon.worker.jobs.JOBS.poll()
        time.sleep(0.01)


def test_ui_path_shows_progress_then_adds_the_result(blender, addon):
    scan, _ = _placed_scan("async")
    source = addon.scene.gather.gather_object(scan, blender.context.evaluated_depsgraph_get())
    job = addon.scene.reconstruct.reconstruct_job(source, blender.context.scene.occnet)
    stages = set()
    _run_ui_job(addon, job, lambda: stages.add(job.stage) or not addon.worker.jobs.JOBS.queue)
    assert "evaluate" in stages, stages
    assert "async.occnet" in bpy.data.objects


def test_cancel_mid_job_leaves_the_scene_as_it_was(blender, addon):
    scan, _ = _placed_scan("big")
    blender.context.scene.occnet.resolution = 512
    source = addon.scene.gather.gather_object(scan, blender.context.evaluated_depsgraph_get())
    job = addon.scene.reconstruct.reconstruct_job(source, blender.context.scene.occnet)
    _run_ui_job(addon, job, lambda: job.stage == "evaluate")
    assert job.stage == "evaluate"
    names = set(bpy.data.objects.keys())
    assert addon.worker.jobs.JOBS.cancel() == 1
    _run_ui_job(
        addon,
        addon.worker.jobs.Job("noop", addon.backend_parts.HelloRequest()),
        lambda: not addon.worker.jobs.JOBS.queue,
    )
    assert set(bpy.data.objects.keys()) == names
    assert not addon.worker.jobs.JOBS.problems, "a cancel is not a problem"


def test_undo_removes_the_result_and_keeps_the_source(blender, addon):
    """The UI path pushes its own undo step when a result arrives. The operator only starts jobs and returns
    long before: with REGISTER or UNDO, Blender would push an empty step for it and offer a redo panel whose
    every change starts the whole job again."""
    assert not {"REGISTER", "UNDO"} & bpy.ops.occnet.reconstruct.bl_options  # as Blender registered it
    scan, _ = _placed_scan()
    bpy.ops.ed.undo_push(message="before")
    source = addon.scene.gather.gather_object(scan, blender.context.evaluated_depsgraph_get())
    job = addon.scene.reconstruct.reconstruct_job(source, blender.context.scene.occnet)
    _run_ui_job(addon, job, lambda: not addon.worker.jobs.JOBS.queue)
    assert "scan.occnet" in bpy.data.objects
    bpy.ops.ed.undo()
    assert "scan.occnet" not in bpy.data.objects
    assert len(bpy.data.objects["scan"].data.vertices) == 3000


def test_backend_crash_is_reported_and_the_next_run_works(blender, addon):
    scan, _ = _placed_scan()
    select(scan)
    blender.context.scene.occnet.resolution = 512
    client = addon.worker.lifecycle.BACKEND.require()
    threading.Timer(1.5, lambda: os.kill(client.process.pid, signal.SIGKILL)).start()
    with pytest.raises(RuntimeError, match="stopped unexpectedly"):
        bpy.ops.occnet.reconstruct()
    assert "scan.occnet" not in bpy.data.objects
    blender.context.scene.occnet.resolution = 32
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}


def _bad(message_part):
    with pytest.raises(RuntimeError, match=message_part):
        bpy.ops.occnet.reconstruct()


def test_bad_selections_say_what_is_wrong(blender, tmp_path):
    select()
    _bad("Nothing is selected")
    select(link(bpy.data.objects.new("Empty mesh", bpy.data.meshes.new("e"))))
    _bad("'Empty mesh' is an empty mesh")
    select(link(bpy.data.objects.new("Camera", bpy.data.cameras.new("c"))))
    _bad("'Camera' is a camera: OccNet reconstructs meshes, point clouds and image empties")
    select(link(bpy.data.objects.new("Plain", None)))
    _bad("'Plain' is an empty without a picture")
    missing = image_empty("gone", held_out(*MUG), tmp_path)
    (tmp_path / "gone.png").unlink()
    missing.data.reload()
    select(missing)
    _bad("The image 'gone.png' of 'gone' cannot be read")
    scan = vertex_cloud("scan", scan_of(held_out(*MUG)))
    select(scan)
    bpy.context.scene.occnet.model = "onet-image"
    _bad("'scan' is a pointcloud input but the model 'onet-image' reads image input")
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.occnet.reconstruct(filepath=str(tmp_path / "nope.xyz"))
    names = {o.name for o in bpy.data.objects if o.name.endswith(".occnet")}
    assert not names


def test_no_backend_says_what_to_do(blender, addon, monkeypatch, tmp_path):
    lifecycle = addon.worker.lifecycle
    no_torch = tmp_path / "python"
    no_torch.write_text("#!/bin/sh\nexit 3\n")
    no_torch.chmod(0o755)
    settings = lifecycle.LaunchSettings(
        (lifecycle.Interpreter("the Backend Python preference", str(no_torch)),), "auto", ""
    )
    lifecycle.BACKEND.stop()
    monkeypatch.setattr(lifecycle.BACKEND, "launch_override", settings)
    scan = vertex_cloud("scan", scan_of(held_out(*MUG)))
    select(scan)
    with pytest.raises(RuntimeError, match="set 'Backend Python'"):
        bpy.ops.occnet.reconstruct()
    assert lifecycle.BACKEND.state == "failed"
    monkeypatch.setattr(lifecycle.BACKEND, "launch_override", None)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}


def test_interpreter_order_follows_the_preferences(blender, addon, tmp_path):
    prefs = addon.ui.preferences.preferences()
    prefs.backend_python = str(tmp_path / "my-python")
    try:
        interpreters = addon.worker.lifecycle.launch_settings().interpreters
    finally:
        prefs.backend_python = ""
    labels = [i.label for i in interpreters]
    assert labels == ["the Backend Python preference", "Blender's Python", "the built-in CPU runtime"]
    assert [i.engine for i in interpreters] == ["torch", "torch", "runtime"]
    assert interpreters[-1].python == interpreters[-2].python == sys.executable


def test_install_backend_respects_online_access(blender):
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.occnet.install_backend()


def test_mesh_insertion_uses_flat_arrays(blender, addon):
    grid = np.stack(np.meshgrid(np.arange(300), np.arange(300), indexing="ij"), -1).reshape(-1, 2)
    vertices = np.concatenate([grid, np.zeros((len(grid), 1))], 1).astype(np.float32)
    quads = (grid[:, 0] < 299) & (grid[:, 1] < 299)
    i = np.nonzero(quads)[0]
    faces = np.concatenate([np.stack([i, i + 300, i + 1], 1), np.stack([i + 1, i + 300, i + 301], 1)])
    obj = addon.scene.meshes.new_mesh_object("grid", vertices, faces, list(np.eye(4).ravel()), [], True)
    assert (len(obj.data.vertices), len(obj.data.polygons)) == (90_000, len(faces))
    assert obj.data.polygons[5].vertices[:] == tuple(faces[5])
    assert Vector(obj.data.vertices[301].co) == Vector(vertices[301])
    assert obj.rotation_euler == Euler()


def test_ui_path_restarts_a_dead_worker_off_the_main_thread(blender, addon):
    scan, _ = _placed_scan()
    client = addon.worker.lifecycle.BACKEND.require()
    client.process.kill()
    client.process.wait()
    source = addon.scene.gather.gather_object(scan, blender.context.evaluated_depsgraph_get())
    job = addon.scene.reconstruct.reconstruct_job(source, blender.context.scene.occnet)
    _run_ui_job(addon, job, lambda: not addon.worker.jobs.JOBS.queue)
    assert "scan.occnet" in bpy.data.objects
    assert addon.worker.lifecycle.BACKEND.client is not client and addon.worker.lifecycle.BACKEND.client.alive


def test_models_from_the_extra_folder_are_listed_and_used(blender, addon, tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "my-models"
    folder.mkdir()
    shutil.copy(tiny_model, folder / "my-ellipsoids.safetensors")
    prefs = addon.ui.preferences.preferences()
    prefs.models_dir = str(folder)
    try:
        addon.worker.lifecycle.BACKEND.require()
        items = {item[0]: item[1] for item in addon.worker.lifecycle.BACKEND.model_items()}
        assert items["my-ellipsoids"] == "my-ellipsoids (pointcloud)"
        blender.context.scene.occnet.model = "my-ellipsoids"
        scan = vertex_cloud("scan", scan_of(held_out(*MUG)))
        select(scan)
        assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
        assert bpy.data.objects["scan.occnet"].occnet.model == "my-ellipsoids"
    finally:
        blender.context.scene.occnet.model = "auto"
        prefs.models_dir = ""


def test_installer_runs_its_steps_and_names_the_one_that_failed(blender, addon, tmp_path):
    installer = addon.worker.installer
    env = tmp_path / "env"
    steps = installer.install_steps(env, "cpu")
    assert steps[1][1][-2:] == ["--index-url", "https://download.pytorch.org/whl/cpu"]
    assert steps[2][1][-1].endswith("backend/requirements.txt") and installer.REQUIREMENTS.is_file()
    offline = [sys.executable, "-c", "import sys; sys.exit('ERROR: Could not find a version that satisfies torch')"]
    run = installer.Installation()
    run.run([("Creating the environment", [*steps[0][1], "--without-pip"]), ("Installing PyTorch", offline)])
    assert addon.worker.lifecycle.env_python(env).exists()
    assert run.message == "Install failed at 'Installing PyTorch': ERROR: Could not find a version that satisfies torch"
    assert not run.running


def test_point_cloud_object(blender):
    shape = held_out(*SOFA)
    obj = vertex_cloud("cloud", scan_of(shape))
    obj.location = (0.0, 0.0, 2.0)
    select(obj)
    assert bpy.ops.object.convert(target="POINTCLOUD") == {"FINISHED"}
    cloud = bpy.data.objects["cloud"]
    assert cloud.type == "POINTCLOUD"
    select(cloud)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    score = world_iou(bpy.data.objects["cloud.occnet"], shape, np.array(cloud.matrix_world))
    assert score > POINTCLOUD_IOU, score
