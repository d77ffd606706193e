"""Marching cubes on numpy: vectorised over cells, with case tables derived from the cube's topology.

The table is not typed in: for a cell's eight inside/outside corners, the surface crosses each edge whose two
corners differ; on each of the cell's six faces those crossings are joined in pairs by segments, and the
segments of the six faces close into loops that are triangulated. A face whose corners alternate (inside on
one diagonal, outside on the other) is ambiguous; it is resolved by the asymptotic decider (the sign of the
bilinear interpolant at the face's saddle), which reads only the face's own four values, so the two cells
sharing a face always join its crossings the same way and the surface is closed wherever the level set is.
scikit-image's Lewiner method resolves faces the same way; it differs only inside cells (a tunnel between
two loops of one cell), which moves no vertex: both put the vertices at the linear zero on the same edges.

Cases are keyed by the 8 corner bits plus one decider bit per ambiguous face, and built on first use (a few
hundred occur in a real grid, out of 256 * 64), then cached.
"""

from __future__ import annotations

import numpy as np

# Corner k of a cell sits at offset (k & 1, k >> 1 & 1, k >> 2 & 1) along the grid's axes (0, 1, 2).
CORNERS = np.array([[k & 1, k >> 1 & 1, k >> 2 & 1] for k in range(8)])
# Edge e joins corners EDGES[e] = (low, high), parallel to axis EDGE_AXIS[e].
EDGES = [(k, k | 1 << axis) for axis in range(3) for k in range(8) if not k >> axis & 1]
EDGE_AXIS = np.array([axis for axis in range(3) for k in range(8) if not k >> axis & 1])
EDGE_ORIGIN = CORNERS[[low for low, _ in EDGES]]
_EDGE_OF = {frozenset(edge): e for e, edge in enumerate(EDGES)}
_MIDPOINTS = (CORNERS[[a for a, _ in EDGES]] + CORNERS[[b for _, b in EDGES]]) / 2.0


def _faces() -> list[tuple[list[int], np.ndarray]]:
    """Each face's four corners in cyclic order, and its outward normal."""
    faces = []
    for axis in range(3):
        b, c = [a for a in range(3) if a != axis]
        for side in (0, 1):
            corners = [(side << axis) | (u << b) | (v << c) for u, v in ((0, 0), (1, 0), (1, 1), (0, 1))]
            normal = np.zeros(3)
            normal[axis] = 2 * side - 1
            faces.append((corners, normal))
    return faces


FACES = _faces()
FACE_CORNERS = np.array([corners for corners, _ in FACES])  # (6, 4)

_CASES: dict[int, list[tuple[int, int, int]]] = {}


def case_triangles(code: int) -> list[tuple[int, int, int]]:
    """Triangles (as edge numbers) of one case: corner bits in code & 255, face f's decider in bit 8 + f (set:
    the inside corners of that ambiguous face are connected across it). Triangles face the outside."""
    if code in _CASES:
        return _CASES[code]
    inside = [code >> k & 1 for k in range(8)]
    following = {}
    for f, (corners, normal) in enumerate(FACES):
        flags = [inside[c] for c in corners]
        side_edges = [_EDGE_OF[frozenset((corners[i], corners[(i + 1) % 4]))] for i in range(4)]
        crossed = [i for i in range(4) if flags[i] != flags[(i + 1) % 4]]
        if len(crossed) == 2:
            segments = [(side_edges[crossed[0]], side_edges[crossed[1]], corners[0])]
        elif len(crossed) == 4:  # cut off the corners that the decider leaves apart
            apart = 0 if code >> (8 + f) & 1 else 1
            segments = [(side_edges[i - 1], side_edges[i], corners[i]) for i in range(4) if flags[i] == apart]
        else:
            segments = []
        for start, end, reference in segments:
            # Walk each segment with the inside part of the face on its left, seen from outside the cell.
            p, q = _MIDPOINTS[start], _MIDPOINTS[end]
            left = float(np.dot(np.cross(q - p, CORNERS[reference] - p), normal)) > 0
            following[start if left == bool(inside[reference]) else end] = (
                end if left == bool(inside[reference]) else start
            )
    triangles = []
    while following:
        loop = [next(iter(following))]
        edge = following.pop(loop[0])
        while edge != loop[0]:
            loop.append(edge)
            edge = following.pop(edge)
        triangles += [(loop[0], loop[i + 1], loop[i]) for i in range(1, len(loop) - 1)]
    _CASES[code] = triangles
    return triangles


