"""Voxel encoder: the paper's 3-D CNN over a 32^3 occupancy grid."""

import torch
import torch.nn.functional as F
from torch import nn


class VoxelEncoder(nn.Module):
    """(B, R, R, R) grid -> (B, c_dim) code; R is 32, halved four times to 2."""

    def __init__(self, c_dim: int, resolution: int = 32) -> None:
        super().__init__()
        self.conv_in = nn.Conv3d(1, 32, 3, padding=1)
        self.convs = nn.ModuleList(
            nn.Conv3d(cin, cout, 3, padding=1, stride=2) for cin, cout in ((32, 64), (64, 128), (128, 256), (256, 512))
        )
        side = resolution // 16
        self.fc = nn.Linear(512 * side**3, c_dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(grid.unsqueeze(1))
        for conv in self.convs:
            x = conv(F.relu(x))
        return self.fc(F.relu(x).flatten(1))
