"""Occupancy decoder on feature planes: each query point reads the planes where it lies and adds what it reads
to every block's input (Convolutional Occupancy Networks' decoder), so detail is local, not in one global code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pointnet import ResnetBlockFC
from .triplane import sample_planes


class LocalDecoder(nn.Module):
    """f(p, planes) -> logits; p is (B, T, 3), planes (B, 3, C, R, R), the result (B, T).

    With `extra` > 0 (the point-attention model) each block also adds what the query read from its nearest input
    points (one projection, shared by the blocks); it starts at zero weight, so a decoder trained without it
    starts out unchanged."""

    def __init__(self, features: int, hidden: int, blocks: int, extra: int = 0) -> None:
        super().__init__()
        self.fc_p = nn.Linear(3, hidden)
        self.fc_c = nn.ModuleList(nn.Linear(features, hidden) for _ in range(blocks))
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden, hidden) for _ in range(blocks))
        self.fc_out = nn.Linear(hidden, 1)
        self.fc_z = nn.Linear(extra, hidden) if extra else None
        if self.fc_z is not None:
            nn.init.zeros_(self.fc_z.weight)
            nn.init.zeros_(self.fc_z.bias)

    def forward(self, p: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        return self.decode_features(p, sample_planes(planes, p))

    def decode_features(self, p: torch.Tensor, c: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T) of points p given the plane features c (B, T, C) already read at them, and (with
        `extra`) what they read from their neighbours, z (B, T, extra)."""
        x = self.fc_p(p)
        read = self.fc_z(z) if self.fc_z is not None else 0
        for fc_c, block in zip(self.fc_c, self.blocks, strict=True):
            x = block(x + fc_c(c) + read)
        return self.fc_out(F.relu(x)).squeeze(-1)
