"""Training and evaluation end to end on a tiny procedural data set, through the CLI a user runs."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from commands import run_cli

from backend.checkpoint import read_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    done = run_cli(
        "data",
        "procedural",
        "--out",
        root,
        "--categories",
        "mug",
        "table",
        "--train",
        "3",
        "--val",
        "1",
        "--test",
        "1",
        "--views",
        "1",
        "--workers",
        "1",
    )
    assert done.returncode == 0, done.stderr
    return root


def test_short_cpu_training_lowers_the_loss_and_resumes(tiny_data, tmp_path):
    run = tmp_path / "run"
    common = [
        "--data",
        tiny_data,
        "--out",
        run,
        "--batch",
        "6",
        "--queries",
        "512",
        "--val-every",
        "20",
        "--checkpoint-every",
        "20",
        "--threads",
        "2",
    ]
    done = run_cli("train", *common, "--steps", "40")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((run / "log.csv").open()))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    config = read_config(run / "best.safetensors")
    assert config.evaluation["val_iou"] > 0 and config.training["train_shapes"] == 6
    assert config.threshold in (0.2, 0.3, 0.4, 0.5)

    refused = run_cli("train", *common, "--steps", "50")
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = run_cli("train", *common, "--steps", "50", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    steps = [int(r["step"]) for r in csv.DictReader((run / "log.csv").open())]
    assert steps[-11:] == list(range(40, 51)) or steps[-10:] == list(range(41, 51))


def test_evaluate_cli_writes_the_paper_metrics(tiny_data, tiny_model, tmp_path):
    out = tmp_path / "results.json"
    done = run_cli("evaluate", "--model", tiny_model, "--data", tiny_data, "--resolution", "32", "--out", out)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert set(results["per_category"]) == {"mug", "table"} and results["shapes"] == 2
    for metric in ("iou", "chamfer_l1", "normal_consistency", "fscore"):
        assert metric in results["mean"]
    assert 0 <= results["mean"]["iou"] <= 1
    assert "Chamfer-L1" in done.stdout and "mean" in done.stdout


@pytest.mark.slow
def test_training_runs_unchanged_under_torchrun(tiny_data, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "-m",
            "backend",
            "train",
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "ddp"),
            "--steps",
            "6",
            "--batch",
            "8",
            "--queries",
            "256",
            "--val-every",
            "3",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(csv.DictReader((tmp_path / "ddp" / "log.csv").open()))) == 6
