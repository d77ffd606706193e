"""From a field to a finished mesh, stage by stage, timing each stage."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..device import points_per_batch
from ..errors import OccNetError
from ..mesh import Mesh
from ..protocol import threshold_problem
from .evaluate import CancelCheck, Evaluator, Field, Progress
from .marching import grid_to_mesh
from .mise import BASE_RESOLUTION, dense_grid, mise_grid, valid_resolutions
from .refine import field_normals, refine_mesh
from .simplify import simplify_mesh

MIN_FACES = 4  # a tetrahedron; quadric decimation to fewer leaves no mesh at all


@dataclass
class ExtractOptions:
    resolution: int = 128
    threshold: float = 0.5  # a probability; compared to the logits as log(t / (1 - t))
    base_resolution: int = BASE_RESOLUTION
    use_mise: bool = True
    refine_steps: int = 0
    faces: int = 0  # face budget; 0 keeps every face
    normals: bool = True

    def validate(self) -> None:
        """Reject settings with a message for the user, before any work is done."""
        resolutions = valid_resolutions(self.base_resolution)
        if self.use_mise and self.resolution not in resolutions:
            raise OccNetError(f"Resolution {self.resolution} is not supported; choose one of {resolutions}.")
        if problem := threshold_problem(self.threshold):
            raise OccNetError(problem)
        if self.refine_steps < 0 or self.faces < 0:
            raise OccNetError("Refinement steps and the face budget cannot be negative.")
        if 0 < self.faces < MIN_FACES:
            raise OccNetError(
                f"A face budget of {self.faces} is too small: the smallest closed mesh has {MIN_FACES} faces. "
                f"Ask for {MIN_FACES} or more, or 0 to keep every face."
            )

    def threshold_logit(self) -> float:
        return math.log(self.threshold / (1.0 - self.threshold))


@dataclass
class ExtractStats:
    points_evaluated: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"points_evaluated": self.points_evaluated, "seconds": dict(self.seconds)}


def extract_mesh(
    field_fn: Field,
    options: ExtractOptions,
    device: torch.device | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    stats: ExtractStats | None = None,
) -> tuple[Mesh, ExtractStats]:
    """Mesh of the level set {sigmoid(field) = threshold}, in the canonical frame."""
    options.validate()
    device = device or torch.device("cpu")
    stats = stats or ExtractStats()
    evaluate = Evaluator(field_fn, device, points_per_batch(device), progress, cancel)
    tau = options.threshold_logit()

    def timed(stage: str, fn, *args):
        start = time.perf_counter()
        if progress is not None:
            progress(stage, 0.0)
        result = fn(*args)
        stats.seconds[stage] = stats.seconds.get(stage, 0.0) + time.perf_counter() - start
        return result

    if options.use_mise:
        values = timed("evaluate", mise_grid, evaluate, options.resolution, tau, options.base_resolution)
    else:
        values = timed("evaluate", dense_grid, evaluate, options.resolution)
    evaluate.check_cancel()
    mesh = timed("mesh", grid_to_mesh, values, tau)
    if options.faces:
        mesh = timed("simplify", simplify_mesh, mesh, options.faces)
    if options.refine_steps:
        mesh = timed("refine", refine_mesh, evaluate, mesh, options.threshold, options.refine_steps)
    if options.normals:
        mesh.normals = timed("normals", field_normals, evaluate, mesh.vertices)
    stats.points_evaluated += evaluate.points_evaluated
    return mesh, stats
