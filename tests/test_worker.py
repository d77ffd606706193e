"""The add-on's client and the backend worker, as real processes talking the real protocol."""

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fitting import ellipsoid_surface

from occnet_blender.client import BackendClient, BackendError

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ellipsoid_surface(np.array([0.5, 0.4, 0.3]), 2000, np.random.default_rng(0)).astype(np.float32) + 5.0


@pytest.fixture
def client(tiny_model):
    client = BackendClient(sys.executable, ROOT, device="cpu", extra_env={"OCCNET_MODELS_PATH": str(tiny_model.parent)})
    client.start()
    yield client
    client.close()


def _reconstruct(client, tiny_model, resolution=64, **fields):
    return client.submit(
        "reconstruct", {"model": tiny_model.stem, "resolution": resolution, **fields}, {"points": CLOUD}
    )


def _wait_for_stage(client, job, stage, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.events():
            if event.id == job and event.type == "progress" and event.fields["stage"] == stage:
                return
            assert event.type == "progress", event
        time.sleep(0.01)
    raise AssertionError(f"no '{stage}' progress within {timeout} s")


def test_hello_and_model_listing(client, tiny_model):
    assert client.hello["protocol"] == 1 and client.hello["device"] == "cpu"
    models = client.wait(client.submit("models")).fields["models"]
    assert tiny_model.stem in [m["name"] for m in models]


def test_reconstruct_streams_progress_and_returns_raw_arrays(client, tiny_model):
    stages = []
    reply = client.wait(_reconstruct(client, tiny_model), on_progress=lambda s, f: stages.append(s))
    assert {"encode", "evaluate", "mesh", "normals"} <= set(stages)
    vertices, faces = reply.arrays["vertices"], reply.arrays["faces"]
    assert vertices.dtype == np.float64 and faces.dtype == np.int32 and len(faces) > 100
    assert np.allclose(vertices.mean(axis=0), 5.0, atol=0.05)  # the source's frame
    assert reply.arrays["code"].shape == (32,) and reply.fields["stats"]["points_evaluated"] > 0

    # The model stays loaded: the latent comes back, and extracting it again matches.
    again = client.wait(
        client.submit(
            "extract",
            {
                "model": tiny_model.stem,
                "resolution": 64,
                "center": reply.fields["center"],
                "scale": reply.fields["scale"],
            },
            {"code": reply.arrays["code"]},
        )
    )
    np.testing.assert_allclose(again.arrays["vertices"], vertices, atol=1e-5)
    blend = client.wait(
        client.submit(
            "interpolate",
            {
                "model": tiny_model.stem,
                "resolution": 32,
                "t": 0.5,
                "a": reply.fields,
                "b": {**reply.fields, "center": [0.0, 0.0, 0.0]},
            },
            {"code_a": reply.arrays["code"], "code_b": reply.arrays["code"]},
        )
    )
    assert np.allclose(blend.arrays["vertices"].mean(axis=0), 2.5, atol=0.05)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_triplane_model"])
def test_latents_come_back_as_float16_in_their_shape_or_flat(request, fixture):
    """The add-on stores latents as float16 and sends them back so: a global code or three feature planes."""
    from backend.metrics import iou, mesh_contains

    path = request.getfixturevalue(fixture)
    client = BackendClient(sys.executable, ROOT, device="cpu", extra_env={"OCCNET_MODELS_PATH": str(path.parent)})
    client.start()
    try:
        entry = next(m for m in client.wait(client.submit("models")).fields["models"] if m["name"] == path.stem)
        first = client.wait(_reconstruct(client, path, resolution=32, normals=False))
        code = first.arrays["code"]
        assert code.dtype == np.float32 and code.shape == tuple(entry["latent_shape"])
        half, ends = code.astype(np.float16), {"a": first.fields, "b": first.fields}
        extract = {"model": path.stem, "resolution": 32, "normals": False, **first.fields}
        replies = [client.wait(client.submit("extract", extract, {"code": c})) for c in (half, half.ravel())]
        replies.append(
            client.wait(client.submit("interpolate", {**extract, **ends, "t": 0.5}, {"code_a": half, "code_b": code}))
        )
        points = np.random.default_rng(0).uniform(CLOUD.min(0) - 0.1, CLOUD.max(0) + 0.1, (20_000, 3))
        inside = mesh_contains(first.arrays["vertices"], first.arrays["faces"], points)
        for reply in replies:
            assert iou(mesh_contains(reply.arrays["vertices"], reply.arrays["faces"], points), inside) >= 0.95
    finally:
        client.close()


def test_far_coordinates_keep_their_precision_and_latents_their_model(client, tiny_model):
    """A georeferenced scan (y = 5.4e6) comes back as exactly as one at the origin; a latent is decoded only
    by the model that made it."""
    offset = np.array([512_000.25, 5_400_000.5, 312.75])
    fields = {"model": tiny_model.stem, "resolution": 32, "normals": False}
    near = client.wait(client.submit("reconstruct", fields, {"points": CLOUD - 5.0}))
    far = client.wait(client.submit("reconstruct", fields, {"points": CLOUD - 5.0 + offset}))
    assert far.arrays["vertices"].dtype == np.float64
    np.testing.assert_allclose(far.arrays["vertices"] - offset, near.arrays["vertices"], atol=1e-5)
    other = {**fields, **far.fields, "latent_model": "onet-image"}
    with pytest.raises(BackendError, match="made by model 'onet-image'") as info:
        client.wait(client.submit("extract", other, {"code": far.arrays["code"]}))
    assert info.value.kind == "input"


def test_cancel_mid_job_then_keep_working(client, tiny_model):
    job = _reconstruct(client, tiny_model, resolution=512)
    _wait_for_stage(client, job, "evaluate")
    client.cancel(job)
    with pytest.raises(BackendError) as info:
        client.wait(job, timeout=60)
    assert info.value.kind == "cancelled"
    assert client.wait(_reconstruct(client, tiny_model, resolution=32)).arrays["faces"].size


def test_malformed_requests_get_error_replies_and_the_worker_survives(client, tiny_model):
    header = b"{this is not json"
    client.process.stdin.write(struct.pack(">I", len(header)) + header)
    client.process.stdin.flush()
    unknown = client.submit("explode")
    no_model = client.submit("reconstruct", {"resolution": 64}, {"points": CLOUD})
    bad_input = client.submit("reconstruct", {"model": tiny_model.stem}, {"points": np.full((5, 3), np.nan)})
    missing_model = client.submit("reconstruct", {"model": "no-such-model"}, {"points": CLOUD})
    for job, kind, text in [
        (unknown, "protocol", "Unknown request type"),
        (no_model, "protocol", "model"),
        (bad_input, "input", "no usable points"),
        (missing_model, "model", "No model named"),
    ]:
        with pytest.raises(BackendError, match=text) as info:
            client.wait(job, timeout=60)
        assert info.value.kind == kind
    assert client.alive
    assert client.wait(_reconstruct(client, tiny_model, resolution=32)).arrays["faces"].size


def test_a_crashed_worker_fails_its_job_and_is_restarted(client, tiny_model):
    job = _reconstruct(client, tiny_model, resolution=512)
    _wait_for_stage(client, job, "evaluate")
    client.process.send_signal(signal.SIGKILL)
    with pytest.raises(BackendError, match="stopped unexpectedly") as info:
        client.wait(job, timeout=60)
    assert info.value.kind == "crashed"
    reply = client.wait(_reconstruct(client, tiny_model, resolution=32), timeout=120)
    assert reply.arrays["faces"].size and client.restarts == 1


def test_worker_exits_when_its_parent_dies(tiny_model):
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from occnet_blender.client import BackendClient\n"
                f"c = BackendClient(sys.executable, {str(ROOT)!r}, device='cpu')\n"
                "print(c.start()['pid'], flush=True)\n"
                "time.sleep(600)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    worker_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running(worker_pid):
        time.sleep(0.1)
    assert not _running(worker_pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())
