"""The add-on's client and the backend worker, as real processes talking the real protocol."""

import io
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fitting import ellipsoid_surface
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    ErrorReply,
    ExtractRequest,
    HelloRequest,
    InterpolateRequest,
    Message,
    ModelsRequest,
    Progress,
    ProtocolError,
    ReconstructRequest,
    decode_request,
    encode,
    read_message,
    write_message,
)
from backend.surface.options import ExtractOptions
from occnet_blender.worker.client import BackendClient, BackendError

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ellipsoid_surface(np.array([0.5, 0.4, 0.3]), 2000, np.random.default_rng(0)).astype(np.float32) + 5.0


@pytest.fixture
def client(tiny_model):
    client = BackendClient(sys.executable, ROOT, device="cpu", extra_env={"OCCNET_MODELS_PATH": str(tiny_model.parent)})
    client.start()
    yield client
    client.close()


def _reconstruct(client, tiny_model, resolution=64, **settings):
    options = ExtractOptions(resolution=resolution, **settings)
    return client.submit(ReconstructRequest(model=tiny_model.stem, points=CLOUD, options=options))


def _wait_for_stage(client, job, stage, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.events():
            if event.job == job and isinstance(event.reply, Progress) and event.reply.stage == stage:
                return
            assert isinstance(event.reply, Progress), event
        time.sleep(0.01)
    raise AssertionError(f"no '{stage}' progress within {timeout} s")


def test_hello_and_model_listing(client, tiny_model):
    assert client.hello.protocol == PROTOCOL_VERSION and client.hello.device == "cpu"
    models = client.run(ModelsRequest()).models
    assert tiny_model.stem in [m.name for m in models]


def test_reconstruct_streams_progress_and_returns_raw_arrays(client, tiny_model):
    stages = []
    reply = client.wait(_reconstruct(client, tiny_model), on_progress=lambda s, f: stages.append(s))
    assert {"encode", "evaluate", "mesh", "normals"} <= set(stages)
    vertices, faces = reply.vertices, reply.faces
    assert vertices.dtype == np.float64 and faces.dtype == np.int32 and len(faces) > 100
    assert np.allclose(vertices.mean(axis=0), 5.0, atol=0.05)  # the source's frame
    assert reply.code.shape == (32,) and reply.stats["points_evaluated"] > 0

    # The model stays loaded: the latent comes back, and extracting it again matches.
    again = client.run(
        ExtractRequest(
            model=tiny_model.stem, latent=reply.latent, code=reply.code, options=ExtractOptions(resolution=64)
        )
    )
    np.testing.assert_allclose(again.vertices, vertices, atol=1e-5)
    other_end = type(reply.latent)(reply.latent.latent_model, (0.0, 0.0, 0.0), reply.latent.scale)
    blend = client.run(
        InterpolateRequest(
            model=tiny_model.stem,
            t=0.5,
            a=reply.latent,
            b=other_end,
            code_a=reply.code,
            code_b=reply.code,
            options=ExtractOptions(resolution=32),
        )
    )
    assert np.allclose(blend.vertices.mean(axis=0), 2.5, atol=0.05)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_triplane_model"])
def test_latents_come_back_as_float16_in_their_shape_or_flat(request, fixture):
    """The add-on stores latents as float16 and sends them back so: a global code or three feature planes."""
    from backend.metrics import iou, mesh_contains

    path = request.getfixturevalue(fixture)
    client = BackendClient(sys.executable, ROOT, device="cpu", extra_env={"OCCNET_MODELS_PATH": str(path.parent)})
    client.start()
    try:
        entry = next(m for m in client.run(ModelsRequest()).models if m.name == path.stem)
        first = client.wait(_reconstruct(client, path, resolution=32, normals=False))
        code = first.code
        assert code.dtype == np.float32 and code.shape == entry.latent_shape
        half, options = (
            code.astype(np.float16),
            {"model": path.stem, "options": ExtractOptions(resolution=32, normals=False)},
        )
        replies = [client.run(ExtractRequest(**options, latent=first.latent, code=c)) for c in (half, half.ravel())]
        ends = {"a": first.latent, "b": first.latent, "code_a": half, "code_b": code}
        replies.append(client.run(InterpolateRequest(**options, **ends, t=0.5)))
        points = np.random.default_rng(0).uniform(CLOUD.min(0) - 0.1, CLOUD.max(0) + 0.1, (20_000, 3))
        inside = mesh_contains(first.vertices, first.faces, points)
        for reply in replies:
            assert iou(mesh_contains(reply.vertices, reply.faces, points), inside) >= 0.95
    finally:
        client.close()


def test_far_coordinates_keep_their_precision_and_latents_their_model(client, tiny_model):
    """A georeferenced scan (y = 5.4e6) comes back as exactly as one at the origin; a latent is decoded only
    by the model that made it."""
    offset = np.array([512_000.25, 5_400_000.5, 312.75])
    near = client.run(
        ReconstructRequest(
            model=tiny_model.stem, points=CLOUD - 5.0, options=ExtractOptions(resolution=32, normals=False)
        )
    )
    far = client.run(
        ReconstructRequest(
            model=tiny_model.stem, points=CLOUD - 5.0 + offset, options=ExtractOptions(resolution=32, normals=False)
        )
    )
    assert far.vertices.dtype == np.float64
    np.testing.assert_allclose(far.vertices - offset, near.vertices, atol=1e-5)
    foreign = type(far.latent)("onet-image", far.latent.center, far.latent.scale)
    with pytest.raises(BackendError, match="made by model 'onet-image'") as info:
        client.run(
            ExtractRequest(model=tiny_model.stem, latent=foreign, code=far.code, options=ExtractOptions(resolution=32))
        )
    assert info.value.kind == "input"
    for center, scale, text in [
        (far.latent.center, 0.0, "scale must be a finite number above 0"),
        (far.latent.center, -2.0, "scale must be a finite number above 0"),
        (far.latent.center, float("inf"), "scale must be a finite number above 0"),
        ((float("nan"), 0.0, 0.0), 1.0, "centre must be three finite numbers"),
    ]:
        frame = type(far.latent)(tiny_model.stem, center, scale)
        with pytest.raises(BackendError, match=text) as info:
            client.run(
                ExtractRequest(
                    model=tiny_model.stem, latent=frame, code=far.code, options=ExtractOptions(resolution=32)
                )
            )
        assert info.value.kind == "input"


def test_the_face_budget_and_refinement_work_on_pytorch(client, tiny_model):
    """What only the PyTorch engine does (the built-in runtime refuses both) stays available here."""
    full = client.run(
        ReconstructRequest(model=tiny_model.stem, points=CLOUD, options=ExtractOptions(resolution=64, normals=False))
    )
    budget = client.run(
        ReconstructRequest(model=tiny_model.stem, points=CLOUD, options=ExtractOptions(resolution=64, faces=500))
    )
    plain, refined = (
        client.run(
            ReconstructRequest(
                model=tiny_model.stem, points=CLOUD, options=ExtractOptions(resolution=32, refine_steps=steps)
            )
        )
        for steps in (0, 3)
    )
    assert len(budget.faces) <= 500 < len(full.faces)
    np.testing.assert_array_equal(refined.faces, plain.faces)  # refinement moves the vertices, no more
    assert np.abs(refined.vertices - plain.vertices).max() > 1e-6  # both runs are otherwise identical


def test_cancel_mid_job_then_keep_working(client, tiny_model):
    job = _reconstruct(client, tiny_model, resolution=512)
    _wait_for_stage(client, job, "evaluate")
    client.cancel(job)
    with pytest.raises(BackendError) as info:
        client.wait(job, timeout=60)
    assert info.value.kind == "cancelled"
    assert client.wait(_reconstruct(client, tiny_model, resolution=32)).faces.size


def test_malformed_requests_get_error_replies_and_the_worker_survives(client, tiny_model):
    header = b"{this is not json"
    client.process.stdin.write(struct.pack(">I", len(header)) + header)
    client.process.stdin.flush()
    bad_input = client.submit(ReconstructRequest(model=tiny_model.stem, points=np.full((5, 3), np.nan)))
    missing_model = client.submit(ReconstructRequest(model="no-such-model", points=CLOUD))
    for job, kind, text in [
        (bad_input, "input", "no usable points"),
        (missing_model, "model", "No model named"),
    ]:
        with pytest.raises(BackendError, match=text) as info:
            client.wait(job, timeout=60)
        assert info.value.kind == kind
    assert client.alive
    assert client.wait(_reconstruct(client, tiny_model, resolution=32)).faces.size


def test_a_crashed_worker_fails_its_job_and_is_restarted(client, tiny_model):
    job = _reconstruct(client, tiny_model, resolution=512)
    _wait_for_stage(client, job, "evaluate")
    client.process.send_signal(signal.SIGKILL)
    with pytest.raises(BackendError, match="stopped unexpectedly") as info:
        client.wait(job, timeout=60)
    assert info.value.kind == "crashed"
    reply = client.wait(_reconstruct(client, tiny_model, resolution=32), timeout=120)
    assert reply.faces.size and client.restarts == 1


def test_worker_exits_when_its_parent_dies(tiny_model):
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from occnet_blender.worker.client import BackendClient\n"
                f"c = BackendClient(sys.executable, {str(ROOT)!r}, device='cpu')\n"
                "print(c.start().pid, flush=True)\n"
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


# --- the worker alone, fed raw frames --------------------------------------------------------------------


def _spawn_worker(extra_env=None, tmp_path=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "backend.worker", "--device", "cpu"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )


def _frame(header, payload=b""):
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack(">I", len(data)) + data + payload


def _replies(process, count, timeout=60):
    """The next `count` replies, read on a thread so that a deaf worker fails the test instead of hanging it."""
    box = []

    def read():
        for _ in range(count):
            box.append(read_message(process.stdout))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert not reader.is_alive(), f"the worker answered {len(box)} of {count} frames: {box}"
    return box


def test_every_malformed_frame_gets_a_protocol_error_and_the_worker_reads_on():
    v = PROTOCOL_VERSION
    points = [["points", "<f4", [1000, 3]]]
    payload = np.ones((1000, 3), np.float32).tobytes()
    frames = [
        (_frame(b"[1, 2]"), None),  # JSON, not an object
        (_frame(b'"hello"'), None),
        (_frame(b"3"), None),
        (_frame({"v": v, "type": "hello", "id": "7"}), None),  # id not an integer
        (_frame({"v": v, "type": "hello", "id": [7]}), None),
        (_frame({"v": v, "type": "cancel", "id": 8, "target": "x"}), 8),  # target not an integer
        (_frame({"v": v, "type": "cancel", "id": 9, "target": [1]}), 9),
        (_frame({"v": v, "type": "extract", "id": 14, "model": 3}), 14),  # a field of the wrong type
        (_frame({"v": v, "type": "explode", "id": 15}), 15),
        (_frame({"v": v + 1, "type": "hello", "id": 16}), 16),
        # refused, with arrays behind the header: their bytes are passed over, not read as frames
        (_frame({"v": v + 1, "type": "reconstruct", "id": 18, "model": "m", "arrays": points}, payload), 18),
        (_frame({"v": v, "type": "hello", "id": "19", "arrays": points}, payload), None),
        (_frame({"v": v, "type": "explode", "id": 20, "arrays": points}, payload), 20),
        (_frame({"v": v, "type": "reconstruct", "id": 21, "model": 5, "arrays": points}, payload), 21),
    ]
    worker = _spawn_worker()
    try:
        worker.stdin.write(b"".join(frame for frame, _ in frames) + _frame({"v": v, "type": "hello", "id": 17}))
        worker.stdin.flush()
        replies = _replies(worker, len(frames) + 1)
        for reply, (_, expected_id) in zip(replies, frames, strict=False):
            assert (reply.type, reply.fields["kind"], reply.id) == ("error", "protocol", expected_id), reply
            assert "it was ignored" in reply.fields["message"]
        assert (replies[-1].type, replies[-1].id) == ("hello", 17)
        assert worker.poll() is None
        worker.stdin.close()  # the end of stdin ends the worker, whatever came before
        assert worker.wait(timeout=20) == 0
    finally:
        worker.kill()
        worker.wait()


def _decoded(fields, arrays=None, msg_type="reconstruct"):
    return decode_request(Message(msg_type, 5, fields, arrays or {}))


POINTS = {"points": np.ones((10, 3), np.float32)}


@pytest.mark.parametrize(
    "fields, arrays, words",
    [
        ({"model": "m", "resoluton": 512}, POINTS, "no field 'resoluton'"),  # misspelt: never the default instead
        ({"model": "m", "options": {"resoluton": 512}}, POINTS, "no field 'resoluton'"),
        ({"model": "m", "input_path": "a.ply"}, POINTS, "exactly one input"),
        ({"model": "m"}, {**POINTS, "pixels": np.ones((8, 8, 3), np.float32)}, "exactly one input"),
        ({"model": "m"}, {}, "exactly one input"),
        ({"model": "m"}, {"pixels": np.ones((8, 8, 3)), "point_normals": np.ones((10, 3))}, "only with 'points'"),
        ({"model": "m", "options": {"resolution": 100}}, POINTS, "Resolution 100 is not supported"),
        ({"model": "m", "options": {"threshold": 1.5}}, POINTS, "strictly between 0 and 1"),
        ({"model": "m", "options": {"normals": "yes"}}, POINTS, "must be bool"),
    ],
)
def test_requests_are_held_to_their_types(fields, arrays, words):
    with pytest.raises(ProtocolError, match=words) as info:
        _decoded(fields, arrays)
    assert info.value.id == 5


def test_choices_are_checked_both_ways():
    ends = {"a": {"latent_model": "m"}, "b": {"latent_model": "m"}, "t": 0.5, "model": "m"}
    codes = {"code_a": np.zeros(4, np.float32), "code_b": np.zeros(4, np.float32)}
    with pytest.raises(ProtocolError, match="'interpolate.method' is 'cubic'"):
        _decoded({**ends, "method": "cubic"}, codes, "interpolate")
    assert _decoded({**ends, "method": "spherical"}, codes, "interpolate").method == "spherical"
    with pytest.raises(ProtocolError, match="not one of"):
        encode(ErrorReply("bogus", "a kind the add-on cannot show"), 1)


def test_extraction_options_travel_nested_and_whole():
    request = ReconstructRequest(
        model="m", options=ExtractOptions(resolution=256, threshold=0.3, min_piece=0.0), **POINTS
    )
    sent = encode(request, 3)
    assert sent.fields["options"]["resolution"] == 256 and "resolution" not in sent.fields
    assert decode_request(sent).options == request.options


@pytest.mark.parametrize(
    "frame",
    [
        _frame({"v": PROTOCOL_VERSION, "type": "reconstruct", "id": 10, "arrays": [["p", "<f4", [1 << 40, 3]]]}),
        _frame({"v": PROTOCOL_VERSION, "type": "reconstruct", "id": 11, "arrays": [["p", "|O", [1]]]}, b"\0" * 64),
        _frame({"v": PROTOCOL_VERSION, "type": "reconstruct", "id": 12, "arrays": [["p", "<f4", [-1, 3]]]}, b"1234"),
        _frame({"v": PROTOCOL_VERSION, "type": "reconstruct", "id": 13, "arrays": "points"}, b"\0" * 64),
        struct.pack(">I", 1 << 30) + b"{}",
    ],
    ids=["oversized-array", "unknown-dtype", "negative-dimension", "arrays-not-a-list", "oversized-header"],
)
def test_a_frame_of_unknown_length_ends_the_worker_instead_of_reading_its_bytes_as_frames(frame):
    """Its bytes cannot be passed over; answering every fragment as a frame would leave the worker deaf."""
    worker = _spawn_worker()
    try:
        worker.stdin.write(frame + _frame({"v": PROTOCOL_VERSION, "type": "hello", "id": 17}))
        worker.stdin.flush()
        reply = _replies(worker, 1)[0]
        assert (reply.type, reply.fields["kind"]) == ("error", "protocol") and "the worker stops" in str(reply.fields)
        assert worker.wait(timeout=30) == 0  # the add-on's client starts a new one
    finally:
        worker.kill()
        worker.wait()


DTYPES = ["<f4", "<f8", "|u1", "<i8", "|b1", "<f2"]
ARRAY_SPEC = st.one_of(
    st.tuples(st.text(max_size=4), st.sampled_from(DTYPES), st.lists(st.integers(0, 12), max_size=3)).map(list),
    st.lists(st.one_of(st.integers(-5, 1 << 45), st.text(max_size=4), st.none()), max_size=4),  # anything else
)
HEADER = st.fixed_dictionaries(
    {
        "v": st.sampled_from([PROTOCOL_VERSION, PROTOCOL_VERSION + 1, str(PROTOCOL_VERSION), None]),
        "type": st.sampled_from(["hello", "reconstruct", "extract", "cancel", "explode", 3]),
        "id": st.one_of(st.integers(-3, 1 << 40), st.text(max_size=3), st.none()),
        "arrays": st.one_of(st.lists(ARRAY_SPEC, max_size=3), st.text(max_size=5)),
    },
    optional={"model": st.one_of(st.text(max_size=5), st.integers()), "target": st.integers(-2, 5)},
)


def _declared_bytes(header: dict) -> int | None:
    """What a header's arrays hold, when every spec is a plain one (else None: the frame's length is unknown)."""
    specs = header.get("arrays", [])
    if not isinstance(specs, list) or not all(isinstance(a, list) and len(a) == 3 and a[1] in DTYPES for a in specs):
        return None
    return sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for _, dtype, shape in specs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.one_of(HEADER, st.binary(max_size=40)), junk=st.binary(max_size=64))
