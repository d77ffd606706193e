"""`python -m backend evaluate`: the paper's metrics on a held-out split, per category and mean.

IoU on the stored uniform points (100k on test splits); Chamfer-L1 (mean of accuracy and completeness
over 100k surface samples each way), normal consistency and F-score at 1%. Distances are in units of
the object's longest bounding-box side (the canonical frame); the paper's tables use a tenth of that
side as the unit, so multiply our Chamfer-L1 by 10 to compare.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from .api import Model, load_model
from .checkpoint import load_checkpoint, save_checkpoint
from .data.samplers import distinct_surface, noisy_cloud, partial_cloud
from .errors import EmptySurfaceError, OccNetError
from .evaluate_views import BASELINES, as_input, baseline_mesh, silhouette_iou, stored_pictures
from .inputs import PointCloudInput
from .metrics import iou, mesh_contains
from .registry import find_model, is_shipped
from .surface.mesh import Mesh
from .surface.options import ExtractOptions

SURFACE_SAMPLES = 100_000
FSCORE_THRESHOLD = 0.01
METRICS = ("iou", "chamfer_l1", "normal_consistency", "fscore")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name or .safetensors path")
    p.add_argument("--data", required=True, help="data set folder")
    p.add_argument("--split", default="test", help="the split to score; several joined by '+' (val+test)")
    p.add_argument("--categories", nargs="*")
    p.add_argument("--points", type=int, default=300, help="input cloud size (point-cloud models)")
    p.add_argument("--noise", type=float, default=0.005)
    p.add_argument("--partial", type=int, default=0, metavar="VIEWS", help="scans from this many sides only (0: all)")
    p.add_argument(
        "--with-normals", action="store_true", help="give the model the true normals (Poisson estimates its own)"
    )
    p.add_argument("--rotate-x", type=float, default=0.0, metavar="DEG", help="turn each test shape about X first")
    p.add_argument("--view", type=int, default=0, help="which rendered view (image models)")
    p.add_argument(
        "--views",
        help="views models: the reference pictures to give, comma-separated, from each shape's views/ folder "
        "(scripts/render_views.py renders them): front, side, top, oblique, front_colour; e.g. front,side,top",
    )
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--threshold", type=float)
    p.add_argument(
        "--min-piece",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="drop loose pieces below this share of the largest's surface (default 0: the model's surface as it "
        "comes, as the papers score it; reconstruct's default is 0.01)",
    )
    p.add_argument("--limit", type=int, help="at most this many shapes per category")
    p.add_argument(
        "--baseline",
        choices=("poisson", *BASELINES),
        help="also score a baseline on the same inputs: Screened Poisson (point clouds); for --views, the visual hull "
        "(the silhouettes alone) or an ellipsoid fitted to the first silhouette",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--engine",
        choices=("torch", "runtime"),
        default="torch",
        help="PyTorch, or the built-in CPU runtime the add-on runs without PyTorch (the model needs its ONNX graphs)",
    )
    p.add_argument("--out", help="write the full results as JSON here")
    p.add_argument("--markdown", help="write the table as Markdown here")
    p.add_argument(
        "--write-metadata",
        nargs="?",
        const="",
        metavar="COPY",
        help="store the mean scores in the checkpoint's metadata (what 'models' lists); shipped models are never "
        "changed, so for them name the .safetensors copy to write",
    )
    p.add_argument(
        "--metadata-label",
        help="with --write-metadata: store this run's scores (Poisson's beside) under this name, e.g. real_3000",
    )
    p.add_argument(
        "--headline", action="store_true", help="with --metadata-label: these are also the model's test_* scores"
    )


def surface_metrics(pred: Mesh, gt_points: np.ndarray, gt_normals: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Chamfer-L1, normal consistency and F-score between a mesh and samples of the true surface."""
    tm = pred.to_trimesh()
    points, faces = tm.sample(SURFACE_SAMPLES, return_index=True, seed=seed)
    normals = tm.face_normals[faces]
    gt_normals = gt_normals / np.linalg.norm(gt_normals, axis=1, keepdims=True).clip(1e-9)
    to_gt, nearest_gt = cKDTree(gt_points).query(points, workers=-1)
    to_pred, nearest_pred = cKDTree(points).query(gt_points, workers=-1)
    precision = float((to_gt < FSCORE_THRESHOLD).mean())
    recall = float((to_pred < FSCORE_THRESHOLD).mean())
    consistency = 0.5 * (
        np.abs((normals * gt_normals[nearest_gt]).sum(1)).mean()
        + np.abs((gt_normals * normals[nearest_pred]).sum(1)).mean()
    )
    return {
        "chamfer_l1": float(0.5 * (to_gt.mean() + to_pred.mean())),
        "normal_consistency": float(consistency),
        "fscore": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


def score_mesh(mesh: Mesh | None, shape: dict) -> dict[str, float]:
    if mesh is None or len(mesh.faces) == 0:
        return {"iou": 0.0, "chamfer_l1": float("nan"), "normal_consistency": float("nan"), "fscore": 0.0}
    inside = mesh_contains(mesh.vertices, mesh.faces, shape["uniform"])
    return {"iou": iou(inside, shape["labels"]), **surface_metrics(mesh, shape["surface"], shape["normals"])}


def load_test_shape(folder: Path) -> dict:
    with np.load(folder / "points.npz") as data:
        n = int(data["n_uniform"]) if "n_uniform" in data.files else len(data["points"])
        points = data["points"][:n].astype(np.float64)
        labels = np.unpackbits(data["occupancies"])[:n].astype(bool)
    with np.load(folder / "pointcloud.npz") as data:
        surface, normals = (a.astype(np.float64) for a in distinct_surface(data["points"], data["normals"]))
    return {"uniform": points, "labels": labels, "surface": surface, "normals": normals}


def rotate_shape(shape: dict, degrees: float) -> dict:
    """The test shape turned about X: its labelled points, surface and normals move together."""
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return {**shape, **{key: shape[key] @ matrix.T for key in ("uniform", "surface", "normals")}}


def model_input(model: Model, folder: Path, shape: dict, args: argparse.Namespace, seed: int):
    if model.config.input_kind == "image" and args.views:
        return as_input(stored_pictures(folder, args.views.split(",")))
    if model.config.architecture == "views":
        raise OccNetError("A views model is scored on reference pictures: name them with --views (front,side,top).")
    if model.config.input_kind == "image":
        views = sorted((folder / "img").glob("*.png"))
        if not 0 <= args.view < len(views):
            raise OccNetError(
                f"{folder}: no rendered image {args.view} (img/ holds {len(views)}); an image model needs a data set "
                "with images (python -m backend data procedural renders them; data meshes does not)."
            )
        return str(views[args.view])
    if model.config.input_kind == "voxels":
        if not (folder / "voxels.npz").is_file():
            raise OccNetError(f"{folder}: no voxels.npz for the voxel model; prepare the data set again.")
        with np.load(folder / "voxels.npz") as data:
            r = int(data["resolution"])
            return np.unpackbits(data["occupancies"])[: r**3].reshape(r, r, r)
    rng = np.random.default_rng(seed)
    if args.partial:
        cloud, normals = partial_cloud(shape["surface"], shape["normals"], args.points, args.noise, rng, args.partial)
    else:
        cloud, normals = noisy_cloud(shape["surface"], shape["normals"], args.points, args.noise, rng)
    return PointCloudInput(cloud, normals) if args.with_normals else cloud


def evaluate(args: argparse.Namespace) -> int:
    target = None if args.write_metadata is None else metadata_target(find_model(args.model), args.write_metadata)
    model, reconstruct = _engine(args)
    root = Path(args.data)
    entries = []
    lists = sorted(lst for split in args.split.split("+") for lst in root.glob(f"*/{split}.lst"))
    for lst in lists:
        if args.categories and lst.parent.name not in args.categories:
            continue
        names = lst.read_text().split()[: args.limit]
        entries += [(lst.parent.name, lst.parent / n) for n in names]
    if not entries:
        raise OccNetError(f"{root}: no shapes in any <category>/{args.split}.lst")
    baseline = _poisson() if args.baseline == "poisson" else None
    rows = []
    for index, (category, folder) in enumerate(tqdm(entries, desc="evaluate")):
        shape = load_test_shape(folder)
        if args.rotate_x:
            shape = rotate_shape(shape, args.rotate_x)
        observation = model_input(model, folder, shape, args, seed=index)
        start = time.perf_counter()
        try:
            mesh = reconstruct(observation)
        except EmptySurfaceError:
            mesh = None
        row = {
            "category": category,
            "shape": folder.name,
            "seconds": time.perf_counter() - start,
            **score_mesh(mesh, shape),
        }
        if baseline is not None and model.config.input_kind == "pointcloud":
            cloud = observation.points if isinstance(observation, PointCloudInput) else observation
            row["poisson"] = score_mesh(baseline(cloud), shape)
        if args.views and model.config.input_kind == "image":
            pictures = observation.pictures()
            row["silhouette_iou"] = silhouette_iou(mesh, pictures)
            if args.baseline in BASELINES:
                config = model.config
                other = baseline_mesh(args.baseline, pictures, config.image_size, config.mask_size, args.resolution)
                row["baseline"] = {**score_mesh(other, shape), "silhouette_iou": silhouette_iou(other, pictures)}
        rows.append(row)
    results = summarize(rows, model, args)
    print_table(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown_table(results))
    if target is not None:
        store_summary(find_model(args.model), results, args.metadata_label, args.headline, out=target)
        print(f"{target}: scores stored in the metadata")
    return 0


def _engine(args: argparse.Namespace) -> tuple[Model, Callable[[object], Mesh]]:
    """The model on the chosen engine, and how one input becomes a mesh there."""
    options = ExtractOptions(
        resolution=args.resolution, threshold=args.threshold, normals=False, min_piece=args.min_piece
    )
    model = load_model(args.model, args.device, engine=args.engine)
    return model, lambda observation: model.reconstruct(observation, options).mesh


def metadata_target(model: Path, copy: str) -> Path:
    """Where --write-metadata writes: the model itself, or the named copy; never a shipped model."""
    target = Path(copy) if copy else model
    if is_shipped(target):
        raise OccNetError(
            f"{target} is a shipped model and is never modified; name a copy to write instead: "
            f"--write-metadata {model.stem}-scored.safetensors"
        )
    if target.suffix != ".safetensors":
        raise OccNetError(f"{target}: --write-metadata writes a .safetensors checkpoint; name a file ending so.")
    return target


def store_summary(
    path: Path, results: dict, label: str | None = None, headline: bool = True, out: Path | None = None
) -> None:
    """Write the checkpoint with the test scores in its config to `out` (default: in place); tensors unchanged.

    The headline scores are the model's test_* entries (what `models` and the add-on show first); a label keeps
    this run's scores beside them under that name, with Poisson's on the same inputs where they were measured.
    """
    network = load_checkpoint(path)
    evaluation = dict(network.config.evaluation)
    if label:
        summary = {k: round(v, 4) for k, v in results["mean"].items()}
        for key in ("poisson", "baseline"):
            if key in results:
                name = results[key].get("name", key)
                summary.update({f"{name}_{k}": round(v, 4) for k, v in results[key]["mean"].items()})
        summary.update({"shapes": results["shapes"], "split": f"{results['data']}:{results['split']}"})
        for key in ("points", "partial", "rotate_x", "with_normals", "views", "silhouette_iou", "silhouette_iou_min"):
            if results.get(key):
                summary[key] = results[key]
        evaluation[label] = summary
    if headline or not label:
        evaluation.update({f"test_{k}": round(v, 4) for k, v in results["mean"].items()})
        evaluation.update(
            {
                "test_shapes": results["shapes"],
                "test_split": f"{results['data']}:{results['split']}",
                "test_resolution": results["resolution"],
            }
        )
        if results["points"]:
            evaluation["test_points"] = results["points"]
    network.config.evaluation = evaluation
    save_checkpoint(network, out or path)


def summarize(rows: list[dict], model: Model, args: argparse.Namespace) -> dict:
    def means(items: list[dict]) -> dict:
        return {m: float(np.nanmean([r[m] for r in items])) if items else float("nan") for m in METRICS}

    categories = sorted({r["category"] for r in rows})
    results = {
        "model": model.name,
        "engine": args.engine,
        "data": str(args.data),
        "split": args.split,
        "input": model.config.input_kind,
        "points": args.points if model.config.input_kind == "pointcloud" else None,
        "partial": args.partial if model.config.input_kind == "pointcloud" else 0,
        "rotate_x": args.rotate_x,
        "with_normals": args.with_normals,
        "resolution": args.resolution,
        "threshold": args.threshold or model.config.threshold,
        "units": "distances in units of the object's longest bounding-box side (x10 for the paper's unit)",
        "shapes": len(rows),
        "failures": sum(1 for r in rows if r["fscore"] == 0.0 and np.isnan(r["chamfer_l1"])),
        "per_category": {c: means([r for r in rows if r["category"] == c]) for c in categories},
        "mean": means(rows),
        "seconds_per_shape": float(np.mean([r["seconds"] for r in rows])),
        "rows": rows,
    }
    for key in ("poisson", "baseline"):
        if any(key in r for r in rows):
            results[key] = {
                "per_category": {c: means([r[key] for r in rows if r["category"] == c]) for c in categories},
                "mean": means([r[key] for r in rows]),
            }
    if args.views:
        results["views"] = args.views.split(",")
        results["silhouette_iou"] = float(np.mean([r["silhouette_iou"] for r in rows]))
        results["silhouette_iou_min"] = float(np.min([r["silhouette_iou"] for r in rows]))
        if "baseline" in results:
            results["baseline"]["name"] = args.baseline
            results["baseline"]["silhouette_iou"] = float(np.mean([r["baseline"]["silhouette_iou"] for r in rows]))
    return results


def print_table(results: dict) -> None:
    methods = [("occnet", results)] + [(key, results[key]) for key in ("poisson", "baseline") if key in results]
    print(
        f"{results['model']} on {results['data']} ({results['split']}, {results['shapes']} shapes, "
        f"resolution {results['resolution']}, threshold {results['threshold']})"
    )
    print(f"{'category':<12}{'method':<9}{'IoU':>8}{'Chamfer-L1':>12}{'Normal c.':>11}{'F@1%':>8}")
    for category in [*results["per_category"], "mean"]:
        for name, scores in methods:
            s = scores["mean"] if category == "mean" else scores["per_category"][category]
            print(
                f"{category:<12}{name:<9}{s['iou']:>8.3f}{s['chamfer_l1']:>12.4f}"
                f"{s['normal_consistency']:>11.3f}{s['fscore']:>8.3f}"
            )


def markdown_table(results: dict) -> str:
    methods = [("OccNet", results)] + [
        (results[key].get("name", key).capitalize(), results[key]) for key in ("poisson", "baseline") if key in results
    ]
    lines = [
        "| category | method | IoU | Chamfer-L1 | normal consistency | F-score@1% |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for category in [*results["per_category"], "mean"]:
        for name, scores in methods:
            s = scores["mean"] if category == "mean" else scores["per_category"][category]
            label = f"**{category}**" if category == "mean" else category
            lines.append(
                f"| {label} | {name} | {s['iou']:.3f} | {s['chamfer_l1']:.4f} | "
                f"{s['normal_consistency']:.3f} | {s['fscore']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def _poisson():
    try:
        import open3d as o3d
    except ImportError as exc:
        raise OccNetError("The Poisson baseline needs Open3D: pip install open3d") from exc

    def reconstruct(cloud: np.ndarray) -> Mesh | None:
        """Screened Poisson as Open3D's documentation shows it: estimated, consistently oriented normals."""
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(cloud, np.float64)))
        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=0.1, max_nn=30))
        pcd.orient_normals_consistent_tangent_plane(15)
        mesh, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=8)
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
        return Mesh(vertices, faces) if len(faces) else None

    return reconstruct
