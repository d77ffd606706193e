"""A small 2-D U-Net (Ronneberger et al. 2015) that spreads pooled point features across a feature plane."""

from __future__ import annotations

import torch
from torch import nn


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
    )


class UNet(nn.Module):
    """(B, C, R, R) -> (B, C, R, R); `depth` levels, the first with `filters` channels, doubling per level.

    R must be divisible by 2^(depth - 1).
    """

    def __init__(self, channels: int, filters: int, depth: int) -> None:
        super().__init__()
        widths = [filters * 2**i for i in range(depth)]
        inputs = [channels, *widths[:-1]]
        self.down = nn.ModuleList(_double_conv(cin, cout) for cin, cout in zip(inputs, widths, strict=True))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth - 1))
        self.merge = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in range(depth - 1))
        self.out = nn.Conv2d(widths[0], channels, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips.pop()], dim=1))
        return self.out(x)
