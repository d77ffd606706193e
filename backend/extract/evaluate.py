"""Evaluating a field on many points in device-sized batches, with progress and cancellation between batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import Cancelled

Field = Callable[[torch.Tensor], torch.Tensor]
"""Occupancy logits of points (N, 3) in the canonical frame, as an (N,) tensor."""
Progress = Callable[[str, float], None]
CancelCheck = Callable[[], bool]


class Evaluator:
    """Counts every point it evaluates, so the stats can report what MISE saved."""

    def __init__(
        self,
        field: Field,
        device: torch.device,
        batch: int,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
    ) -> None:
        self.field = field
        self.device = device
        self.batch = batch
        self.progress = progress
        self.cancel = cancel
        self.points_evaluated = 0

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    @torch.no_grad()
    def __call__(
        self, points: np.ndarray, stage: str = "evaluate", start: float = 0.0, span: float = 1.0
    ) -> np.ndarray:
        """Logits for points (N, 3); progress reported as start + span * done/N."""
        out = np.empty(len(points), dtype=np.float32)
        for i in range(0, len(points), self.batch):
            self.check_cancel()
            chunk = torch.from_numpy(np.ascontiguousarray(points[i : i + self.batch], dtype=np.float32))
            out[i : i + len(chunk)] = self.field(chunk.to(self.device)).float().cpu().numpy()
            self.points_evaluated += len(chunk)
            if self.progress is not None:
                self.progress(stage, start + span * min(1.0, (i + len(chunk)) / len(points)))
        return out
