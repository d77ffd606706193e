"""Evaluating a field on many points in batches, with progress and cancellation between batches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import Cancelled

Logits = Callable[[np.ndarray], np.ndarray]
"""Occupancy logits of points (N, 3) float32 in the canonical frame, as an (N,) float32 array."""
Progress = Callable[[str, float], None]
CancelCheck = Callable[[], bool]
Carve = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Logits (N,) of points (N, 3) with some set outside, as a field's own evaluation could not tell
(`backend.inputs.open_space`)."""

POINTS_PER_BATCH = 32_768  # bounded by memory (a decoder's activations), not by speed


class Evaluator:
    """Counts every point it evaluates, so the stats can report what MISE saved. Engines differ only in
    `logits`, how one batch of numpy points becomes numpy logits."""

    def __init__(
        self,
        field: Callable,
        batch: int = POINTS_PER_BATCH,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
    ) -> None:
        self.field = field
        self.batch = batch
        self.progress = progress
        self.cancel = cancel
        self.points_evaluated = 0
        self.carve: Carve | None = None

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def logits(self, points: np.ndarray) -> np.ndarray:
        """Logits (N,) float32 of one batch of points (N, 3) float32."""
        return np.asarray(self.field(points), dtype=np.float32).reshape(len(points))

    def __call__(
        self, points: np.ndarray, stage: str = "evaluate", start: float = 0.0, span: float = 1.0
    ) -> np.ndarray:
        """Logits for points (N, 3); progress reported as start + span * done/N."""
        out = np.empty(len(points), dtype=np.float32)
        for i in range(0, len(points), self.batch):
            self.check_cancel()
            chunk = np.ascontiguousarray(points[i : i + self.batch], dtype=np.float32)
            values = self.logits(chunk)
            out[i : i + len(chunk)] = values if self.carve is None else self.carve(chunk, values)
            self.points_evaluated += len(chunk)
            if self.progress is not None:
                self.progress(stage, start + span * min(1.0, (i + len(chunk)) / len(points)))
        return out
