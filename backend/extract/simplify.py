"""Reducing a mesh to a face budget with quadric decimation (trimesh over fast-simplification)."""

from __future__ import annotations

import numpy as np

from ..errors import OccNetError
from ..mesh import Mesh


def simplify_mesh(mesh: Mesh, faces: int) -> Mesh:
    if faces <= 0 or len(mesh.faces) <= faces:
        return mesh
    try:
        simplified = mesh.to_trimesh().simplify_quadric_decimation(face_count=faces)
    except ImportError as exc:
        raise OccNetError(
            "Simplification needs the 'fast-simplification' package: pip install fast-simplification"
        ) from exc
    return Mesh(simplified.vertices.astype(np.float32), simplified.faces)
