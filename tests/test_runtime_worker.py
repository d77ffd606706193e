"""The built-in CPU runtime's worker (python -m backend.worker --engine runtime), as a real process with torch,
SciPy and scikit-image impossible to import (as in stock Blender; Pillow and trimesh are bundled), driven by the
add-on's real client: it speaks the PyTorch worker's protocol and gives its meshes, and the two engines' latents
are interchangeable."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fitting import ellipsoid_surface

from backend.metrics import solid_iou
from backend.protocol import (
    PROTOCOL_VERSION,
    EncodeRequest,
    ExtractRequest,
    InterpolateRequest,
    MeshReply,
    ModelsRequest,
    Progress,
    ReconstructRequest,
)
from backend.surface.options import ExtractOptions
from occnet_blender.worker.client import BackendClient, BackendError

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ellipsoid_surface(np.array([0.5, 0.4, 0.3]), 2000, np.random.default_rng(0)).astype(np.float32) + 5.0
# Not in stock Blender, nor bundled: the PyTorch stack, and onnxruntime's declared dependencies
BLOCKED = ("torch", "scipy", "skimage", "safetensors", "onnx", "google", "flatbuffers", "packaging")
BLOCKER = f"""import sys


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} cannot be imported here: the built-in runtime must not need it")
        return None


