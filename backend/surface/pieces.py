"""Dropping the loose crumbs and blobs a reconstruction leaves beside the object: connected pieces whose surface
is a small share of the largest piece's, and pieces that no input point lies near (a blob the field made in the
empty middle of a knot). A handle or a thin leg joined to the object is part of its piece, so it stays; a small
separate piece the scan saw, such as a lamp standing apart in a room (half a percent of the room's surface), holds
its own points, which a crumb beside a surface does not, so it stays. numpy only (both engines)."""

from __future__ import annotations

import numpy as np

from .mesh import Mesh
from .snap import Scan

SUPPORT_REACH = 1.0  # spacings: a piece with no vertex this near an input point shows nothing the scan saw
OWN_POINTS = 100  # input points nearer a small piece than any other surface that make it a part the scan saw
NEAR_POINTS = 8  # input points looked at beside each vertex of a small piece


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


def drop_small_pieces(mesh: Mesh, share: float, scan: Scan | None = None) -> tuple[Mesh, int]:
    """The mesh without the pieces whose area is below `share` of the largest piece's, and how many went; given
    the scan, a small piece holding OWN_POINTS of its points stays. A share of 0 keeps everything."""
    if share <= 0 or not len(mesh.faces):
        return mesh, 0
    labels = piece_labels(mesh.faces, len(mesh.vertices))
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    face_piece = labels[mesh.faces[:, 0]]
    pieces, index = np.unique(face_piece, return_inverse=True)
    piece_area = np.bincount(index, area, len(pieces))
    keep_piece = piece_area >= share * piece_area.max()
    if scan is not None and not keep_piece.all():
        keep_piece[~keep_piece] = _own_points(mesh.vertices, labels, pieces[~keep_piece], scan) >= OWN_POINTS
    return _kept(mesh, keep_piece[index]), int((~keep_piece).sum())


def _own_points(vertices: np.ndarray, labels: np.ndarray, small: np.ndarray, scan: Scan) -> np.ndarray:
    """For each small piece (its label), how many input points lie nearer its vertices than any other vertex: the
    points a part the scanner saw is made of, where a crumb beside a surface has next to none (the surface passes
    through its points)."""
    reach = SUPPORT_REACH * scan.unit
    vertices = vertices.astype(np.float64)
    in_small = np.isin(labels, small)
    small_vertices, small_labels = vertices[in_small], labels[in_small]
    near, found = scan.nearest(small_vertices.astype(np.float32), NEAR_POINTS, reach)
    counts = np.zeros(len(small), dtype=np.int64)
    for i, label in enumerate(small):
        mine = small_labels == label
        points = scan.points[np.unique(near[mine][found[mine]])].astype(np.float64)
        if not len(points):
            continue
        low, high = points.min(axis=0) - reach, points.max(axis=0) + reach
        others = vertices[(labels != label) & np.all((vertices >= low) & (vertices <= high), axis=1)]
        own = nearest_distance(points, small_vertices[mine])
        counts[i] = (own < nearest_distance(points, others)).sum()
    return counts


def nearest_distance(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Each point's (N, D) distance to its nearest vertex (M, D; inf when there are none), by brute force in chunks
    of about 4M pairs: for the few hundred to thousands of points that a small piece or a silhouette's edge has."""
    if not len(vertices):
        return np.full(len(points), np.inf)
    chunk = max(1, 4_000_000 // len(vertices))
    return np.concatenate(
        [
            np.sqrt(((points[i : i + chunk, None, :] - vertices[None]) ** 2).sum(axis=2).min(axis=1))
            for i in range(0, len(points), chunk)
        ]
    )


def drop_unsupported_pieces(mesh: Mesh, scan: Scan) -> tuple[Mesh, int]:
    """The mesh (canonical frame, as the scan) without the pieces none of whose vertices lie within SUPPORT_REACH
    spacings of the scan, and how many went: every surface a scan saw has its points beside it, so such a piece was
    invented between them."""
    if not len(mesh.faces):
        return mesh, 0
    labels = piece_labels(mesh.faces, len(mesh.vertices))
    _, near = scan.nearest(mesh.vertices.astype(np.float32), 1, SUPPORT_REACH * scan.unit)
    supported = np.zeros(len(mesh.vertices), dtype=bool)
    np.logical_or.at(supported, labels, near[:, 0])
    if not supported.any():  # nothing near the scan at all: not a blob beside the object, leave it to the user
        return mesh, 0
    face_piece = labels[mesh.faces[:, 0]]
    dropped = len(np.unique(face_piece[~supported[face_piece]]))
    return _kept(mesh, supported[face_piece]), dropped


def _kept(mesh: Mesh, keep_face: np.ndarray) -> Mesh:
    """The mesh of the faces kept, without the vertices only the others used."""
    if keep_face.all():
        return mesh
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces[keep_face].ravel()] = True
    renumber = np.cumsum(used) - 1
    faces = renumber[mesh.faces[keep_face]]
    normals = None if mesh.normals is None else mesh.normals[used]
    colors = None if mesh.colors is None else mesh.colors[used]
    return Mesh(mesh.vertices[used], faces, normals, colors)
