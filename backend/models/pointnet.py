"""Point-cloud encoder: the paper's ResNet-PointNet with max pooling between blocks."""

import torch
import torch.nn.functional as F
from torch import nn


class ResnetBlockFC(nn.Module):
    def __init__(self, size_in: int, size_out: int) -> None:
        super().__init__()
        hidden = min(size_in, size_out)
        self.fc_0 = nn.Linear(size_in, hidden)
        self.fc_1 = nn.Linear(hidden, size_out)
        self.shortcut = nn.Linear(size_in, size_out, bias=False) if size_in != size_out else None
        nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = self.fc_1(F.relu(self.fc_0(F.relu(x))))
        return (self.shortcut(x) if self.shortcut is not None else x) + dx


class ResnetPointNet(nn.Module):
    """(B, N, 3) points -> (B, c_dim) code; invariant to point order."""

    def __init__(self, c_dim: int, hidden: int, blocks: int) -> None:
        super().__init__()
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden, hidden) for _ in range(blocks))
        self.fc_c = nn.Linear(hidden, c_dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](self.fc_pos(points))
        for block in self.blocks[1:]:
            pooled = x.max(dim=1, keepdim=True).values.expand_as(x)
            x = block(torch.cat([x, pooled], dim=2))
        return self.fc_c(F.relu(x.max(dim=1).values))
