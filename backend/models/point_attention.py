"""Point attention (after POCO, Boulch & Marlet, CVPR 2022): features that live on the input points themselves,
and a decoder that reads, for each query, the k nearest input points with attention weights computed from where
they lie relative to it. Detail follows the scan's own density, wherever the points are.

Every distance is in units of the cloud's spacing (`backend.inputs.neighbours`), so the same weights serve a
part, an object and a room. The feature planes of Convolutional Occupancy Networks (`triplane.py`) stay as the
coarse context: what is inside far from any point, and which side of a surface is which.
Plain torch (gather, topk, softmax): runs on CUDA, MPS and CPU, and exports to ONNX for the built-in runtime.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs.neighbours import LEVEL_THINNING, RADIUS

FAR = 1e30  # squared distance of a missing candidate
DISTANCE_SCALE = 4.0  # spacings: offsets beyond this are squashed (their direction kept, their length logged)


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, N, C) read at index (B, ...) -> (B, ..., C): whole rows of one flat table (in ONNX one Gather,
    several times faster than GatherElements on an expanded index)."""
    batch, count, channels = values.shape
    offset = (torch.arange(batch, device=index.device) * count).view(batch, *([1] * (index.dim() - 1)))
    rows = values.reshape(batch * count, channels).index_select(0, (index + offset).reshape(-1))
    return rows.view(*index.shape, channels)


