"""Occupancy decoder on feature planes: each query point reads the planes where it lies and adds what it reads
to every block's input (Convolutional Occupancy Networks' decoder), so detail is local, not in one global code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pointnet import ResnetBlockFC
from .triplane import sample_planes


class LocalDecoder(nn.Module):
    """f(p, planes) -> logits; p is (B, T, 3), planes (B, 3, C, R, R), the result (B, T)."""

    def __init__(self, features: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.fc_p = nn.Linear(3, hidden)
        self.fc_c = nn.ModuleList(nn.Linear(features, hidden) for _ in range(blocks))
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden, hidden) for _ in range(blocks))
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, p: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        return self.decode_features(p, sample_planes(planes, p))

    def decode_features(self, p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Logits (B, T) of points p given the plane features c (B, T, C) already read at them."""
        x = self.fc_p(p)
        for fc_c, block in zip(self.fc_c, self.blocks, strict=True):
            x = block(x + fc_c(c))
        return self.fc_out(F.relu(x)).squeeze(-1)
