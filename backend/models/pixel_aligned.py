"""The view model (after PIFu and DISN, for any object): a 2-D CNN turns each reference picture into a feature map;
each query point is projected into every view, reads that view's features where it lands and adds its depth along
the view; the views' readings are pooled and decoded to occupancy. A point outside any view's silhouette is outside
(carving), so the silhouettes hold exactly; the network's job is depth, hollows and the sides no view shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..surface.silhouettes import SHEET
from .unet import UNet

CARVE = 12.0  # the logit a point gets from the silhouettes alone: +CARVE well inside every one, -CARVE outside one
DEPTH_SLOPE = 100.0  # a lone picture's depth limit: logits fall this fast per crop half-width beyond it
DEPTH_FREQUENCIES = (1.0, 2.0, 4.0, 8.0)  # sines and cosines of the depth at these multiples of pi


class ViewEncoder(nn.Module):
    """(N, 4, S, S) pictures (RGB times the mask, then the mask) -> (N, C, S, S) pixel features."""

    def __init__(self, features: int, filters: int, depth: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, features, 3, padding=1)
        self.unet = UNet(features, filters, depth)

    def forward(self, pictures: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(pictures - 0.5))
        return x + self.unet(x)


class _Block(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc_0 = nn.Linear(hidden, hidden)
        self.fc_1 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc_1(F.relu(self.fc_0(F.relu(x))))


class PixelAlignedDecoder(nn.Module):
    """Logits (B, T) of queries (B, T, 3) given V views' features (B, V, C, S, S), masks (B, V, 1, M, M), sheets
    (B, V, 3, M, M: weight, depth and half-thickness, `backend.surface.silhouettes`) and affine maps (B, V, 3, 4)
    from the queries' frame to each view's grid coordinates and depth (`backend.inputs.views`)."""

    def __init__(
        self, features: int, hidden: int, blocks: int, several_shift: float = 0.0, lone_by_sheet: bool = False
    ) -> None:
        """`several_shift`: added to the network's logit given several pictures, the calibration that matches its
        threshold to the one it is given with one (`ModelConfig.views_shift`). `lone_by_sheet`: a lone picture's
        result is its sheet alone, the silhouette inflated as thick as a thickness head judged it
        (`backend.models.thickness`), not the network's guess."""
        super().__init__()
        self.several_shift = several_shift
        self.lone_by_sheet = lone_by_sheet
        self.read = nn.Linear(features + 2 + 2 * len(DEPTH_FREQUENCIES), hidden)
        self.per_view = nn.Sequential(*(_Block(hidden) for _ in range(blocks // 2)))
        self.joint = nn.Sequential(*(_Block(hidden) for _ in range(blocks - blocks // 2)))
        self.out = nn.Linear(hidden, 1)
        self.register_buffer("frequencies", torch.tensor(DEPTH_FREQUENCIES) * torch.pi, persistent=False)

    def forward(
        self,
        queries: torch.Tensor,
        features: torch.Tensor,
        masks: torch.Tensor,
        sheets: torch.Tensor,
        affines: torch.Tensor,
        by_gather: bool = False,
    ) -> torch.Tensor:
        """`by_gather`: read the maps with `bilinear_by_gather` (the ONNX graph's way) rather than grid_sample."""
        b, v = features.shape[:2]
        t = queries.shape[1]
        projected = torch.einsum("bvij,btj->bvti", affines[..., :3], queries) + affines[..., 3].unsqueeze(2)
        grid = projected[..., :2].reshape(b * v, t, 2)
        sample = bilinear_by_gather if by_gather else bilinear
        read = sample(features.flatten(0, 1), grid).reshape(b, v, t, features.shape[2])
        silhouettes = sample(torch.cat([masks, sheets], dim=2).flatten(0, 1), grid).reshape(b, v, t, 4)
        inside, weight, sheet_depth, sheet_half = silhouettes.unbind(-1)
        depth = projected[..., 2:]
        angles = depth * self.frequencies
        x = torch.cat([read, depth, inside.unsqueeze(-1), angles.sin(), angles.cos()], dim=-1)
        x = self.per_view(self.read(x)).mean(dim=1)
        lone = (torch.ones_like(affines[:, :, 0, 0]).sum(dim=1, keepdim=True) == 1).to(depth.dtype)  # (B, 1)
        logits = self.out(F.relu(self.joint(x))).squeeze(-1) + self.several_shift * (1.0 - lone)
        if self.lone_by_sheet:
            logits = torch.where(lone > 0, torch.full_like(logits, -CARVE), logits)
        carve = CARVE * (2.0 * inside.min(dim=1).values - 1.0)
        # where a silhouette pixel would show nothing, its sheet keeps it; its peak is the carving's, so the two
        # surfaces meet at the silhouette's edge (a lower peak pulls the extracted rim a fraction of a cell inward)
        off_sheet = (depth[..., 0] - sheet_depth).abs()
        sheet = torch.minimum(CARVE * (2.0 * weight - 1.0), CARVE / SHEET * (sheet_half - off_sheet))
        kept = torch.minimum(torch.maximum(logits, sheet.max(dim=1).values), carve)
        # one picture bounds no depth: the object reaches as deep as its crop is wide, on both sides of the plane
        # (the frame's box around an oblique picture holds far more, where the network was never asked)
        limit = 1.0 + 1e6 * (1.0 - lone)
        reach = DEPTH_SLOPE * (limit.unsqueeze(-1) - depth.squeeze(-1).abs()).min(dim=1).values
        return torch.minimum(kept, reach)


def bilinear(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(N, T, C): maps (N, C, R, R) read bilinearly at grid points (N, T, 2) (x across, y down, -1 and 1 the outer
    pixels' edges), beyond the edge as at it: outside a picture's crop, its features and its (empty) mask's
    edge."""
    read = F.grid_sample(maps, grid.unsqueeze(2), mode="bilinear", padding_mode="border", align_corners=False)
    return read.squeeze(3).transpose(1, 2)


def bilinear_by_gather(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`bilinear` as one gather and a small matrix product, which ONNX Runtime runs several times faster than its
    GridSample (as `backend.models.triplane.sample_planes_by_gather`)."""
    n, channels, resolution, _ = maps.shape
    cells = resolution * resolution
    rows = maps.flatten(2).transpose(1, 2).reshape(n * cells, channels)
    pixel = (((grid + 1.0) * resolution - 1.0) / 2.0).clamp(0.0, resolution - 1.0)
    low = pixel.floor()
    frac = pixel - low
    low = low.long()
    high = (low + 1).clamp_max(resolution - 1)
    first = (torch.arange(n, device=grid.device) * cells).unsqueeze(1)
    indices, weights = [], []
    for y, wy in ((low[..., 1], 1.0 - frac[..., 1]), (high[..., 1], frac[..., 1])):
        for x, wx in ((low[..., 0], 1.0 - frac[..., 0]), (high[..., 0], frac[..., 0])):
            indices.append(first + y * resolution + x)
            weights.append(wy * wx)
    corners = rows.index_select(0, torch.stack(indices, -1).reshape(-1)).view(n, -1, 4, channels)
    return (torch.stack(weights, -1).unsqueeze(-2) @ corners).squeeze(-2)
