"""Scoring the views model (`evaluate --views`): the held-out shapes' reference pictures (scripts/render_views.py
renders them), the baselines a user could get without a network (the visual hull: what the silhouettes alone
carve; an ellipsoid fitted to one silhouette's width and height), and how well a result's silhouette matches each
picture it was given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import EmptySurfaceError, OccNetError
from .inputs.observation import ImageInput
from .inputs.views import PreparedViews, View, grid_affine, prepare_views
from .metrics import iou, ray_crossings
from .models.pixel_aligned import CARVE, bilinear
from .surface.field import Evaluator
from .surface.mesh import Mesh
from .surface.options import ExtractOptions
from .surface.pipeline import extract_mesh
from .surface.silhouettes import pixel_centres

BASELINES = ("hull", "ellipsoid")


def stored_pictures(folder: Path, names: list[str]) -> list[tuple[np.ndarray, View]]:
    """The pictures `names` of a test shape, with their views, as render_views.py wrote them."""
    index = folder / "views" / "views.json"
    if not index.is_file():
        raise OccNetError(
            f"{folder}: no reference pictures (views/views.json); render them with 'python scripts/render_views.py "
            f"--data {folder.parent.parent}'."
        )
    views = json.loads(index.read_text())
    if unknown := [n for n in names if n not in views]:
        raise OccNetError(f"{folder}: no picture {', '.join(unknown)}; it has {', '.join(views)}.")
    return [(np.asarray(Image.open(folder / "views" / f"{n}.png")), View(**views[n])) for n in names]


def as_input(pictures: list[tuple[np.ndarray, View]]) -> ImageInput:
    (pixels, view), *more = pictures
    return ImageInput(pixels, view, tuple(more))


def baseline_mesh(kind: str, pictures: list[tuple[np.ndarray, View]], size: int, mask_size: int, resolution: int):
    """The baseline's mesh in the world: `hull` carves the views' box by every silhouette; `ellipsoid` is the
    ellipsoid in the first view's silhouette box, as deep as the box's shorter side, centred on the picture's
    plane. None when nothing is left."""
    prepared = prepare_views(pictures, size, mask_size)
    field = hull_logits(prepared) if kind == "hull" else ellipsoid_logits(prepared)
    options = ExtractOptions(resolution=resolution, threshold=0.5, normals=False)
    try:
        mesh, _ = extract_mesh(Evaluator(field), options, 0.5)
    except EmptySurfaceError:
        return None
    return mesh.transformed(prepared.frame.as_array(), prepared.frame.scale)


def hull_logits(prepared: PreparedViews):
    """The silhouettes' carving alone, as the views model carves (bilinear masks, CARVE logits)."""

    def logits(points: np.ndarray) -> np.ndarray:
        grid = np.einsum("vij,nj->vni", prepared.affines[:, :2, :3], points) + prepared.affines[:, None, :2, 3]
        inside = bilinear(torch.from_numpy(prepared.masks), torch.from_numpy(grid.astype(np.float32)))
        return (CARVE * (2 * inside.amin(dim=0)[:, 0].numpy() - 1)).astype(np.float32)

    return logits


def ellipsoid_logits(prepared: PreparedViews):
    """The ellipsoid fitted to the first silhouette's box (semi-axes half its width and height, and half the
    shorter of those in depth), its logits 0 on its surface."""
    affine, mask = prepared.affines[0], prepared.masks[0, 0]
    rows, cols = np.nonzero(mask >= 0.5)
    m = mask.shape[0]
    low = np.array([cols.min(), rows.min()]) / m * 2 - 1
    high = (np.array([cols.max(), rows.max()]) + 1) / m * 2 - 1
    centre, radii = (low + high) / 2, (high - low) / 2
    radii = np.append(radii, radii.min())

    def logits(points: np.ndarray) -> np.ndarray:
        local = points @ affine[:, :3].T + affine[:, 3]
        local[:, :2] -= centre
        return (CARVE * (1 - np.sqrt(((local / radii) ** 2).sum(axis=1)))).astype(np.float32)

    return logits


def silhouette_iou(mesh: Mesh | None, pictures: list[tuple[np.ndarray, View]]) -> float:
    """Mean over the pictures of the IoU between each picture's alpha and the result's silhouette in the same view:
    the pixels whose centre's ray (along the view) meets the mesh, as a renderer rasterizes."""
    if mesh is None or len(mesh.faces) == 0:
        return 0.0
    scores = []
    for pixels, view in pictures:
        truth = np.asarray(pixels)[:, :, 3] >= 128
        scores.append(iou(silhouette(mesh, view, truth.shape[0]), truth))
    return float(np.mean(scores))


def silhouette(mesh: Mesh, view: View, pixels: int) -> np.ndarray:
    """(pixels, pixels) bool: which pixels of a square view the mesh covers at their centres (rows down)."""
    affine = grid_affine(view)
    local = np.asarray(mesh.vertices, np.float64) @ affine[:, :3].T + affine[:, 3]
    centres = pixel_centres(pixels)
    y, x = np.meshgrid(centres, centres, indexing="ij")
    rays = np.stack([x.ravel(), y.ravel(), np.full(x.size, local[:, 2].min() - 1.0)], axis=1)
    return (ray_crossings(local, mesh.faces, rays) > 0).reshape(pixels, pixels)
