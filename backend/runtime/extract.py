"""From a logits callable to a finished mesh on numpy alone: MISE, marching cubes, normals from the field.

The bundled engine's counterpart of `backend.extract.pipeline` (which needs torch): the same options, stats,
progress stages and cancellation, the same grid (both engines run `runtime.mise`) and the same marching cubes
(both run `grid_to_mesh`), so the two give the same surface. Simplification and refinement need PyTorch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from ..config import BOX_SIZE
from ..errors import EmptySurfaceError, OccNetError
from ..mesh import Mesh
from ..protocol import MIN_PIECE, threshold_problem
from .evaluate import POINTS_PER_BATCH, CancelCheck, Evaluator, Logits, Progress
from .marching import marching_cubes
from .mise import BASE_RESOLUTION, dense_grid, mise_grid, valid_resolutions
from .pieces import drop_small_pieces

MIN_FACES = 4  # a tetrahedron; quadric decimation to fewer leaves no mesh at all
NORMAL_STEP = 0.1  # finite-difference step for normals, in cells of the extraction grid
# Directions of a regular tetrahedron: four evaluations give the gradient (sum f(x + h d) d = 4/3 h grad f).
TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float32) / np.sqrt(3.0)

T = TypeVar("T")


@dataclass
class ExtractOptions:
    resolution: int = 128
    threshold: float = 0.5  # a probability; compared to the logits as log(t / (1 - t))
    base_resolution: int = BASE_RESOLUTION
    use_mise: bool = True
    refine_steps: int = 0
    faces: int = 0  # face budget; 0 keeps every face
    normals: bool = True
    normals_from_mesh: bool = False  # the engines set it for fields too costly to probe four times a vertex
    min_piece: float = MIN_PIECE  # loose pieces with less surface than this share of the largest are dropped

    def validate(self) -> None:
        """Reject settings with a message for the user, before any work is done."""
        resolutions = valid_resolutions(self.base_resolution)
        if self.use_mise and self.resolution not in resolutions:
            raise OccNetError(f"Resolution {self.resolution} is not supported; choose one of {resolutions}.")
        if problem := threshold_problem(self.threshold):
            raise OccNetError(problem)
        if not 0.0 <= self.min_piece <= 1.0:
            raise OccNetError(
                f"The small-piece share {self.min_piece} must lie between 0 (keep every piece) and 1 (keep only the "
                f"largest); {MIN_PIECE} drops crumbs."
            )
        if self.refine_steps < 0 or self.faces < 0:
            raise OccNetError("Refinement steps and the face budget cannot be negative.")
        if 0 < self.faces < MIN_FACES:
            raise OccNetError(
                f"A face budget of {self.faces} is too small: the smallest closed mesh has {MIN_FACES} faces. "
                f"Ask for {MIN_FACES} or more, or 0 to keep every face."
            )

    def validate_for_runtime(self) -> None:
        """`validate`, and refuse what only the PyTorch engine does (gradients, decimation), before any work."""
        self.validate()
        if self.faces or self.refine_steps:
            raise OccNetError(
                "The built-in CPU runtime keeps every face and does not refine: set the face budget and the "
                "refinement steps to 0, or use the PyTorch backend for them."
            )

    def threshold_logit(self) -> float:
        return math.log(self.threshold / (1.0 - self.threshold))


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
    logits: Logits,
    options: ExtractOptions,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    stats: ExtractStats | None = None,
    batch: int = POINTS_PER_BATCH,
) -> tuple[Mesh, ExtractStats]:
    """Mesh of the level set {sigmoid(logits) = threshold} in the canonical frame, with outward normals from
    the field's gradient. `logits` maps points (N, 3) float32 to (N,) float32; it is called with at most
    `batch` points at a time, and `cancel` is checked before each call (raising Cancelled)."""
    options.validate_for_runtime()
    stats = stats or ExtractStats()
    evaluate = Evaluator(logits, batch, progress, cancel)
    tau = options.threshold_logit()
    if options.use_mise:
        values = stats.timed(
            "evaluate", progress, mise_grid, evaluate, options.resolution, tau, options.base_resolution
        )
    else:
        values = stats.timed("evaluate", progress, dense_grid, evaluate, options.resolution)
    evaluate.check_cancel()
    mesh = stats.timed("mesh", progress, surface_mesh, values, tau, options.min_piece, stats)
    if options.normals and options.normals_from_mesh:
        mesh.normals = stats.timed("normals", progress, mesh.face_area_normals)
    elif options.normals:
        step = NORMAL_STEP * BOX_SIZE / options.resolution
        mesh.normals = stats.timed("normals", progress, field_normals, evaluate, mesh.vertices, step)
    stats.points_evaluated += evaluate.points_evaluated
    return mesh, stats


def surface_mesh(values: np.ndarray, threshold_logit: float, min_piece: float, stats: ExtractStats) -> Mesh:
    """The grid's surface without its crumbs (pieces below `min_piece` of the largest's area), counted in stats."""
    mesh, dropped = drop_small_pieces(grid_to_mesh(values, threshold_logit), min_piece)
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


def field_normals(evaluate: Evaluator, vertices: np.ndarray, step: float) -> np.ndarray:
    """Outward unit normals -grad f / |grad f| (occupancy grows inwards), the gradient by finite differences
    at the four corners of a small tetrahedron around each vertex: four evaluations a vertex, no autograd."""
    probes = (vertices[:, None, :] + np.float32(step) * TETRAHEDRON).reshape(-1, 3)
    values = evaluate(probes, stage="normals").reshape(len(vertices), 4)
    gradient = values @ TETRAHEDRON
    length = np.linalg.norm(gradient, axis=1, keepdims=True)
    return (-gradient / np.maximum(length, 1e-12)).astype(np.float32)
