"""A lone picture's depth: a 2-D U-Net reads the picture and gives every pixel the depth of the object's front and
back there (towards the viewer, in crop half-widths from the picture's plane). One picture shows no depth, so a
network must guess it; guessed per pixel from the silhouette's shape and the shading, it follows a rounded part,
a flat board and a deep box alike, where the pixel-aligned network, asked point by point, learned little beyond
an average thickness (`backend.surface.silhouettes` turns the two depths into the result's sheet)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .unet import UNet


class ViewDepth(nn.Module):
    """(N, 4, S, S) pictures (RGB times the mask, then the mask) -> (N, 2, S, S) front and back depths (front >=
    back)."""

    def __init__(self, filters: int, depth: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, filters, 3, padding=1)
        self.unet = UNet(filters, filters, depth)
        self.head = nn.Conv2d(filters, 2, 1)

    def forward(self, pictures: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(pictures - 0.5))
        middle, half = self.head(F.relu(x + self.unet(x))).unbind(1)
        half = F.softplus(half)
        return torch.stack([middle + half, middle - half], dim=1)
