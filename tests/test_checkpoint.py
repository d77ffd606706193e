import io
import json
import os
import re
import stat

import pytest
import torch
from commands import run_cli
from safetensors import safe_open
from safetensors.torch import save_file

from backend import load_model
from backend.checkpoint import METADATA_KEY, load_checkpoint, read_config, save_checkpoint
from backend.config import ModelConfig, preset
from backend.device import resolve_device
from backend.errors import DeviceError, ModelLoadError, OccNetError
from backend.models import build_model
from backend.protocol import ModelsRequest
from backend.registry import find_model, list_models
from backend.serve import Server
from backend.weights_file import FORMAT, FORMAT_KEY

SMALL = ModelConfig(c_dim=16, decoder_hidden=16, decoder_blocks=1, encoder_hidden=16, encoder_blocks=2)


def test_round_trip_gives_identical_outputs_in_eval_mode(tmp_path):
    model = build_model(SMALL)
    model.train()
    model(torch.rand(4, 64, 3), torch.rand(4, 100, 3))  # moves the batch-norm running statistics
    model.eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert not loaded.training
    p, cloud = torch.rand(1, 50, 3), torch.rand(1, 100, 3)
    torch.testing.assert_close(loaded(p, cloud), model(p, cloud))
    assert read_config(path) == SMALL
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_non_finite_weights_are_never_written_and_never_loaded(tmp_path):
    model = build_model(SMALL)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    name = next(k for k, _ in model.named_parameters())
    with pytest.raises(OccNetError, match=f"'{re.escape(name)}' holds NaN"):
        save_checkpoint(model, tmp_path / "diverged.safetensors")
    assert not list(tmp_path.iterdir())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}  # as an older version would have written
    save_file(state, tmp_path / "diverged.safetensors", metadata={METADATA_KEY: SMALL.to_json(), FORMAT_KEY: FORMAT})
    with pytest.raises(ModelLoadError, match=f"diverged.safetensors: tensor '{re.escape(name)}' holds NaN"):
        load_checkpoint(tmp_path / "diverged.safetensors")


def test_presets_build_the_paper_architecture():
    paper = preset("paper")
    assert (paper.c_dim, paper.decoder_hidden, paper.decoder_blocks) == (256, 256, 5)
    small = build_model(preset("small"))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in build_model(paper).parameters()) / 4


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "damaged|truncated|readable"),
        (lambda p: p.write_bytes(b"\x00garbage" * 10), "readable"),
        (lambda p: save_file({"w": torch.zeros(2)}, str(p)), "without an OccNet config"),
        (
            lambda p: save_file({"w": torch.zeros(2)}, str(p), metadata={METADATA_KEY: json.dumps({"version": 99})}),
            "version 99",
        ),
        (lambda p: save_file({"w": torch.zeros(2)}, str(p), metadata={METADATA_KEY: SMALL.to_json()}), "do not match"),
    ],
    ids=["truncated", "not-safetensors", "no-metadata", "future-version", "wrong-tensors"],
)
def test_bad_files_get_a_clear_error_naming_the_file(tmp_path, damage, message):
    path = save_checkpoint(build_model(SMALL), tmp_path / "model.safetensors")
    damage(path)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_mismatched_shapes_are_reported(tmp_path):
    path = save_checkpoint(build_model(SMALL), tmp_path / "m.safetensors")
    other = build_model(ModelConfig(c_dim=8, decoder_hidden=16, decoder_blocks=1, encoder_hidden=16, encoder_blocks=2))
    state = {k: v.contiguous() for k, v in other.state_dict().items()}
    save_file(state, str(path), metadata={METADATA_KEY: SMALL.to_json()})
    with pytest.raises(ModelLoadError, match="shape"):
        load_checkpoint(path)


