"""How thick a lone picture's object is. One picture shows no depth, and the pixel-aligned network, asked point by
point, learned little beyond an average thickness: on held-out meshes its one-picture results scored below the
silhouette merely inflated round (`backend.surface.silhouettes.inflation`). So a lone picture's result is that
inflation, and this head judges how far to scale it: a small CNN reads the picture (outline and shading) and
scores each of THICKNESS_SCALES, trained towards the scales that gave each training picture's shape its best IoU
(`backend.train_thickness`); `backend.surface.silhouettes.judged_scale` turns the scores into one scale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..surface.silhouettes import THICKNESS_SCALES


class ThicknessHead(nn.Module):
    """(N, 4, S, S) pictures (RGB times the mask, then the mask) -> (N, len(THICKNESS_SCALES)) logits."""

    def __init__(self, width: int) -> None:
        super().__init__()
        widths = [4, width // 2, width, 2 * width, 2 * width, 2 * width]
        steps = zip(widths[:-1], widths[1:], strict=True)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in steps)
        self.score = nn.Sequential(nn.Linear(4 * width, 64), nn.ReLU(), nn.Linear(64, len(THICKNESS_SCALES)))

    def forward(self, pictures: torch.Tensor) -> torch.Tensor:
        x = pictures - 0.5
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.score(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
