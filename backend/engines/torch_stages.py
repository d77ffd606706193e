"""What extraction does with PyTorch: batches of the field as tensors on the model's device, and the stages that
need them: vertex normals from the field's gradient, the paper's mesh refinement, and decimation to a face budget
(trimesh over fast-simplification)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import OccNetError
from ..surface.field import CancelCheck, Evaluator, Progress
from ..surface.mesh import Mesh
from ..surface.pipeline import Stages

TorchField = Callable[[torch.Tensor], torch.Tensor]
"""Occupancy logits of points (N, 3) in the canonical frame, as an (N,) tensor."""

NORMAL_WEIGHT = 0.01  # lambda in the paper's refinement loss


class TorchEvaluator(Evaluator):
    """Batches go to the field as tensors on `device`; refinement and normals use `field` and `device` too."""

    def __init__(
        self,
        field: TorchField,
        device: torch.device,
        batch: int,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
    ) -> None:
        super().__init__(field, batch, progress, cancel)
        self.device = device

    @torch.no_grad()
    def logits(self, points: np.ndarray) -> np.ndarray:
        return self.field(torch.from_numpy(points).to(self.device)).float().cpu().numpy()


class TorchStages(Stages):
    """Decimation, refinement, and normals from the gradient (exact, one backward pass a batch)."""

    simplifies = True
    refines = True

    def simplify(self, mesh: Mesh, faces: int) -> Mesh:
        return simplify_mesh(mesh, faces)

    def refine(self, evaluate: Evaluator, mesh: Mesh, threshold: float, steps: int) -> Mesh:
        return refine_mesh(_torch(evaluate), mesh, threshold, steps)

    def normals(self, evaluate: Evaluator, vertices: np.ndarray, step: float) -> np.ndarray:
        return gradient_normals(_torch(evaluate), vertices)


def _torch(evaluate: Evaluator) -> TorchEvaluator:
    if not isinstance(evaluate, TorchEvaluator):
        raise TypeError("the PyTorch stages need the PyTorch engine's evaluator")
    return evaluate


def simplify_mesh(mesh: Mesh, faces: int) -> Mesh:
    if faces <= 0 or len(mesh.faces) <= faces:
        return mesh
    try:
        simplified = mesh.to_trimesh().simplify_quadric_decimation(face_count=faces)
    except ImportError as exc:
        raise OccNetError(
            "Simplification needs the 'fast-simplification' package: pip install fast-simplification"
        ) from exc
    return Mesh(simplified.vertices.astype(np.float32), simplified.faces)


def gradient_normals(evaluate: TorchEvaluator, vertices: np.ndarray) -> np.ndarray:
    """Outward unit normals: occupancy grows inwards, so the normal is -grad f / |grad f|."""
    out = np.empty_like(vertices, dtype=np.float32)
    for i in range(0, len(vertices), evaluate.batch):
        evaluate.check_cancel()
        p = torch.from_numpy(np.ascontiguousarray(vertices[i : i + evaluate.batch])).to(evaluate.device)
        p.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(evaluate.field(p).sum(), p)
        out[i : i + len(p)] = (-grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)).cpu().numpy()
        evaluate.points_evaluated += len(p)
    return out


def refine_mesh(evaluate: TorchEvaluator, mesh: Mesh, threshold: float, steps: int, lr: float = 1e-4) -> Mesh:
    """Move vertices so random points on each face sit on the level set and faces align with the gradient."""
    device = evaluate.device
    v = torch.from_numpy(mesh.vertices.copy()).to(device).requires_grad_(True)
    faces = torch.from_numpy(mesh.faces.astype(np.int64)).to(device)
    optimizer = torch.optim.RMSprop([v], lr=lr)
    generator = torch.Generator(device="cpu").manual_seed(0)
    for step in range(steps):
        evaluate.check_cancel()
        tri = v[faces]
        points = (tri * _uniform_barycentric(len(faces), generator).to(device).unsqueeze(-1)).sum(1)
        normal = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
        normal = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-10)
        with torch.enable_grad():
            logits = evaluate.field(points)
            (grad,) = torch.autograd.grad(logits.sum(), points, create_graph=True)
            target = -grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-10)
            loss = (torch.sigmoid(logits) - threshold).pow(2).mean()
            loss = loss + NORMAL_WEIGHT * (normal - target).pow(2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        evaluate.points_evaluated += len(points)
        if evaluate.progress is not None:
            evaluate.progress("refine", (step + 1) / steps)
    return Mesh(v.detach().cpu().numpy(), mesh.faces)


def _uniform_barycentric(count: int, generator: torch.Generator) -> torch.Tensor:
    """Weights (count, 3) of points uniform on a triangle: fold the unit square along its diagonal."""
    uv = torch.rand((count, 2), generator=generator)
    flip = uv.sum(1) > 1
    uv[flip] = 1 - uv[flip]
    return torch.cat([1 - uv.sum(1, keepdim=True), uv], dim=1)
