"""`make demo`: reconstruct held-out shapes with the shipped models and render the result to out/demo.png; the
picture and its meshes' statistics go to docs/ (the README's picture; tests/test_demo.py checks that the committed
statistics are what the demo writes, so a stale picture fails the tests).

Inputs: a 10,000-point noisy scan of a real mesh of the held-out split (dm-control's dog skull, in its file's own
place and orientation; docs/demo/dog_skull_scan.ply), two scans of held-out procedural shapes for a blend, and
front, side and top reference pictures of another held-out real mesh (a KUKA iiwa arm link from pybullet's data;
docs/demo/part_*.png, rendered by scripts/render_views.py). It runs the add-on's headless batch on them (meshes
and out/demo.blend, with a keyframed chair-to-sofa blend; the pictures with --view, as one object) and renders the
meshes with Blender's Workbench.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # occnet_blender/, for the render in bpy

from backend.data.procedural import canonical_shape, shape_id, shape_mesh, surface_samples  # noqa: E402

OUT = Path("out")
DOCS = Path(__file__).resolve().parents[1] / "docs"
REAL_SCAN = DOCS / "demo" / "dog_skull_scan.ply"
VIEWS = ("front", "side", "top")  # the reference pictures' views, as docs/demo/part_<view>.png
SCAN_OFFSET = np.array([0.0, 0.0, 0.6])
SCAN_SCALE = 1.2


def batch(*args: str) -> None:
    """The headless batch a pipeline runs (`blender --background --python occnet_blender/batch.py -- ...`)."""
    print("$ python occnet_blender/batch.py -- " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "occnet_blender/batch.py", "--", *args], check=True)


def make_inputs(out: Path = OUT) -> tuple[Path, Path, Path, list[Path]]:
    """Shapes from the test splits: the shipped models never saw them."""
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    skull = inputs / REAL_SCAN.name
    skull.write_bytes(REAL_SCAN.read_bytes())
    rng = np.random.default_rng(0)
    chair = canonical_shape("chair", int(shape_id("test", 3)))
    cloud, _ = surface_samples(chair, shape_mesh(chair), 3000, rng)
    cloud = (cloud + rng.normal(scale=0.005, size=cloud.shape)) * SCAN_SCALE + SCAN_OFFSET
    np.savetxt(inputs / "chair_scan.xyz", cloud, fmt="%.5f", header="x y z (a noisy scan of a held-out chair)")
    sofa = canonical_shape("sofa", int(shape_id("test", 5)))
    sofa_cloud, _ = surface_samples(sofa, shape_mesh(sofa), 3000, rng)
    np.save(inputs / "sofa_scan.npy", sofa_cloud + rng.normal(scale=0.005, size=sofa_cloud.shape))
    pictures = []
    for view in VIEWS:
        pictures.append(inputs / f"part_{view}.png")
        pictures[-1].write_bytes((DOCS / "demo" / pictures[-1].name).read_bytes())
    return skull, inputs / "chair_scan.xyz", inputs / "sofa_scan.npy", pictures


def reference_batch(pictures: list[Path], out: Path) -> None:
    batch("--input", *map(str, pictures), "--view", *VIEWS, "--out", str(out))


def mesh_stats(out: Path) -> dict[str, dict]:
    """What the picture shows, as numbers a test can compare across machines: per result mesh its counts, surface
    area and bounding box."""
    stats = {}
    for path in sorted(out.glob("*.obj")):
        mesh = trimesh.load(path, process=False)
        stats[path.stem] = {
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
            "area": round(float(mesh.area), 5),
            "bounds": np.round(mesh.bounds, 4).tolist(),
        }
    return stats


def main() -> int:
    skull, chair, sofa, pictures = make_inputs()
    batch(
        "--input", str(skull),
        "--interpolate", str(chair), str(sofa), "--steps", "5",
        "--out", str(OUT), "--save-blend", str(OUT / "demo.blend"),
    )  # fmt: skip
    reference_batch(pictures, OUT)
    from render_demo import render_picture

    render_picture(OUT, skull, chair, pictures)
    (OUT / "demo.json").write_text(json.dumps(mesh_stats(OUT), indent=1) + "\n")
    for name in ("demo.png", "demo.json"):
        shutil.copyfile(OUT / name, DOCS / name)
    print(f"wrote {OUT / 'demo.png'}, {OUT / 'demo.json'} and {OUT / 'demo.blend'}; the picture and numbers to {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