def test_unknown_model_names_list_what_exists(tmp_path, monkeypatch):
    save_checkpoint(build_model(SMALL), tmp_path / "mine.safetensors")
    monkeypatch.setenv("OCCNET_MODELS_PATH", str(tmp_path))
    assert find_model("mine") == tmp_path / "mine.safetensors"
    assert "mine" in [e.name for e in list_models()]
    with pytest.raises(ModelLoadError, match="available: .*mine"):
        load_model("nonexistent")
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "missing.safetensors")


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
    ids=["cuda-first", "then-mps", "else-cpu"],
)
def test_auto_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    """What this machine offers is fixed, so the GPUs a user may have are simulated at the two questions asked."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    for name in ("auto", None, "", "AUTO"):
        assert resolve_device(name) == torch.device(expected)


def test_a_named_device_is_given_or_refused_with_the_fix(monkeypatch):
    assert resolve_device("cpu") == resolve_device("CPU") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(
        DeviceError,
        match=re.escape(f"CUDA was requested but this PyTorch ({torch.__version__})") + ".*Use device 'cpu'",
    ):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="CUDA was requested"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="Apple MPS was requested but is not available here. Use 'auto' or 'cpu'"):
        resolve_device("mps")
    with pytest.raises(DeviceError, match="Unknown device 'tpu'. Choose one of: auto, cuda, mps, cpu"):
        resolve_device("tpu")


def test_checkpoints_are_written_readable_like_any_file(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(build_model(SMALL), tmp_path / "m.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _with_config(path, **changes):
    """The file's tensors under a config edited as JSON, as a hand-edited or hostile file would have it."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(SMALL.to_json()) | changes
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(config), "format": "occnet-blender"})
    return path


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"c_dim": -3}, "c_dim"),
        ({"architecture": "triplane", "plane_resolution": 10**6}, "plane_resolution"),
        ({"decoder_blocks": "5"}, "decoder_blocks"),
        ({"threshold": 1.5}, "threshold"),
        ({"image_widths": [64, -1, 256, 512]}, "image_widths"),
        ({"voxel_resolution": 30}, "voxel_resolution"),
        ({"evaluation": ["not", "a", "dict"]}, "evaluation"),
        ({"n_points": True}, "n_points"),
    ],
    ids=["negative", "huge-planes", "string", "threshold", "widths", "voxels", "evaluation", "bool"],
)
def test_metadata_is_validated_before_anything_is_built(tmp_path, changes, field):
    path = _with_config(save_checkpoint(build_model(SMALL), tmp_path / "m.safetensors"), **changes)
    with pytest.raises(ModelLoadError, match=field) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_metadata_claiming_a_huge_network_is_refused_before_allocating(tmp_path):
    """In range field by field, but 8 GB of weights the file does not hold: compared with the file's header first."""
    path = save_checkpoint(build_model(SMALL), tmp_path / "m.safetensors")
    _with_config(path, c_dim=4096, decoder_hidden=4096, decoder_blocks=64)
    with pytest.raises(ModelLoadError, match="do not match"):
        load_checkpoint(path)


def test_one_bad_file_does_not_break_the_model_list(tmp_path):
    save_checkpoint(build_model(SMALL), tmp_path / "sound-model.safetensors")
    broken = save_checkpoint(build_model(SMALL), tmp_path / "broken-model.safetensors")
    _with_config(broken, evaluation=["x"], threshold="hi")
    env = {**os.environ, "OCCNET_MODELS_PATH": str(tmp_path)}
    done = run_cli("models", env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "broken: " in listed["broken-model"] and "threshold" in listed["broken-model"]  # listed, with why
    assert "broken" not in listed["sound-model"]
    done = run_cli("models", "--json", env=env)
    entries = {e["name"]: e for e in json.loads(done.stdout)}
    assert "threshold" in entries["broken-model"]["broken"] and "broken" not in entries["sound-model"]
    reply = Server(io.BytesIO()).models(ModelsRequest(extra_dirs=[str(tmp_path)]), 1)
    names = [m.name for m in reply.models]
    assert "sound-model" in names and "broken-model" not in names  # the add-on's list


def test_a_cuda_index_must_name_a_visible_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="CUDA device 2 was requested but only 2 GPU"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match="cuda:first"):
        resolve_device("cuda:first")