def _table(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (U, T, 3) padded with 0 and their counts (U,), for each of the given case codes."""
    cases = [case_triangles(int(code)) for code in codes]
    width = max(1, max(len(c) for c in cases))
    table = np.zeros((len(cases), width, 3), dtype=np.int64)
    for i, triangles in enumerate(cases):
        if triangles:
            table[i, : len(triangles)] = triangles
    return table, np.array([len(c) for c in cases], dtype=np.int64)


def marching_cubes(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 in index coordinates and faces (F, 3) int64 of the surface {values = level}
    around the region {values >= level}, triangles facing away from it. Every vertex lies on a grid edge at
    the linear zero of values - level. Closed wherever the region does not touch the grid's border."""
    values = np.ascontiguousarray(values)
    shape = np.array(values.shape)
    if values.ndim != 3 or (shape < 2).any():
        raise ValueError(f"marching cubes needs a 3D grid of at least 2 points a side, not {values.shape}")
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    n0, n1, n2 = shape - 1
    # Corner bits axis by axis (bit k = dx + 2 dy + 4 dz, as CORNERS): three passes over the grid, not eight.
    config = (values >= level).view(np.uint8)
    config = config[:-1] | config[1:] << np.uint8(1)
    config = config[:, :-1] | config[:, 1:] << np.uint8(2)
    config = config[:, :, :-1] | config[:, :, 1:] << np.uint8(4)
    cells = np.flatnonzero((config != 0) & (config != 255))
    empty = np.zeros((0, 3))
    if len(cells) == 0:
        return empty, np.zeros((0, 3), dtype=np.int64)
    code = config.ravel()[cells].astype(np.int64)
    i, j, k = np.unravel_index(cells, (n0, n1, n2))
    origin = i * strides[0] + j * strides[1] + k * strides[2]
    flat = values.ravel()
    corner_values = flat[origin[:, None] + CORNERS @ strides].astype(np.float64) - level  # (C, 8)
    code |= _face_deciders(corner_values) << 8
    unique, which = np.unique(code, return_inverse=True)
    table, counts = _table(unique)
    per_cell = counts[which]
    cell_of = np.repeat(np.arange(len(cells)), per_cell)
    slot = np.arange(len(cell_of)) - np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    edges = table[which[cell_of], slot]  # (F, 3) edge numbers
    # A crossing's key: the axis of its edge and the flat index of the edge's low end, shared by all its cells.
    keys = (origin[cell_of][:, None] + EDGE_ORIGIN[edges] @ strides) * 3 + EDGE_AXIS[edges]
    keys, faces = np.unique(keys.ravel(), return_inverse=True)
    low, axis = keys // 3, keys % 3
    v0 = flat[low].astype(np.float64)
    v1 = flat[low + strides[axis]].astype(np.float64)
    vertices = np.stack(np.unravel_index(low, values.shape), axis=1).astype(np.float64)
    vertices[np.arange(len(keys)), axis] += (level - v0) / (v1 - v0)
    return vertices, faces.reshape(-1, 3)


def _face_deciders(corner_values: np.ndarray) -> np.ndarray:
    """Bits (C,) with bit f set where face f is ambiguous and its saddle lies inside (values - level >= 0)."""
    bits = np.zeros(len(corner_values), dtype=np.int64)
    for f, corners in enumerate(FACE_CORNERS):
        a, b, c, d = (corner_values[:, n] for n in corners)
        ia, ib, ic, id_ = a >= 0, b >= 0, c >= 0, d >= 0
        ambiguous = (ia == ic) & (ib == id_) & (ia != ib)
        # The bilinear interpolant's saddle value is (ac - bd) / (a + c - b - d); only its sign matters.
        connected = ambiguous & ((a * c - b * d) * (a + c - b - d) >= 0)
        bits |= connected.astype(np.int64) << f
    return bits
