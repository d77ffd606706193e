"""The README's picture is what `make demo` draws today: the committed numbers of its meshes (docs/demo.json,
written with the picture) match what the demo's batch writes now. A change to a model or to the extraction that
alters the picture fails here until `make demo` is run again and its picture committed."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402

COMMITTED = json.loads((ROOT / "docs" / "demo.json").read_text())


def _assert_same(name: str, now: dict) -> None:
    then = COMMITTED[name]
    size = float(np.ptp(np.array(then["bounds"]), axis=0).max())
    assert now["faces"] == pytest.approx(then["faces"], rel=0.02), name
    assert now["area"] == pytest.approx(then["area"], rel=0.02), name
    np.testing.assert_allclose(now["bounds"], then["bounds"], atol=0.02 * size, err_msg=name)


def test_the_pictures_scan_and_reference_image_results_are_what_the_demo_writes_now(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    skull, _, _, pictures = demo.make_inputs(tmp_path)
    demo.batch("--input", str(skull), "--out", str(tmp_path))
    demo.reference_batch(pictures, tmp_path)
    now = demo.mesh_stats(tmp_path)
    assert set(now) == {skull.stem, pictures[0].stem}
    for name, stats in now.items():
        _assert_same(name, stats)


@pytest.mark.slow
def test_the_pictures_blend_is_what_the_demo_writes_now(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    _, chair, sofa, _ = demo.make_inputs(tmp_path)
    demo.batch("--interpolate", str(chair), str(sofa), "--steps", "5", "--out", str(tmp_path))
    now = demo.mesh_stats(tmp_path)
    assert set(now) == {name for name in COMMITTED if "_to_" in name}
    for name, stats in now.items():
        _assert_same(name, stats)


def test_the_stats_are_the_meshes_own(tmp_path):
    """The numbers compared above change when a mesh does (not a test that cannot fail)."""
    trimesh.creation.icosphere(2).export(tmp_path / "a.obj")
    trimesh.creation.icosphere(3).export(tmp_path / "b.obj")
    stats = demo.mesh_stats(tmp_path)
    assert stats["a"]["faces"] * 4 == stats["b"]["faces"] and stats["a"]["area"] < stats["b"]["area"]