def test_after_any_frame_the_reader_answers_hello_or_stops(header, junk):
    """The worker's reader (read_message, then decode_request) fed one random frame, its declared bytes (random
    bytes where they cannot be known), then a hello: it reads the hello, or it says it lost step and stops; it
    never reads on out of step."""
    declared = _declared_bytes(header) if isinstance(header, dict) else 0
    payload = junk if declared is None else os.urandom(declared)
    stream = io.BytesIO(_frame(header, payload) + _frame({"v": PROTOCOL_VERSION, "type": "hello", "id": 99}))
    for _ in range(4):
        try:
            message = read_message(stream)
            assert message is not None, "the hello was swallowed"
            request = decode_request(message)
        except ProtocolError as error:
            if not error.in_step:
                return  # the worker stops; the add-on starts a new one
            continue
        if (message.id, type(request)) == (99, HelloRequest):
            return
    pytest.fail("the hello was not read")


def test_stdin_eof_ends_the_worker_inside_a_frame():
    worker = _spawn_worker()
    try:
        worker.stdin.write(_frame({"v": PROTOCOL_VERSION, "type": "hello", "id": 1}))
        worker.stdin.flush()
        assert _replies(worker, 1)[0].type == "hello"
        worker.stdin.write(struct.pack(">I", 100) + b'{"v": ')  # a frame cut short
        worker.stdin.close()
        assert worker.wait(timeout=20) == 0
    finally:
        worker.kill()
        worker.wait()


