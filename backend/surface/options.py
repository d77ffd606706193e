"""How a latent becomes a mesh: one frozen object, checked when it is made, with every default stated here once.

The worker protocol carries it as it is, and the API, the CLI, both workers, the batch and the add-on build it;
so a setting the user gets wrong is refused with its fix before any work, wherever it was typed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import OccNetError

RESOLUTIONS = (32, 64, 128, 256, 512)  # the grids MISE reaches, doubling from the first
DEFAULT_RESOLUTION = 128  # the paper's
MIN_PIECE = 0.01  # loose pieces with less surface than this share of the largest (crumbs, blobs) are dropped
MIN_FACES = 4  # a tetrahedron; a face budget below it leaves no mesh at all


class OptionsError(OccNetError):
    """A setting no extraction can use; the message names it and the fix."""


@dataclass(frozen=True, kw_only=True)
class ExtractOptions:
    """`threshold` None is the model's own; `use_mise` False evaluates the whole grid, of any resolution."""

    resolution: int = DEFAULT_RESOLUTION
    threshold: float | None = None
    refine_steps: int = 0
    faces: int = 0  # face budget; 0 keeps every face
    normals: bool = True
    min_piece: float = MIN_PIECE  # 0 keeps every piece
    use_mise: bool = True
    snap: bool = True  # vertices near a dense input scan move onto it (`backend.surface.snap`)

    def __post_init__(self) -> None:
        if (self.use_mise and self.resolution not in RESOLUTIONS) or not self.resolution >= 1:
            raise OptionsError(
                f"Resolution {self.resolution} is not supported; choose one of {', '.join(map(str, RESOLUTIONS))}."
            )
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:  # an occupancy probability; NaN too
            raise OptionsError(
                f"Threshold {self.threshold} must lie strictly between 0 and 1 (0.5 is the usual surface)."
            )
        if not 0.0 <= self.min_piece <= 1.0:
            raise OptionsError(
                f"The small-piece share {self.min_piece} must lie between 0 (keep every piece) and 1 (keep only the "
                f"largest); {MIN_PIECE} drops crumbs."
            )
        if self.refine_steps < 0 or self.faces < 0:
            raise OptionsError("Refinement steps and the face budget cannot be negative.")
        if 0 < self.faces < MIN_FACES:
            raise OptionsError(
                f"A face budget of {self.faces} is too small: the smallest closed mesh has {MIN_FACES} faces. "
                f"Ask for {MIN_FACES} or more, or 0 to keep every face."
            )

    def surface_threshold(self, model_threshold: float) -> float:
        """The occupancy probability of the surface: this threshold, or the model's own when it is None."""
        return model_threshold if self.threshold is None else self.threshold

    def threshold_logit(self, model_threshold: float) -> float:
        """The same level in logits, as the fields give them."""
        threshold = self.surface_threshold(model_threshold)
        return math.log(threshold / (1.0 - threshold))