def nearest_of_candidates(
    points: torch.Tensor, queries: torch.Tensor, candidates: torch.Tensor, radius: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest of each query's candidate points (indices (B, T, W), -1 for none) no farther than `radius`
    (B,), nearest first, and which of them exist (B, T, k): what `backend.inputs.neighbours.within` finds.
    Offsets are laid out coordinate first, as in `NeighbourAttention`."""
    if candidates.shape[-1] < k:
        candidates = F.pad(candidates, (0, k - candidates.shape[-1]), value=-1)
    safe = candidates.clamp_min(0)
    offsets = channels_first(gather_points(points, safe)) - queries.permute(2, 0, 1).unsqueeze(-1)
    squared = (offsets * offsets).sum(0) + (candidates < 0).to(points.dtype) * FAR
    best, which = torch.topk(squared, k, dim=2, largest=False, sorted=True)
    exists = best <= (radius * radius).view(-1, 1, 1)
    return safe.gather(2, which) * exists, exists


def channels_first(rows: torch.Tensor) -> torch.Tensor:
    """(B, T, k, C) -> (C, B, T, k). Per-neighbour tensors have a few channels and very many (query, neighbour)
    pairs; with the channels outermost every element-wise step runs along long contiguous rows: the built-in
    runtime's decoder graph runs twice as fast as with the few channels innermost (PyTorch on the CPU, the same)."""
    *outer, channels = rows.shape
    return rows.reshape(-1, channels).t().reshape(channels, *outer)


def encode_offset(offset: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Offsets in spacings, their 3 coordinates along `dim` -> 4 there: the offset squashed to a bounded length,
    and its log length."""
    length = offset.norm(dim=dim, keepdim=True)
    return torch.cat([offset / (1.0 + length / DISTANCE_SCALE), torch.log1p(length)], dim=dim)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(cin, cout))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PointFeatures(nn.Module):
    """Per-point features (B, N, F) at two scales: an EdgeConv-style layer over each point's k nearest (offsets
    in spacings, normals where the scan has them), a second over the coarser level's points and their k nearest
    (offsets in that level's spacings: the curvature of a tube, which side of a wall is which), handed back to
    each point from its nearest coarse point; and the feature planes read at the point."""

    def __init__(self, features: int, plane_features: int) -> None:
        super().__init__()
        self.edge = _mlp([4 + 3 + 3 + 1, features, features])
        self.coarse = _mlp([2 * features + 4, features, features])
        self.context = nn.Linear(plane_features, features)
        self.out = _mlp([3 * features, features, features])

    def forward(
        self,
        points: torch.Tensor,
        normals: torch.Tensor,
        has_normals: torch.Tensor,
        neighbours: torch.Tensor,
        coarse_neighbours: torch.Tensor,
        parents: torch.Tensor,
        unit: torch.Tensor,
        plane_features: torch.Tensor,
    ) -> torch.Tensor:
        """points, normals (B, N, 3); has_normals (B,) 0/1; neighbours (B, N, k); coarse_neighbours (B, N1, k)
        among the first N1 points; parents (B, N) into them; unit (B,) the spacing; plane_features (B, N, C)."""
        k = neighbours.shape[-1]
        flag = has_normals.view(-1, 1, 1, 1).to(points.dtype)
        offset = (gather_points(points, neighbours) - points.unsqueeze(2)) / unit.view(-1, 1, 1, 1)
        normals = normals * flag[..., 0]
        edge = torch.cat(
            [
                encode_offset(offset),
                gather_points(normals, neighbours),
                normals.unsqueeze(2).expand(-1, -1, k, -1),
                flag.expand(*offset.shape[:3], 1),
            ],
            dim=-1,
        )
        fine = self.edge(edge).amax(dim=2)
        size = coarse_neighbours.shape[1]
        centres, own = points[:, :size], fine[:, :size]
        coarse_unit = unit.view(-1, 1, 1, 1) * math.sqrt(LEVEL_THINNING)
        coarse_offset = (gather_points(centres, coarse_neighbours) - centres.unsqueeze(2)) / coarse_unit
        read = gather_points(own, coarse_neighbours)
        coarse_edge = torch.cat(
            [read - own.unsqueeze(2), own.unsqueeze(2).expand_as(read), encode_offset(coarse_offset)], -1
        )
        coarse = self.coarse(F.relu(coarse_edge)).amax(dim=2)
        handed = gather_points(coarse, parents)
        return self.out(F.relu(torch.cat([fine, handed, self.context(plane_features)], dim=-1)))


class NeighbourAttention(nn.Module):
    """What a query reads from its k nearest points: (B, T, V).

    Each point carries, computed once from its features (`point_terms`): values, a few directions, and a score
    bias per head. A neighbour's geometry, seen from the query, is its offset (in spacings) and the offset's
    projections on the point's directions (learned normals and tangents: the query's signed distance to the
    point's local surface). Each head weighs the neighbours by a softmax of (bias + a linear score of that
    geometry) beside a learned "nothing" score, each neighbour's share shrunk by a window that falls smoothly to
    zero at the search radius; it returns the weighted values plus a linear map of the weighted geometry. So the
    field is continuous where a neighbour enters or leaves the radius (a hard cut left floating crumbs a radius
    away from scans), and a query with no neighbours reads zeros. All per-neighbour work is a few dozen
    multiply-adds, so millions of queries stay cheap.
    """

    def __init__(self, features: int, values: int, heads: int, directions: int) -> None:
        super().__init__()
        if values % heads:
            raise ValueError(f"the values read ({values}) must divide among the attention heads ({heads})")
        self.heads, self.directions, self.values = heads, directions, values
        self.terms = nn.Linear(features, values + 3 * directions + heads)
        self.score = nn.Linear(directions + 4, heads)
        self.geometry = nn.Linear(heads * (directions + 4), values)
        self.sink = nn.Parameter(torch.zeros(heads))  # the score of reading nothing (a zero value)

    def point_terms(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each point's values (B, N, V), directions (B, N, 3 D) and score biases (B, N, H), as separate tables:
        each is gathered and laid out channel first on its own, with no split of a wider table after."""
        parts = self.terms(features).split([self.values, 3 * self.directions, self.heads], dim=-1)
        return tuple(part.contiguous() for part in parts)

    def forward(
        self,
        points: torch.Tensor,
        terms: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        unit: torch.Tensor,
        queries: torch.Tensor,
        neighbours: torch.Tensor,
        exists: torch.Tensor,
    ) -> torch.Tensor:
        """points (B, N, 3) and their `point_terms`; unit (B,) this level's spacing; queries (B, T, 3); neighbours
        (B, T, k) and which exist (B, T, k). Per-neighbour tensors are (C, B, T, k) (see `channels_first`)."""
        batch, count, k = neighbours.shape
        f, d, h = self.values, self.directions, self.heads
        place, values, directions, bias = (channels_first(gather_points(t, neighbours)) for t in (points, *terms))
        offset = (queries.permute(2, 0, 1).unsqueeze(-1) - place) / unit.view(1, -1, 1, 1)
        projected = (directions.view(d, 3, batch, count, k) * offset).sum(1)
        geometry = torch.cat([projected, encode_offset(offset, dim=0)], dim=0)  # (D + 4, B, T, k)
        size = geometry.shape[0]
        scores = (self.score.weight @ geometry.reshape(size, -1)).view(h, batch, count, k)
        present = exists.unsqueeze(0)
        scores = (scores + self.score.bias.view(h, 1, 1, 1) + bias).masked_fill(~present, -1e9)
        window = (1.0 - (offset * offset).sum(0, keepdim=True) / RADIUS**2).clamp_min(0.0) ** 2
        sink = self.sink.view(h, 1, 1, 1)
        top = torch.maximum(scores.amax(dim=-1, keepdim=True), sink)
        raw = torch.exp(scores - top) * window * present.to(scores.dtype)
        weights = (raw / (raw.sum(dim=-1, keepdim=True) + torch.exp(sink - top))).unsqueeze(1)  # (H, 1, B, T, k)
        read_values = (weights * values.view(h, f // h, batch, count, k)).sum(-1).reshape(f, -1)
        read_geometry = (weights * geometry.unsqueeze(0)).sum(-1).reshape(h * size, -1)
        result = read_values + self.geometry.weight @ read_geometry + self.geometry.bias.unsqueeze(-1)
        return result.t().reshape(batch, count, f)


class DensityGate(nn.Module):
    """What the queries read, scaled per channel by how dense the cloud is (its spacing in the canonical unit
    box): the attention reads are measured in spacings, so without this the decoder cannot tell 300 points, whose
    neighbours are a tenth of the object apart, from 30,000, and trusts both alike. Starts as the identity (zero
    weights), so a model initialised from one without it computes what that one did."""

    REFERENCE = 0.05  # the spacing of about 3,000 points on an object filling the box: the gate's input is 0 there

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Linear(1, channels)
        nn.init.zeros_(self.scale.weight)
        nn.init.zeros_(self.scale.bias)

    def forward(self, read: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
        """read (B, T, C); unit (B,) the cloud's spacing."""
        density = torch.log(unit / self.REFERENCE).view(-1, 1, 1)
        return read * (1.0 + self.scale(density))
