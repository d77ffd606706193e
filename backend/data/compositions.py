"""Random compositions of primitives: unlimited shapes outside any category, with exact occupancy.

Unions of randomly placed, turned and scaled boxes, cylinders, cones, tori, ellipsoids and capsules, some thin,
some far enough apart to be separate components, minus a few cutters that make holes and notches. A model
trained on them learns local surface shape rather than a family's silhouette, which is what real objects need.
"""

from __future__ import annotations

import math

import numpy as np

from .sdf import Difference, Node, Primitive, Union, box, capsule, cone, cylinder, ellipsoid, torus

Rng = np.random.Generator
KINDS = ("box", "cylinder", "cone", "torus", "ellipsoid", "capsule")


def _angles(rng: Rng) -> dict[str, float]:
    return {"yaw": rng.uniform(0, 2 * math.pi), "pitch": rng.uniform(0, math.pi), "roll": rng.uniform(0, 2 * math.pi)}


def _size(rng: Rng, base: float, thin: bool) -> float:
    return base * (rng.uniform(0.04, 0.12) if thin else rng.uniform(0.3, 1.0))


def primitive(rng: Rng, center: np.ndarray, base: float) -> Primitive:
    """One primitive of about `base` half-size; a third of them are thin in one direction (plates, rods, rings)."""
    kind = KINDS[rng.integers(len(KINDS))]
    thin = rng.random() < 0.33
    angles = _angles(rng)
    where = tuple(float(c) for c in center)
    if kind == "box":
        half = [_size(rng, base, False) for _ in range(3)]
        if thin:
            half[rng.integers(3)] = _size(rng, base, True)
        rounding = min(half) * rng.uniform(0, 0.5) if rng.random() < 0.3 else 0.0
        return Primitive(box, where, **angles, half=tuple(half), rounding=rounding)
    if kind == "cylinder":
        radius = _size(rng, base, thin)
        return Primitive(cylinder, where, **angles, radius=radius, half_height=_size(rng, base, False))
    if kind == "cone":
        r_bottom = _size(rng, base, False)
        return Primitive(
            cone,
            where,
            **angles,
            r_bottom=r_bottom,
            r_top=r_bottom * rng.uniform(0.0, 0.8),
            half_height=_size(rng, base, False),
        )
    if kind == "torus":
        major = _size(rng, base, False)
        return Primitive(torus, where, **angles, major=major, minor=major * rng.uniform(0.08, 0.45))
    if kind == "ellipsoid":
        radii = [_size(rng, base, False) for _ in range(3)]
        if thin:
            radii[rng.integers(3)] = _size(rng, base, True)
        return Primitive(ellipsoid, where, **angles, radii=tuple(radii))
    return Primitive(capsule, where, **angles, half_length=_size(rng, base, False), radius=_size(rng, base, thin))


def composition(rng: Rng) -> Node:
    """2 to 8 primitives around a random walk (clusters and, now and then, separate components), minus 0-3 cutters."""
    count = int(rng.integers(2, 9))
    base = rng.uniform(0.15, 0.3)
    centers = [np.zeros(3)]
    for _ in range(count - 1):
        step = rng.normal(size=3)
        reach = base * (rng.uniform(0.3, 1.2) if rng.random() < 0.85 else rng.uniform(1.5, 2.5))
        centers.append(centers[rng.integers(len(centers))] + reach * step / np.linalg.norm(step))
    parts = [primitive(rng, c, base * rng.uniform(0.5, 1.2)) for c in centers]
    body = Union(*parts, smooth=float(rng.choice([0.0, 0.0, base * 0.1])))
    cutters = [
        primitive(rng, centers[rng.integers(len(centers))] + rng.normal(scale=base * 0.5, size=3), base * 0.35)
        for _ in range(int(rng.choice([0, 0, 1, 2, 3])))
    ]
    return Difference(body, *cutters) if cutters else body
