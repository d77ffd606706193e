"""The air a scan leaves open, on numpy alone (both engines): space far from every input point that reaches the
box's border without passing near one, on the air side of the surfaces around it.

Far from its points the point-attention model falls back on its coarse context, learned mostly on solid objects,
and fills large volumes of a room's air (held-out rooms: 8,553 of 100,000 uniform points wrongly inside, lying over
0.05 from any surface, in one room). Whether such space is air is a question of reach, not of learning: a closed
scan's inside is cut off from the border by its points, a room's air is not. Reach alone would also empty a partial
scan, whose inside the border reaches through the side never seen; there the surfaces face away from the space
(their normals point outward), so space is opened only where its nearest oriented points face it. Normals are
those the model finds for a cloud without them (`backend.inputs.normals`), found again from the field being carved,
so a saved latent carves as it did when encoded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..surface.field import Carve
from .neighbours import nearest

REACH = 3.0  # spacings: space farther than this from every input point is free
VOTERS = 8  # the nearest oriented points whose normals say whether free space lies on their air side
RIM = 2  # cells of free space beyond the points' reach that are its rim
THINNING = 16  # deeper in, every 16th oriented point votes
MAX_CELLS = 128  # cells along each axis of the grid the free space is found on
OPEN_LOGIT = -12.0  # the logit of open space: outside at any threshold the panel offers
GROWTH_STEPS = 8  # flood steps between checks whether it still grows


class OpenSpace:
    """Which canonical points lie in a scan's open space. The free space's reach is found at once (a grid and a
    flood); the air side, which needs the cloud's normals and so the field, only for the reached cells asked
    about (`carving` asks only about points the field calls inside), so a closed object pays only the flood."""

    def __init__(
        self, points: np.ndarray, unit: float, box: float, normals: Callable[[], tuple[np.ndarray, np.ndarray]]
    ) -> None:
        self.normals = normals  # oriented points and their normals (zero where none): the voters
        self.cell = max(unit, box / MAX_CELLS)
        self.low = np.float32(-box / 2 - self.cell)  # a border of cells around the box, all free
        self.size = int(np.ceil(box / self.cell)) + 2
        self.reach = REACH * unit / self.cell  # in cells
        free = _free(np.asarray(points, dtype=np.float32), self.low, self.cell, self.size, self.reach)
        self.reached = _reached(free)
        self.rim = _grown(~free, RIM) & self.reached
        self.air = np.zeros(self.reached.shape, dtype=np.int8)  # 1 air, -1 not, 0 not yet asked
        self.voters: tuple[np.ndarray, np.ndarray] | None = None

    def open(self, points: np.ndarray, asked: np.ndarray) -> np.ndarray:
        """Which of points (N, 3) lie in open space, of those `asked` (N,) bool; the others are False."""
        index = np.floor((np.asarray(points, np.float32) - self.low) / self.cell).astype(np.int64)
        cells = tuple(np.clip(index, 0, self.size - 1).T)
        reached = asked & self.reached[cells]
        if not reached.any():
            return reached
        new = np.unique(np.stack(cells, axis=1)[reached & (self.air[cells] == 0)], axis=0)
        if len(new):
            self.air[tuple(new.T)] = np.where(self._faced(new), 1, -1)
        return reached & (self.air[cells] == 1)

    def _faced(self, cells: np.ndarray) -> np.ndarray:
        """Whether each cell (M, 3) has the air side of most of its VOTERS nearest oriented points: every oriented
        point votes at the free space's rim, every THINNING-th deeper in (the cloud's random order thins it
        evenly), where the nearest lie farther apart and a search among all points is slow on numpy."""
        if self.voters is None:
            points, normals = self.normals()
            oriented = np.any(normals != 0, axis=1)
            self.voters = points[oriented], normals[oriented]
        voters, facing = self.voters
        faced = np.zeros(len(cells), dtype=bool)
        if not len(voters):
            return faced
        centres = (self.low + (cells + 0.5) * self.cell).astype(np.float32)
        rim = self.rim[tuple(cells.T)]
        rim_reach = 1.5 * (self.reach + RIM + 1) * self.cell  # about where the rim's voters lie
        for chosen, thinning, reach in ((rim, 1, rim_reach), (~rim, THINNING, 4 * rim_reach)):
            if chosen.any():
                count = -(-len(voters) // thinning)
                votes = nearest(voters[:count], VOTERS, centres[chosen], reach)
                sides = np.einsum("nkc,nkc->nk", centres[chosen][:, None, :] - voters[votes], facing[votes])
                faced[chosen] = np.sign(sides).mean(axis=1) > 0
        return faced


def carving(spaces: list[OpenSpace], threshold_logit: float) -> Carve:
    """A field's carve: points the field calls inside that lie in every one of
    `spaces` (a blend's ends' with weight, one scan's alone) get OPEN_LOGIT."""

    def carve(points: np.ndarray, logits: np.ndarray) -> np.ndarray:
        opened = logits >= threshold_logit
        for space in spaces:
            opened = space.open(points, opened)
        return np.where(opened, np.float32(OPEN_LOGIT), logits).astype(np.float32)

    return carve


def _free(points: np.ndarray, low: np.float32, cell: float, size: int, reach: float) -> np.ndarray:
    """Cells whose centres lie farther than `reach` cells from every point: a point anywhere in its cell is at most
    half a diagonal from the centre, so occupied cells are grown by that much more (free space errs small)."""
    occupied = np.zeros((size,) * 3, dtype=bool)
    occupied[tuple(np.clip(np.floor((points - low) / cell).astype(np.int64), 0, size - 1).T)] = True
    return ~_grown(occupied, reach + np.sqrt(3) / 2)


def _grown(grid: np.ndarray, radius: float) -> np.ndarray:
    """The cells within `radius` cells (centre to centre) of a True cell."""
    span = int(np.ceil(radius))
    steps = np.arange(-span, span + 1)
    offsets = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    out = grid.copy()
    for offset in offsets[(offsets**2).sum(axis=1) <= radius**2]:
        out |= _shifted(grid, offset)
    return out


def _shifted(grid: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The grid moved by a whole number of cells along each axis, False where it moved in from outside."""
    out = np.zeros_like(grid)
    source = tuple(slice(max(0, -o), grid.shape[a] - max(0, o)) for a, o in enumerate(offset))
    target = tuple(slice(max(0, o), grid.shape[a] - max(0, -o)) for a, o in enumerate(offset))
    out[target] = grid[source]
    return out


def _reached(free: np.ndarray) -> np.ndarray:
    """The free cells joined to the grid's border through free cells (faces shared)."""
    reached = np.zeros_like(free)
    for axis in range(3):
        for end in (0, -1):
            index = [slice(None)] * 3
            index[axis] = end
            reached[tuple(index)] = free[tuple(index)]
    while True:
        before = reached.copy()
        for _ in range(GROWTH_STEPS):
            for axis in range(3):
                grown = np.swapaxes(reached, 0, axis)
                grown[1:] |= grown[:-1] & np.swapaxes(free, 0, axis)[1:]
                grown[:-1] |= grown[1:] & np.swapaxes(free, 0, axis)[:-1]
        if np.array_equal(before, reached):
            return reached
