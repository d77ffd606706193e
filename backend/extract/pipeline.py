"""From a torch field to a finished mesh, stage by stage, timing each stage (the options and stats are the
built-in engine's, `backend.runtime.extract`, so both engines take the same settings)."""

from __future__ import annotations

import torch

from ..device import points_per_batch
from ..mesh import Mesh
from ..runtime.extract import ExtractOptions, ExtractStats, surface_mesh
from ..runtime.mise import dense_grid, mise_grid
from .evaluate import CancelCheck, Field, Progress, TorchEvaluator
from .refine import field_normals, refine_mesh
from .simplify import simplify_mesh


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
    evaluate = TorchEvaluator(field_fn, device, points_per_batch(device), progress, cancel)
    tau = options.threshold_logit()

    def timed(stage: str, fn, *args):
        return stats.timed(stage, progress, fn, *args)

    if options.use_mise:
        values = timed("evaluate", mise_grid, evaluate, options.resolution, tau, options.base_resolution)
    else:
        values = timed("evaluate", dense_grid, evaluate, options.resolution)
    evaluate.check_cancel()
    mesh = timed("mesh", surface_mesh, values, tau, options.min_piece, stats)
    if options.faces:
        mesh = timed("simplify", simplify_mesh, mesh, options.faces)
    if options.refine_steps:
        mesh = timed("refine", refine_mesh, evaluate, mesh, options.threshold, options.refine_steps)
    if options.normals and options.normals_from_mesh:
        mesh.normals = timed("normals", mesh.face_area_normals)
    elif options.normals:
        mesh.normals = timed("normals", field_normals, evaluate, mesh.vertices)
    stats.points_evaluated += evaluate.points_evaluated
    return mesh, stats
