"""From a field to a finished mesh, for any engine: MISE, marching cubes without the crumbs, then the stages an
engine adds where it can (decimation to a face budget, gradient refinement, gradient normals), each timed.

An engine hands in its batched evaluator and its `Stages`; what it cannot do is refused before any work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from ..config import BOX_SIZE
from ..errors import EmptySurfaceError
from .field import Evaluator, Progress
from .marching import marching_cubes
from .mesh import Mesh
from .mise import dense_grid, mise_grid
from .options import ExtractOptions, OptionsError
from .pieces import drop_small_pieces, drop_unsupported_pieces
from .snap import Scan, snap_to_scan

NORMAL_STEP = 0.1  # finite-difference step for normals, in cells of the extraction grid
# Directions of a regular tetrahedron: four evaluations give the gradient (sum f(x + h d) d = 4/3 h grad f).
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float32) / np.sqrt(3.0)

T = TypeVar("T")


class Stages:
    """What an engine does after marching cubes. These are the field's own: vertex normals by finite differences
    (four evaluations a vertex, no gradients needed), and neither decimation nor refinement, which need PyTorch
    (the PyTorch engine's `Stages` adds them)."""

    simplifies = False
    refines = False

    def refuse(self, options: ExtractOptions) -> None:
        """Refuse, before any work, what these stages cannot do."""
        if (options.faces and not self.simplifies) or (options.refine_steps and not self.refines):
            raise OptionsError(
                "The built-in CPU runtime keeps every face and does not refine: set the face budget and the "
                "refinement steps to 0, or use the PyTorch backend for them."
            )

    def simplify(self, mesh: Mesh, faces: int) -> Mesh:
        raise NotImplementedError

    def refine(self, evaluate: Evaluator, mesh: Mesh, threshold: float, steps: int) -> Mesh:
        raise NotImplementedError

    def normals(self, evaluate: Evaluator, vertices: np.ndarray, step: float) -> np.ndarray:
        """Outward unit normals -grad f / |grad f| (occupancy grows inwards), the gradient by finite differences
        at the four corners of a small tetrahedron (edge `step`) around each vertex."""
        probes = (vertices[:, None, :] + np.float32(step) * TETRAHEDRON).reshape(-1, 3)
        values = evaluate(probes, stage="normals").reshape(len(vertices), 4)
        gradient = values @ TETRAHEDRON
        length = np.linalg.norm(gradient, axis=1, keepdims=True)
        return (-gradient / np.maximum(length, 1e-12)).astype(np.float32)


@dataclass
class ExtractStats:
    points_evaluated: int = 0
    pieces_dropped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    source: dict = field(default_factory=dict)  # what the encoder kept of the input: points, used, dropped, thinned_to

    def as_dict(self) -> dict:
        stats = {
            "points_evaluated": self.points_evaluated,
            "pieces_dropped": self.pieces_dropped,
            "seconds": dict(self.seconds),
        }
        return {**stats, "input": dict(self.source)} if self.source else stats

    def timed(self, stage: str, progress: Progress | None, fn: Callable[..., T], *args) -> T:
        """fn(*args), its seconds added to the stage's, after reporting the stage's start."""
        start = time.perf_counter()
        if progress is not None:
            progress(stage, 0.0)
        result = fn(*args)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        return result


def extract_mesh(
    evaluate: Evaluator,
    options: ExtractOptions,
    model_threshold: float,
    mesh_normals: bool = False,
    stages: Stages | None = None,
    progress: Progress | None = None,
    stats: ExtractStats | None = None,
    scan: Scan | None = None,
    seeds: np.ndarray | None = None,
) -> tuple[Mesh, ExtractStats]:
    """Mesh of the level set {sigmoid(logits) = threshold} in the canonical frame (threshold None in the options is
    `model_threshold`). `mesh_normals`: normals from the faces, for fields too costly to probe four times a vertex.
    `scan`: the input cloud, which the vertices move onto (`snap_to_scan`). `seeds`: points the surface passes
    near, where MISE (`mise_grid`) looks whatever its coarse grid shows; the scan's points when not given."""
    stages = stages or Stages()
    stages.refuse(options)
    stats = stats or ExtractStats()
    tau = options.threshold_logit(model_threshold)
    if options.use_mise:
        if seeds is None and scan is not None:
            seeds = scan.points
        values = stats.timed("evaluate", progress, mise_grid, evaluate, options.resolution, tau, seeds)
    else:
        values = stats.timed("evaluate", progress, dense_grid, evaluate, options.resolution)
    evaluate.check_cancel()
    mesh = stats.timed("mesh", progress, surface_mesh, values, tau, options.min_piece, stats, scan)
    if options.faces:
        mesh = stats.timed("simplify", progress, stages.simplify, mesh, options.faces)
    if options.refine_steps:
        threshold = options.surface_threshold(model_threshold)
        mesh = stats.timed("refine", progress, stages.refine, evaluate, mesh, threshold, options.refine_steps)
    if scan is not None and options.snap:
        mesh.vertices = stats.timed("snap", progress, snap_to_scan, mesh.vertices, scan)
    if options.normals and mesh_normals:
        mesh.normals = stats.timed("normals", progress, mesh.face_area_normals)
    elif options.normals:
        step = NORMAL_STEP * BOX_SIZE / options.resolution
        mesh.normals = stats.timed("normals", progress, stages.normals, evaluate, mesh.vertices, step)
    stats.points_evaluated += evaluate.points_evaluated
    return mesh, stats


def surface_mesh(
    values: np.ndarray, threshold_logit: float, min_piece: float, stats: ExtractStats, scan: Scan | None = None
) -> Mesh:
    """The grid's surface without its crumbs (pieces below `min_piece` of the largest's area, unless the scan holds
    their points) and, given the scan, without the pieces no input point supports, counted in stats; `min_piece` 0
    keeps every piece."""
    mesh = grid_to_mesh(values, threshold_logit)
    if scan is not None and min_piece > 0:
        mesh, dropped = drop_unsupported_pieces(mesh, scan)
        stats.pieces_dropped += dropped
    mesh, dropped = drop_small_pieces(mesh, min_piece, scan)
    stats.pieces_dropped += dropped
    return mesh


def grid_to_mesh(values: np.ndarray, threshold_logit: float) -> Mesh:
    """Surface of {values >= threshold} with outward-facing triangles, in the canonical frame; the grid is padded
    with outside values, so a surface touching the box's border is still closed."""
    resolution = values.shape[0] - 1
    if not values.max() >= threshold_logit:
        raise EmptySurfaceError(
            "The predicted occupancy never reaches the threshold, so there is no surface. "
            "Try a lower threshold, or check that the input shows an object."
        )
    padded = np.pad(values, 1, mode="constant", constant_values=threshold_logit - 1e3)
    vertices, faces = marching_cubes(padded, threshold_logit)
    vertices = (vertices - 1.0) * (BOX_SIZE / resolution) - BOX_SIZE / 2
    return Mesh(vertices.astype(np.float32), faces)