def test_nothing_printed_while_torch_imports_reaches_the_protocol_stream(tmp_path):
    """A library that prints at import (here: a hook on `import torch`) must not corrupt the first frame."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Noisy(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch':\n"
        "            print('noise from an import', flush=True)\n"
        "            sys.meta_path.remove(self)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Noisy())\n"
    )
    worker = _spawn_worker({"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    try:
        worker.stdin.write(_frame({"v": PROTOCOL_VERSION, "type": "hello", "id": 1}))
        worker.stdin.flush()
        (reply,) = _replies(worker, 1)
        assert (reply.type, reply.id) == ("hello", 1)
        worker.stdin.close()
        assert b"noise from an import" in worker.stderr.read()
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.parametrize("new_torch", [True, False], ids=["torch>=2.5", "torch<2.5"])
def test_out_of_memory_maps_to_oom_on_every_supported_pytorch(monkeypatch, new_torch):
    """torch.OutOfMemoryError is PyTorch 2.5+; before it, only torch.cuda.OutOfMemoryError exists."""
    import torch

    from backend.serve import Server

    if not new_torch:
        monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    server = Server(io.BytesIO(), "torch")
    assert server.error_reply(torch.cuda.OutOfMemoryError("CUDA out of memory")).kind == "oom"


def test_a_bug_is_internal_with_its_traceback_in_the_log_it_names(tmp_path):
    """Not the user's fault, so not "protocol" or "input": a KeyError deep in a handler is a bug to report."""
    from backend.serve import Server

    log = tmp_path / "worker.log"
    try:
        {}["resolution"]
    except KeyError as exc:
        reply = Server(io.BytesIO(), "runtime", log_path=log).error_reply(exc)
    assert reply.kind == "internal" and "KeyError" in reply.message and str(log) in reply.message
    assert "Traceback" in log.read_text() and "test_a_bug_is_internal" in log.read_text()


