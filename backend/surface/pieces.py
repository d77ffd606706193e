"""Dropping the loose crumbs and blobs a reconstruction leaves beside the object: connected pieces whose surface
is a small share of the largest piece's. A handle or a thin leg joined to the object is part of its piece, so it
stays; a separate piece of furniture in a room is far above the share, so it stays. numpy only (both engines)."""

from __future__ import annotations

import numpy as np

from .mesh import Mesh


def piece_labels(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """(V,) a label per vertex, equal for vertices joined by faces. Union by hooking the larger root onto the
    smaller along every edge whose ends still differ, then pointer jumping (Shiloach-Vishkin): a few numpy passes
    even on a mesh of a million vertices, where spreading labels vertex to vertex would take its diameter."""
    labels = np.arange(vertex_count)
    a = faces.ravel()
    b = np.roll(faces, -1, axis=1).ravel()
    while True:
        ra, rb = labels[a], labels[b]
        differ = ra != rb
        if not differ.any():
            return labels
        a, b = a[differ], b[differ]
        np.minimum.at(labels, np.maximum(ra[differ], rb[differ]), np.minimum(ra[differ], rb[differ]))
        while not np.array_equal(jumped := labels[labels], labels):
            labels = jumped


def drop_small_pieces(mesh: Mesh, share: float) -> tuple[Mesh, int]:
    """The mesh without the pieces whose area is below `share` of the largest piece's, and how many went.
    A share of 0 keeps everything."""
    if share <= 0 or not len(mesh.faces):
        return mesh, 0
    labels = piece_labels(mesh.faces, len(mesh.vertices))
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    face_piece = labels[mesh.faces[:, 0]]
    pieces, index = np.unique(face_piece, return_inverse=True)
    piece_area = np.bincount(index, area, len(pieces))
    keep_piece = piece_area >= share * piece_area.max()
    if keep_piece.all():
        return mesh, 0
    keep_face = keep_piece[index]
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces[keep_face].ravel()] = True
    renumber = np.cumsum(used) - 1
    faces = renumber[mesh.faces[keep_face]]
    normals = None if mesh.normals is None else mesh.normals[used]
    colors = None if mesh.colors is None else mesh.colors[used]
    kept = Mesh(mesh.vertices[used], faces, normals, colors)
    return kept, int((~keep_piece).sum())
