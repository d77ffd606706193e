"""Render the held-out meshes as reference images, for scoring the views model: `evaluate --views` reads them.

Each test shape's source mesh (found through its data set's index.json, in the folder `prepare_real_meshes.py`
unpacked) is normalised as the data set's samples were, sampled densely (400,000 points) and rendered by the
orthographic splat renderer at 128 pixels from the front, the side, the top and one oblique direction, in the grey
of the training renders; the front also in a colour under a light unlike any training light. Pictures frame the
object as Blender's reference images would, their plane through the middle of the object's depth. Written to
<shape>/views/<name>.png, with views.json holding each picture's view (centre, right, up).

    python scripts/render_views.py --data data/real_heldout --split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from backend.data.mesh_folder import load_normalized
from backend.data.ortho_views import render_view
from backend.data.view_examples import framed_view

ROOT = Path(__file__).resolve().parents[1]
VIEWS = {"front": (0.0, 0.0), "side": (90.0, 0.0), "top": (0.0, 90.0), "oblique": (35.0, 25.0)}
COLOURED = {"colour": (0.8, 0.35, 0.2), "light": (-0.9, -0.5, 0.35), "ambient": 0.12}  # lit from low left, red


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real_heldout")
    parser.add_argument("--raw", type=Path, default=ROOT / "data" / "real_raw", help="the unpacked source meshes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pixels", type=int, default=128)
    parser.add_argument("--samples", type=int, default=400_000)
    args = parser.parse_args()
    for lst in sorted(args.data.glob(f"*/{args.split}.lst")):
        for name in lst.read_text().split():
            folder = lst.parent / name
            source = folder.resolve()
            index = json.loads((source.parent / "index.json").read_text())
            mesh, _, _ = load_normalized(args.raw / index[name]["file"])
            points, faces = trimesh.sample.sample_surface(mesh, args.samples, seed=0)
            normals = mesh.face_normals[faces]
            out = folder / "views"
            out.mkdir(exist_ok=True)
            written = {}
            for view_name, (azimuth, elevation) in VIEWS.items():
                view = framed_view(points, azimuth, elevation, args.pixels)
                rgba, _ = render_view(points, normals, view, args.pixels)
                _save(out / f"{view_name}.png", rgba)
                written[view_name] = {"centre": view.centre, "right": view.right, "up": view.up}
                if view_name == "front":
                    rgba, _ = render_view(points, normals, view, args.pixels, **COLOURED)
                    _save(out / "front_colour.png", rgba)
                    written["front_colour"] = written["front"]
            (out / "views.json").write_text(json.dumps(written, indent=1))
            print(f"{folder}: {len(written)} pictures")
    return 0


def _save(path: Path, rgba: np.ndarray) -> None:
    Image.fromarray((rgba * 255).round().astype(np.uint8)).save(path)


if __name__ == "__main__":
    raise SystemExit(main())
