"""Three axis-aligned feature planes (XZ, XY, YZ) over the canonical box: where a point falls, and what it reads.

Shared by the encoder (which pools point features into plane cells) and the decoder (which samples the
planes bilinearly at each query point), so both agree on the mapping from the box to plane pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import BOX_SIZE

PLANES = ((0, 2), (0, 1), (1, 2))  # XZ, XY, YZ: the axes each plane spans
_MARGIN = 1e-3  # points on the box's faces stay inside the last cell


def plane_coordinates(points: torch.Tensor, axes: tuple[int, int]) -> torch.Tensor:
    """(B, N, 2) in [0, 1): the point's position across one plane; points outside the box clamp to its edge."""
    uv = points[..., list(axes)] / (BOX_SIZE + _MARGIN) + 0.5
    return uv.clamp(0.0, 1.0 - 1e-6)


def cell_index(points: torch.Tensor, axes: tuple[int, int], resolution: int) -> torch.Tensor:
    """(B, N) flat index (row-major, v then u) of the plane cell under each point."""
    cell = (plane_coordinates(points, axes) * resolution).long()
    return cell[..., 1] * resolution + cell[..., 0]


def sample_planes(planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, N, C): the sum of the three planes' features (B, 3, C, R, R) read bilinearly at points (B, N, 3)."""
    features = 0
    for i, axes in enumerate(PLANES):
        grid = (2.0 * plane_coordinates(points, axes) - 1.0).unsqueeze(1)  # (B, 1, N, 2), x = u, y = v
        sampled = F.grid_sample(planes[:, i], grid, mode="bilinear", padding_mode="border", align_corners=False)
        features = features + sampled.squeeze(2)
    return features.transpose(1, 2)


def sample_planes_by_gather(planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """`sample_planes` written as one gather and one small matrix product: the same bilinear read with border
    padding (equal up to float rounding). The ONNX export uses it: ONNX Runtime's GridSample is several times
    slower, while in torch grid_sample is the faster of the two."""
    batch, n_planes, channels, resolution, _ = planes.shape
    cells = resolution * resolution
    rows = planes.flatten(3).transpose(2, 3).reshape(batch * n_planes * cells, channels)  # one row per plane pixel
    indices, weights = [], []
    for i, axes in enumerate(PLANES):
        grid = 2.0 * plane_coordinates(points, axes) - 1.0
        pixel = (((grid + 1.0) * resolution - 1.0) / 2.0).clamp(0.0, resolution - 1.0)  # grid_sample's border rule
        low = pixel.floor()
        frac = pixel - low
        low = low.long()
        high = (low + 1).clamp_max(resolution - 1)
        first = ((torch.arange(batch, device=points.device) * n_planes + i) * cells).unsqueeze(1)  # (B, 1)
        for v, wv in ((low[..., 1], 1.0 - frac[..., 1]), (high[..., 1], frac[..., 1])):
            for u, wu in ((low[..., 0], 1.0 - frac[..., 0]), (high[..., 0], frac[..., 0])):
                indices.append(first + v * resolution + u)
                weights.append(wv * wu)
    corners = rows.index_select(0, torch.stack(indices, -1).reshape(-1)).view(batch, -1, len(indices), channels)
    return (torch.stack(weights, -1).unsqueeze(-2) @ corners).squeeze(-2)  # (B, N, 1, 12) @ (B, N, 12, C)