def test_a_worker_that_breaks_the_protocol_fails_its_jobs_at_once(tmp_path):
    """Bytes on stdout that are not a frame (here: a banner printed at interpreter start) end that worker and
    fail its jobs with kind "protocol", instead of leaving the client waiting on a worker it stopped reading."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.stdout.write('a banner on stdout\\n')\n")
    client = BackendClient(sys.executable, ROOT, device="cpu", extra_env={"PYTHONPATH": str(tmp_path)})
    started = time.monotonic()
    with pytest.raises(BackendError, match="broke the protocol") as info:
        client.start(timeout=30)
    assert info.value.kind == "protocol" and time.monotonic() - started < 25
    client.process.wait(timeout=10)  # ended, not left running deaf
    client.close()


def test_the_worker_reads_requests_while_its_replies_wait_to_be_read(tiny_model):
    """The add-on may be slow to read a big reply; meanwhile a cancel and the next (large) request must still go
    in, or both ends wait on each other: no lock that a blocked write holds may stand in the reader's way."""
    worker = _spawn_worker({"OCCNET_MODELS_PATH": str(tiny_model.parent)})
    try:
        write_message(
            worker.stdin,
            encode(ReconstructRequest(model=tiny_model.stem, points=CLOUD, options=ExtractOptions(resolution=128)), 1),
        )
        worker.stdin.flush()
        _wait_until_idle(worker.pid)  # the mesh (more than a pipe holds) is half written: nobody reads stdout
        points = np.zeros((300_000, 3), np.float32)  # 3.6 MB: more than the pipe holds too

        def send():
            write_message(worker.stdin, encode(CancelRequest(2), None))
            write_message(worker.stdin, encode(ReconstructRequest(model=tiny_model.stem, points=points), 3))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        sender.join(30)
        assert not sender.is_alive(), "the worker stopped reading requests while a reply waited to be read"
    finally:
        worker.kill()
        worker.wait()


def _wait_until_idle(pid, timeout=180):
    """Until the process has used no CPU for two seconds (it is blocked)."""
    deadline, last, still = time.monotonic() + timeout, None, 0
    while time.monotonic() < deadline and still < 4:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        used = int(fields[11]) + int(fields[12])  # utime + stime
        still, last = (still + 1 if used == last else 0), used
        time.sleep(0.5)
    assert still >= 4, "the worker kept computing"
