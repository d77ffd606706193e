"""The bundled CPU runtime's model (backend/runtime/model.py): the ONNX graphs of every shipped model give
PyTorch's codes and logits, the export command reproduces the committed graphs, and the runtime runs with
torch, SciPy, scikit-image, PIL and trimesh impossible to import (as in stock Blender)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from backend.api import Latent, load_model
from backend.checkpoint import load_checkpoint, save_checkpoint
from backend.cli import main
from backend.config import ModelConfig
from backend.engines.onnx_runtime import RuntimeEngine
from backend.errors import InputError, ModelLoadError
from backend.export_onnx import MAX_EMBEDDED_BYTES
from backend.inputs import ImageInput, PointCloudInput
from backend.models import build_model
from backend.models.triplane import sample_planes, sample_planes_by_gather
from backend.registry import WEIGHTS_DIR
from backend.runtime.graphs import STAGES, graph_path, stages
from backend.runtime.model import load_runtime_model
from backend.weights_file import read_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("attention-pointcloud", "triplane-pointcloud", "onet-pointcloud", "onet-image", "views-image")
LOGIT_TOLERANCE = 1e-4  # float32 sums in another order; a logit moves the 0.5 surface by far less than a voxel
# Not in stock Blender, or not bundled: the PyTorch stack, and onnxruntime's declared dependencies, none of which
# it imports to run a graph (so the extension zips need only its wheel)
BLOCKED = ("torch", "scipy", "skimage", "PIL", "trimesh", "safetensors", "onnx", "google", "flatbuffers", "packaging")


def _observation(input_kind: str, seed: int) -> np.ndarray:
    """What a user gives: a stretched, offset sphere scan, or an RGBA picture of a disc."""
    rng = np.random.default_rng(seed)
    if input_kind == "pointcloud":
        cloud = rng.normal(size=(4000, 3))
        return cloud / np.linalg.norm(cloud, axis=1, keepdims=True) * [2.0, 1.2, 0.8] + [5.0, -3.0, 1.0]
    yy, xx = np.mgrid[:96, :128]
    disc = ((yy - 48) ** 2 + (xx - 60 - 8 * seed) ** 2 < 900).astype(np.uint8)
    return np.dstack([rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), 255 * disc])


@pytest.fixture(scope="module", params=SHIPPED)
def pair(request):
    torch.set_num_threads(1)
    return load_model(request.param, "cpu"), load_runtime_model(request.param, threads=1)


def _queries(count: int, seed: int) -> np.ndarray:
    """Points across the canonical box and a little beyond it (MISE's grid reaches its faces)."""
    return ((np.random.default_rng(seed).random((count, 3)) - 0.5) * 1.3).astype(np.float32)


def test_codes_match_pytorchs_from_the_same_observation(pair):
    torch_model, runtime = pair
    for seed in (0, 1):
        observation = _observation(torch_model.config.input_kind, seed)
        expected = torch_model.encode(observation).code
        kind = PointCloudInput if torch_model.config.input_kind == "pointcloud" else ImageInput
        code = RuntimeEngine(runtime).encode(kind(observation)).code  # the engine: point attention reads twice
        assert code.dtype == np.float32 and torch_model.config.latent_size_problem(code.size) is None
        np.testing.assert_allclose(code, expected, atol=1e-4 * max(1.0, float(np.abs(expected).max())))


@pytest.mark.parametrize("count", [0, 1, 7, 5000])
def test_logits_match_pytorchs_at_any_point_count(pair, count):
    torch_model, runtime = pair
    latent = torch_model.encode(_observation(torch_model.config.input_kind, 0))
    points = _queries(count, count)
    with torch.no_grad():
        expected = torch_model.field(latent)(torch.from_numpy(points)).numpy()
    logits = runtime.logits(latent.code, points)
    assert logits.dtype == np.float32 and logits.shape == (count,)
    assert np.abs(logits - expected).max(initial=0.0) < LOGIT_TOLERANCE


def test_chunked_evaluation_and_a_float16_flat_code_give_the_same_logits(pair, monkeypatch):
    """MISE sends millions of points; the worker protocol may carry the code as float16 in any shape."""
    torch_model, runtime = pair
    code = torch_model.encode(_observation(torch_model.config.input_kind, 1)).code.astype(np.float16)
    points = _queries(2500, 3)
    whole = runtime.logits(code.astype(np.float32), points)
    monkeypatch.setattr(type(runtime), "chunk", 1000)  # points per decoder run
    np.testing.assert_array_equal(runtime.logits(code.ravel(), points), whole)
    np.testing.assert_array_equal(runtime.field(code)(points), whole)
    with torch.no_grad():
        expected = torch_model.field(Latent(code.astype(np.float32), torch_model.name))(torch.from_numpy(points))
    assert np.abs(whole - expected.numpy()).max() < LOGIT_TOLERANCE


def test_bad_arrays_are_one_line_input_errors():
    runtime = load_runtime_model("onet-pointcloud")
    with pytest.raises(InputError, match="128"):
        runtime.logits(np.zeros(64, np.float32), _queries(4, 0))
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        runtime.logits(np.zeros(128, np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        runtime.encode(np.zeros((0, 3), np.float32))
    with pytest.raises(InputError, match=r"\(3, 64, 64\)"):
        load_runtime_model("onet-image").encode(np.zeros((3, 32, 32), np.float32))


def test_gathered_plane_reads_equal_grid_sample():
    """The decoder graph reads feature planes with gathers; torch keeps grid_sample. Both give the same features,
    for points inside the box, on its faces and beyond it (clamped to the border)."""
    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 8, 16, 16, generator=generator)
    points = (torch.rand(2, 3000, 3, generator=generator) - 0.5) * 1.4
    points[0, :3] = torch.tensor([[0.55, 0.55, 0.55], [-0.55, -0.55, -0.55], [0.0, 0.55, -0.55]])
    torch.testing.assert_close(sample_planes_by_gather(planes, points), sample_planes(planes, points))


def test_each_shipped_model_has_graphs_that_hold_no_weights():
    """The weights ship once, in the .safetensors file both engines read; the graphs are small."""
    for name in SHIPPED:
        checkpoint = WEIGHTS_DIR / f"{name}.safetensors"
        for stage in stages(read_config(checkpoint).architecture):
            graph = graph_path(checkpoint, stage)
            assert graph.is_file(), f"run 'python -m backend export-onnx' to write {graph.name}"
            model = onnx.load(graph, load_external_data=False)
            embedded = [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
            assert sum(len(t.raw_data) for t in embedded) <= MAX_EMBEDDED_BYTES, graph.name
            assert graph.stat().st_size * 10 < checkpoint.stat().st_size


@pytest.mark.parametrize(
    "name",
    [
        "onet-pointcloud",
        pytest.param("onet-image", marks=pytest.mark.slow),
        pytest.param("triplane-pointcloud", marks=pytest.mark.slow),
        pytest.param("attention-pointcloud", marks=pytest.mark.slow),
        pytest.param("views-image", marks=pytest.mark.slow),
    ],
)
def test_the_export_command_reproduces_the_committed_graphs(tmp_path, name, capsys):
    assert main(["export-onnx", name, "--out", str(tmp_path)]) == 0
    assert f"{name}.encoder.onnx" in capsys.readouterr().out
    for stage in stages(read_config(WEIGHTS_DIR / f"{name}.safetensors").architecture):
        committed = graph_path(WEIGHTS_DIR / f"{name}.safetensors", stage)
        exported = tmp_path / committed.name
        assert exported.read_bytes() == committed.read_bytes(), (
            f"{committed.name} is stale: run 'python -m backend export-onnx {name} --overwrite' and commit it"
        )


SMALL_VOXELS = ModelConfig(input_kind="voxels", c_dim=16, decoder_hidden=16, decoder_blocks=1, voxel_resolution=16)


def test_graphs_are_kept_and_refused_for_another_checkpoint(tmp_path, capsys):
    """A model of one's own (here a voxel model) runs once exported: a model with no graphs says how to export
    them; a second export does not replace them without --overwrite; graphs exported from one checkpoint do not
    run on another one's file (its tensors lie elsewhere)."""
    checkpoint = save_checkpoint(build_model(SMALL_VOXELS).eval(), tmp_path / "mine.safetensors")
    with pytest.raises(ModelLoadError, match="export-onnx") as info:
        load_runtime_model(checkpoint)
    assert "\n" not in str(info.value)
    assert main(["export-onnx", str(checkpoint)]) == 0
    graphs = [graph_path(checkpoint, stage) for stage in STAGES]
    before = [g.read_bytes() for g in graphs]
    assert main(["export-onnx", str(checkpoint)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert [g.read_bytes() for g in graphs] == before
    runtime = load_runtime_model(checkpoint)
    grid = (np.random.default_rng(0).random((16, 16, 16)) > 0.7).astype(np.float32)
    points = _queries(100, 0)
    code = runtime.encode(grid)
    network = load_checkpoint(checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(code), network.encode(torch.from_numpy(grid)[None])[0])
        expected = network.decode(torch.from_numpy(points)[None], torch.from_numpy(code)[None])[0].numpy()
    assert np.abs(runtime.logits(code, points) - expected).max() < LOGIT_TOLERANCE
    save_checkpoint(build_model(dataclasses.replace(SMALL_VOXELS, c_dim=8)), checkpoint)
    with pytest.raises(ModelLoadError, match="export-onnx .*--overwrite"):
        load_runtime_model(checkpoint).logits(np.zeros(8, np.float32), points)


_BLOCKED_RUN = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not available here")

sys.meta_path.insert(0, Blocked())
import numpy as np
from backend.inputs import ImageInput, PointCloudInput
from backend.engines.onnx_runtime import load_runtime_engine

data = np.load(sys.argv[1])
out = {{}}
for name in {models!r}:
    engine = load_runtime_engine(name)
    kind = PointCloudInput if engine.config.input_kind == "pointcloud" else ImageInput
    out[name + "/code"] = engine.encode(kind(data[name + "/input"])).code
    out[name + "/logits"] = engine.model.logits(data[name + "/code"], data["points"])
np.savez(sys.argv[2], **out)
"""


def test_the_runtime_runs_where_torch_and_scipy_cannot_be_imported(tmp_path):
    """As in stock Blender: the runtime loads every shipped model, encodes and evaluates, with the PyTorch
    stack impossible to import, and gives PyTorch's results."""
    torch.set_num_threads(1)
    arrays, expected = {"points": _queries(3000, 5)}, {}
    for name in SHIPPED:
        model = load_model(name, "cpu")
        observation = _observation(model.config.input_kind, 2)
        latent = model.encode(observation)
        arrays[f"{name}/input"] = observation
        arrays[f"{name}/code"] = latent.code
        expected[f"{name}/code"] = latent.code
        with torch.no_grad():
            expected[f"{name}/logits"] = model.field(latent)(torch.from_numpy(arrays["points"])).numpy()
    np.savez(tmp_path / "in.npz", **arrays)
    script = textwrap.dedent(_BLOCKED_RUN.format(blocked=set(BLOCKED), models=SHIPPED))
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out.npz") as got:
        for key, value in expected.items():
            assert np.abs(got[key] - value).max() < LOGIT_TOLERANCE * max(1.0, float(np.abs(value).max())), key


def test_a_model_renamed_with_its_graphs_says_how_to_mend_it(tmp_path):
    shipped = WEIGHTS_DIR / "triplane-pointcloud.safetensors"
    renamed = tmp_path / "my-scanner.safetensors"
    renamed.write_bytes(shipped.read_bytes())
    for stage in stages(read_config(shipped).architecture):
        graph_path(renamed, stage).write_bytes(graph_path(shipped, stage).read_bytes())
    with pytest.raises(ModelLoadError, match="reads its weights from 'triplane-pointcloud.safetensors'.*renamed"):
        load_runtime_model(renamed).encode(np.random.default_rng(0).random((500, 3)).astype(np.float32))
