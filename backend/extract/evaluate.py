"""Evaluating a torch field on many points in device-sized batches: the shared evaluator, batches as tensors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..runtime.evaluate import CancelCheck, Evaluator, Progress

Field = Callable[[torch.Tensor], torch.Tensor]
"""Occupancy logits of points (N, 3) in the canonical frame, as an (N,) tensor."""

__all__ = ["CancelCheck", "Field", "Progress", "TorchEvaluator"]


class TorchEvaluator(Evaluator):
    """Batches go to the field as tensors on `device`; refinement and normals use `field` and `device` too."""

    def __init__(
        self,
        field: Field,
        device: torch.device,
        batch: int,
        progress: Progress | None = None,
        cancel: CancelCheck | None = None,
    ) -> None:
        super().__init__(field, batch, progress, cancel)
        self.device = device

    @torch.no_grad()
    def logits(self, points: np.ndarray) -> np.ndarray:
        return self.field(torch.from_numpy(points).to(self.device)).float().cpu().numpy()
