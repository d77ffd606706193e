"""Point-cloud encoder with local pooling (Peng et al., Convolutional Occupancy Networks, ECCV 2020).

A ResNet-PointNet whose pooling between blocks is a max over the points sharing a plane cell rather than over
the whole cloud, so features describe neighbourhoods; the last features are averaged into three feature planes
and a U-Net spreads them across each plane. Plain torch (`scatter_reduce_`, `index_add_`): runs on CUDA, MPS
and CPU with nothing to compile. Every input point contributes, whatever the cloud's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pointnet import ResnetBlockFC
from .triplane import PLANES, cell_index
from .unet import UNet


def pool_max(features: torch.Tensor, index: torch.Tensor, cells: int) -> torch.Tensor:
    """(B, N, F): for each point, the max of `features` over the points in its cell (index (B, N) < cells)."""
    batch, _, width = features.shape
    expanded = index.unsqueeze(-1).expand(-1, -1, width)
    pooled = features.new_zeros(batch, cells, width)
    pooled.scatter_reduce_(1, expanded, features, reduce="amax", include_self=False)
    return pooled.gather(1, expanded)


def pool_mean(features: torch.Tensor, index: torch.Tensor, resolution: int) -> torch.Tensor:
    """(B, F, R, R): the mean of `features` (B, N, F) over the points in each cell; empty cells are zero."""
    batch, _, width = features.shape
    cells = resolution * resolution
    flat = (index + cells * torch.arange(batch, device=index.device).unsqueeze(1)).reshape(-1)
    sums = features.new_zeros(batch * cells, width).index_add_(0, flat, features.reshape(-1, width))
    counts = features.new_zeros(batch * cells).index_add_(0, flat, features.new_ones(flat.shape))
    mean = sums / counts.clamp_min(1.0).unsqueeze(1)
    return mean.view(batch, resolution, resolution, width).permute(0, 3, 1, 2)


class LocalPoolPointNet(nn.Module):
    """(B, N, 3) canonical points -> (B, 3, C, R, R) feature planes."""

    def __init__(
        self, features: int, hidden: int, blocks: int, resolution: int, unet_depth: int, unet_filters: int
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden, hidden) for _ in range(blocks))
        self.fc_c = nn.Linear(hidden, features)
        self.unet = UNet(features, unet_filters, unet_depth)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        indices = [cell_index(points, axes, self.resolution) for axes in PLANES]
        cells = self.resolution**2
        x = self.blocks[0](self.fc_pos(points))
        for block in self.blocks[1:]:
            pooled = sum(pool_max(x, index, cells) for index in indices)
            x = block(torch.cat([x, pooled], dim=2))
        c = self.fc_c(F.relu(x))
        planes = torch.stack([pool_mean(c, index, self.resolution) for index in indices], dim=1)
        batch, n_planes = planes.shape[:2]
        refined = self.unet(planes.flatten(0, 1))  # one U-Net shared by the three planes
        return refined.view(batch, n_planes, *refined.shape[1:])
