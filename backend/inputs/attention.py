"""What the point-attention model reads of a cloud, prepared on numpy for both engines and for training: the
canonical points in random order (so the first N / 16^l thin them evenly), their normals when the scan has them,
each point's nearest points, the coarser level's points' nearest among themselves and each point's nearest of
them (features at two scales), the spacing that measures every neighbourhood, and the thinner cloud the feature
planes see."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ModelConfig
from ..surface.frame import Frame
from .neighbours import level_size, nearest, spacing
from .pointcloud import normalize_cloud, thin_indices


@dataclass
class PointAttentionInput:
    points: np.ndarray  # (N, 3) float32, canonical, random order
    normals: np.ndarray  # (N, 3) float32, unit length; zeros when the cloud has none
    has_normals: bool
    neighbours: np.ndarray  # (N, k) int64, nearest first (each point is its own first)
    coarse_neighbours: np.ndarray  # (N1, k) int64: the first N1 points' nearest among themselves (level 1)
    parents: np.ndarray  # (N,) int64: each point's nearest of the first N1
    unit: float  # the spacing, in the canonical frame
    plane_points: np.ndarray  # (P, 3) float32: the cloud thinned to config.plane_points, for the feature planes
    source_points: int  # points in the source, before anything was dropped or thinned
    dropped: int  # non-finite or stray points left out
    cap: int  # the most points the model reads (config.n_points)
    estimated: float | None = None  # the scan had no normals: the share of points `backend.inputs.normals` gave one

    def summary(self) -> dict:
        """What became of the source's points, for the stats a reconstruction reports."""
        summary = {"points": self.source_points, "used": len(self.points), "dropped": self.dropped}
        if self.estimated is not None:
            summary.update(normals="estimated", normals_share=round(self.estimated, 3))
        else:
            summary["normals"] = "given" if self.has_normals else "none"
        if len(self.points) + self.dropped < self.source_points:
            summary.update(thinned_to=len(self.points), cap=self.cap)
        return summary

    def arrays(self) -> dict[str, np.ndarray]:
        """The encoder's inputs, without a batch axis."""
        return {
            "plane_points": self.plane_points,
            "points": self.points,
            "normals": self.normals,
            "has_normals": np.array(self.has_normals, dtype=np.float32),
            "neighbours": self.neighbours,
            "coarse_neighbours": self.coarse_neighbours,
            "parents": self.parents,
            "unit": np.array(self.unit, dtype=np.float32),
        }


def prepare_points(
    points: np.ndarray, normals: np.ndarray | None, config: ModelConfig, seed: int = 0
) -> tuple[PointAttentionInput, Frame]:
    """A source cloud (any frame) and its optional normals (N, 3) as the model reads them, and the frame that maps
    results back. A cloud above config.n_points is thinned evenly to it (the result says so)."""
    source = np.asarray(points)
    canonical, frame, dropped, rows = normalize_cloud(source, config.n_points, seed, thin=True)
    order = np.random.default_rng(seed).permutation(len(canonical))
    canonical, rows = canonical[order], rows[order]
    unit_normals = _unit_normals(normals, rows)
    neighbours = nearest(canonical, config.neighbours)
    coarse = canonical[: level_size(len(canonical), 1)]
    plane = canonical[np.sort(thin_indices(canonical, config.plane_points, np.random.default_rng(seed)))]
    prepared = PointAttentionInput(
        points=canonical,
        normals=unit_normals if unit_normals is not None else np.zeros_like(canonical),
        has_normals=unit_normals is not None,
        neighbours=neighbours,
        coarse_neighbours=nearest(coarse, config.neighbours),
        parents=nearest(coarse, 1, canonical)[:, 0],
        unit=spacing(canonical, neighbours),
        plane_points=plane,
        source_points=len(source),
        dropped=dropped,
        cap=config.n_points,
    )
    return prepared, frame


def _unit_normals(normals: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    """The kept points' normals scaled to unit length; None when there are none, or when they are unusable
    (not one finite, non-zero vector per point), so the model reconstructs from the points alone."""
    if normals is None:
        return None
    normals = np.asarray(normals, dtype=np.float64)[rows]
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    if not (np.isfinite(length).all() and (length > 1e-12).mean() > 0.99):
        return None
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)