sys.meta_path.insert(0, Blocker())
"""


def _start(engine: str, extra_env: dict[str, str]) -> BackendClient:
    env = {"OMP_NUM_THREADS": "1", **extra_env}
    client = BackendClient(sys.executable, ROOT, device="cpu", extra_env=env, engine=engine)
    client.start()
    return client


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """The runtime worker; a sitecustomize on its path makes the blocked modules raise ImportError."""
    folder = tmp_path_factory.mktemp("blocked")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True
    )
    assert b"cannot be imported here" in probe.stderr  # the block holds in a process started so
    client = _start("runtime", {"PYTHONPATH": str(folder)})
    yield client
    client.close()


@pytest.fixture(scope="module")
def torch_worker():
    client = _start("torch", {})
    yield client
    client.close()


def _same_solid(a: MeshReply, b: MeshReply) -> float:
    return solid_iou((a.vertices, a.faces), (b.vertices, b.faces))


def _timed(client: BackendClient, request, stages: list | None = None):
    start = time.perf_counter()
    job = client.submit(request, waited=True)
    reply = client.wait(job, timeout=600, on_progress=(lambda s, f: stages.append(s)) if stages is not None else None)
    return reply, time.perf_counter() - start


def test_hello_names_the_engine_and_models_lists_those_with_graphs(runtime):
    hello = runtime.hello
    assert (hello.protocol, hello.engine, hello.torch, hello.device) == (PROTOCOL_VERSION, "runtime", None, "cpu")
    names = {m.name for m in runtime.run(ModelsRequest()).models}
    assert {"attention-pointcloud", "triplane-pointcloud", "onet-pointcloud", "onet-image"} <= names


@pytest.mark.parametrize("model", ["attention-pointcloud", "triplane-pointcloud", "onet-pointcloud"])
def test_point_clouds_give_the_torch_workers_mesh_and_latent(runtime, torch_worker, model):
    request = ReconstructRequest(model=model, points=CLOUD, options=ExtractOptions(resolution=128))
    stages = []
    ours, ours_s = _timed(runtime, request, stages)
    theirs, theirs_s = _timed(torch_worker, request)
    print(f"\n{model} at 128: runtime worker {ours_s:.2f} s, torch worker {theirs_s:.2f} s")
    assert {"encode", "evaluate", "mesh", "normals"} <= set(stages)
    assert ours.vertices.dtype == np.float64 and ours.faces.dtype == np.int32
    assert ours.normals.shape == ours.vertices.shape
    assert ours.latent.latent_model == theirs.latent.latent_model == model
    np.testing.assert_allclose(ours.latent.center, theirs.latent.center, rtol=0, atol=1e-9)
    assert ours.latent.scale == pytest.approx(theirs.latent.scale, rel=1e-12)
    assert ours.code.shape == theirs.code.shape
    np.testing.assert_allclose(ours.code, theirs.code, atol=1e-4 * max(1.0, float(np.abs(theirs.code).max())))
    same = _same_solid(ours, theirs)
    print(f"{model} at 128: IoU {same:.4f}, {len(ours.faces)} and {len(theirs.faces)} faces")
    assert same >= 0.99

    # Latents are interchangeable: each engine extracts the other's (as float16, how the add-on stores them).
    options = {"model": model, "options": ExtractOptions(resolution=64, normals=False)}
    from_torch = runtime.run(ExtractRequest(**options, latent=theirs.latent, code=theirs.code.astype(np.float16)))
    from_runtime = torch_worker.run(ExtractRequest(**options, latent=ours.latent, code=ours.code.astype(np.float16)))
    assert _same_solid(from_torch, from_runtime) >= 0.99


def test_the_image_model_reads_a_pixels_array_and_gives_the_torch_workers_mesh(runtime, torch_worker):
    yy, xx = np.mgrid[:96, :128]
    disc = ((yy - 48) ** 2 + (xx - 60) ** 2 < 900).astype(np.uint8)
    pixels = np.dstack([np.full((96, 128, 3), 180, np.uint8), 255 * disc])
    request = ReconstructRequest(model="onet-image", pixels=pixels, options=ExtractOptions(resolution=128))
    ours, theirs = runtime.run(request, timeout=300), torch_worker.run(request, timeout=300)
    assert ours.code.shape == theirs.code.shape and len(ours.faces) > 100
    assert _same_solid(ours, theirs) >= 0.99
    encoded = runtime.run(EncodeRequest(model="auto", pixels=pixels))  # "auto": the default image model
    assert encoded.latent.latent_model == "views-image" and encoded.latent.blends_by_field
    request = ReconstructRequest(model="auto", pixels=pixels, options=ExtractOptions(resolution=128))
    ours, theirs = runtime.run(request, timeout=300), torch_worker.run(request, timeout=300)
    assert _same_solid(ours, theirs) >= 0.99
    np.testing.assert_allclose(encoded.code, ours.code, atol=1e-4 * max(1.0, float(np.abs(ours.code).max())))


def test_files_are_read_as_the_torch_worker_reads_them(runtime, torch_worker, tmp_path):
    """A scan file, a picture, and a damaged file: the same meshes, the same one-line error."""
    yy, xx = np.mgrid[:96, :128]
    disc = ((yy - 48) ** 2 + (xx - 60) ** 2 < 900).astype(np.uint8)
    picture = tmp_path / "disc.png"
    picture.write_bytes(_png(np.dstack([np.full((96, 128, 3), 180, np.uint8), 255 * disc])))
    for path in (ROOT / "tests/data/dog_carpal_bone.stl", picture):
        request = ReconstructRequest(
            model="auto", input_path=str(path), options=ExtractOptions(resolution=64, normals=False)
        )
        ours, theirs = runtime.run(request, timeout=300), torch_worker.run(request, timeout=300)
        assert ours.latent.latent_model == theirs.latent.latent_model
        assert _same_solid(ours, theirs) >= 0.99
    damaged = tmp_path / "cut.ply"
    damaged.write_bytes((ROOT / "tests/data/dog_carpal_bone.stl").read_bytes()[:50])
    request = ReconstructRequest(model="auto", input_path=str(damaged))
    errors = []
    for worker in (runtime, torch_worker):
        with pytest.raises(BackendError) as info:
            worker.run(request)
        errors.append((info.value.kind, str(info.value)))
    assert errors[0] == errors[1] and errors[0][0] == "input" and "not a PLY file" in errors[0][1]  # an STL's bytes


def _png(pixels: np.ndarray) -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_cancel_mid_job_then_keep_working(runtime):
    job = runtime.submit(
        ReconstructRequest(model="triplane-pointcloud", points=CLOUD, options=ExtractOptions(resolution=512))
    )
    deadline = time.monotonic() + 120
    while not any(
        isinstance(e.reply, Progress) and e.reply.stage == "evaluate" for e in runtime.events() if e.job == job
    ):
        assert time.monotonic() < deadline, "no 'evaluate' progress"
        time.sleep(0.01)
    runtime.cancel(job)
    with pytest.raises(BackendError) as info:
        runtime.wait(job, timeout=60)
    assert info.value.kind == "cancelled"
    assert runtime.run(
        ReconstructRequest(model="onet-pointcloud", points=CLOUD, options=ExtractOptions(resolution=32))
    ).faces.size


def test_interpolate_blends_code_and_placement(runtime):
    first = runtime.run(
        ReconstructRequest(model="onet-pointcloud", points=CLOUD, options=ExtractOptions(resolution=32, normals=False))
    )
    moved = type(first.latent)(first.latent.latent_model, (0.0, 0.0, 0.0), first.latent.scale)
    ends = {"a": first.latent, "b": moved, "code_a": first.code, "code_b": first.code.astype(np.float16)}
    for method in ("linear", "spherical"):
        blend = runtime.run(
            InterpolateRequest(
                model="onet-pointcloud",
                t=0.5,
                method=method,
                **ends,
                options=ExtractOptions(resolution=32, normals=False),
            )
        )
        np.testing.assert_allclose(blend.vertices.mean(0), first.vertices.mean(0) / 2, atol=0.05)


def test_what_only_pytorch_does_is_refused_with_the_way_to_get_it(runtime):
    for extra in ({"faces": 1000}, {"refine_steps": 2}):
        with pytest.raises(BackendError, match="PyTorch backend") as info:
            runtime.run(ReconstructRequest(model="onet-pointcloud", points=CLOUD, options=ExtractOptions(**extra)))
        assert info.value.kind == "input"
    foreign = runtime.run(EncodeRequest(model="onet-pointcloud", points=CLOUD))
    with pytest.raises(BackendError, match="made by model 'onet-pointcloud'") as info:
        runtime.run(ExtractRequest(model="triplane-pointcloud", latent=foreign.latent, code=foreign.code))
    assert info.value.kind == "input"


def test_malformed_frames_get_protocol_errors_and_the_worker_survives(runtime):
    header = b"{this is not json"
    runtime.process.stdin.write(struct.pack(">I", len(header)) + header)
    runtime.process.stdin.flush()
    with pytest.raises(BackendError, match="No model named") as info:
        runtime.run(ReconstructRequest(model="no-such-model", points=CLOUD))
    assert info.value.kind == "model"
    stray = [e.reply for e in runtime.events() if e.job is None]
    assert [(r.kind, "not JSON" in r.message) for r in stray] == [("protocol", True)]
    assert runtime.alive and runtime.restarts == 0


def test_a_coloured_cloud_gives_the_same_coloured_mesh_on_both_engines(runtime, torch_worker):
    """Each vertex takes the colour of the input near it (left half red, right half blue), on numpy alone."""
    colors = np.where(CLOUD[:, :1] < 5.0, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]).astype(np.float32)
    request = ReconstructRequest(
        model="onet-pointcloud", points=CLOUD, point_colors=colors, options=ExtractOptions(resolution=64)
    )
    ours, theirs = runtime.run(request), torch_worker.run(request)
    assert ours.colors.shape == ours.vertices.shape and ours.colors.dtype == np.float32
    left, right = ours.vertices[:, 0] < 4.8, ours.vertices[:, 0] > 5.2
    np.testing.assert_allclose(ours.colors[left], np.broadcast_to([1.0, 0.0, 0.0], (left.sum(), 3)), atol=0.02)
    np.testing.assert_allclose(ours.colors[right], np.broadcast_to([0.0, 0.0, 1.0], (right.sum(), 3)), atol=0.02)
    assert len(ours.vertices) == len(theirs.vertices)
    np.testing.assert_allclose(ours.colors, theirs.colors, atol=1e-3)
    assert (
        runtime.run(
            ReconstructRequest(model="onet-pointcloud", points=CLOUD, options=ExtractOptions(resolution=32))
        ).colors
        is None
    )
