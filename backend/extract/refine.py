"""Using the field's gradient: vertex normals, and the paper's optional mesh refinement."""

from __future__ import annotations

import numpy as np
import torch

from ..mesh import Mesh
from .evaluate import TorchEvaluator

NORMAL_WEIGHT = 0.01  # lambda in the paper's refinement loss


def field_normals(evaluate: TorchEvaluator, vertices: np.ndarray) -> np.ndarray:
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
