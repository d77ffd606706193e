"""Procedural everyday objects: one seeded generator of signed-distance trees per category.

Each generator draws continuous parameters, so a category has real variety and blending two of its
members is meaningful. Objects stand upright along +Z with their front towards -Y; sizes are in
metres before normalisation into the unit cube.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .compositions import composition
from .sdf import (
    Difference,
    Intersection,
    Node,
    Primitive,
    Union,
    box,
    capsule,
    cone,
    cylinder,
    ellipsoid,
    sphere,
    torus,
)

Rng = np.random.Generator
HALF_PI = math.pi / 2


def chair(rng: Rng) -> Node:
    w, d, h, t = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.5), rng.uniform(0.04, 0.08)
    leg = rng.uniform(0.02, 0.04)
    back_h, back_t, tilt = rng.uniform(0.3, 0.6), rng.uniform(0.03, 0.06), rng.uniform(0.0, 0.25)
    parts = [Primitive(box, (0, 0, h), half=(w / 2, d / 2, t / 2), rounding=0.01)]
    parts += _legs(rng, w / 2 - leg, d / 2 - leg, h, leg)
    back_center = (0, d / 2 - back_t / 2 + math.sin(tilt) * back_h / 2, h + t / 2 + math.cos(tilt) * back_h / 2)
    parts.append(Primitive(box, back_center, pitch=-tilt, half=(w / 2, back_t / 2, back_h / 2), rounding=0.01))
    if rng.random() < 0.4:
        for side in (-1, 1):
            parts.append(Primitive(box, (side * (w / 2 - 0.02), 0, h + 0.22), half=(0.025, d / 2, 0.02)))
            parts.append(
                Primitive(cylinder, (side * (w / 2 - 0.02), -d / 2 + 0.05, h + 0.11), radius=0.02, half_height=0.11)
            )
    return Union(*parts)


def table(rng: Rng) -> Node:
    h, t = rng.uniform(0.45, 0.8), rng.uniform(0.04, 0.07)
    if rng.random() < 0.35:
        r = rng.uniform(0.35, 0.6)
        top = Primitive(cylinder, (0, 0, h), radius=r, half_height=t / 2, rounding=0.01)
        stem = Primitive(cylinder, (0, 0, h / 2), radius=rng.uniform(0.04, 0.08), half_height=h / 2)
        foot = Primitive(cylinder, (0, 0, 0.02), radius=rng.uniform(0.2, r * 0.8), half_height=0.02)
        return Union(top, stem, foot, smooth=0.02)
    w, d = rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.0)
    leg = rng.uniform(0.025, 0.05)
    top = Primitive(box, (0, 0, h), half=(w / 2, d / 2, t / 2), rounding=0.01)
    inset = rng.uniform(0.0, 0.1)
    return Union(top, *_legs(rng, w / 2 - leg - inset, d / 2 - leg - inset, h, leg))


def sofa(rng: Rng) -> Node:
    w, d, seat_h = rng.uniform(1.4, 2.2), rng.uniform(0.75, 1.0), rng.uniform(0.35, 0.5)
    back_h, back_t, arm_w, arm_h = (
        rng.uniform(0.35, 0.55),
        rng.uniform(0.15, 0.25),
        rng.uniform(0.1, 0.2),
        rng.uniform(0.15, 0.3),
    )
    r = rng.uniform(0.03, 0.08)
    base = Primitive(box, (0, 0, seat_h / 2 + 0.05), half=(w / 2, d / 2, seat_h / 2), rounding=r)
    back = Primitive(
        box, (0, d / 2 - back_t / 2, seat_h + back_h / 2), half=(w / 2, back_t / 2, back_h / 2 + 0.05), rounding=r
    )
    arms = [
        Primitive(
            box,
            (s * (w / 2 - arm_w / 2), 0, seat_h + arm_h / 2 - 0.05),
            half=(arm_w / 2, d / 2, arm_h / 2 + 0.05),
            rounding=r,
        )
        for s in (-1, 1)
    ]
    feet = [
        Primitive(cylinder, (sx * (w / 2 - 0.08), sy * (d / 2 - 0.08), 0.03), radius=0.03, half_height=0.03)
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    return Union(Union(base, back, *arms, smooth=0.03), *feet)


def bed(rng: Rng) -> Node:
    w, length = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.1)
    frame_h, mattress = rng.uniform(0.2, 0.35), rng.uniform(0.15, 0.25)
    head_h, board_t = rng.uniform(0.4, 0.9), rng.uniform(0.04, 0.08)
    parts = [
        Primitive(box, (0, 0, frame_h / 2 + 0.05), half=(w / 2, length / 2, frame_h / 2)),
        Primitive(
            box,
            (0, -0.02, frame_h + 0.05 + mattress / 2),
            half=(w / 2 - 0.03, length / 2 - 0.05, mattress / 2),
            rounding=0.05,
        ),
        Primitive(
            box,
            (0, length / 2 - board_t / 2, (frame_h + head_h) / 2 + 0.05),
            half=(w / 2, board_t / 2, (frame_h + head_h) / 2 + 0.05),
            rounding=0.015,
        ),
    ]
    if rng.random() < 0.5:
        foot_h = rng.uniform(0.1, 0.3)
        parts.append(
            Primitive(
                box,
                (0, -length / 2 + board_t / 2, (frame_h + foot_h) / 2 + 0.05),
                half=(w / 2, board_t / 2, (frame_h + foot_h) / 2 + 0.05),
                rounding=0.015,
            )
        )
    parts += _legs(rng, w / 2 - 0.05, length / 2 - 0.05, 0.05, 0.04)
    return Union(*parts)


def lamp(rng: Rng) -> Node:
    base_r, pole_h = rng.uniform(0.08, 0.18), rng.uniform(0.3, 1.2)
    shade_h = rng.uniform(0.12, 0.3)
    r_bottom, r_top = rng.uniform(0.12, 0.28), rng.uniform(0.05, 0.14)
    base = Primitive(cylinder, (0, 0, 0.02), radius=base_r, half_height=0.02, rounding=0.008)
    pole = Primitive(capsule, (0, 0, pole_h / 2 + 0.02), half_length=pole_h / 2, radius=rng.uniform(0.02, 0.03))
    shade = Primitive(
        cone, (0, 0, pole_h + shade_h / 2 - 0.03), r_bottom=r_bottom, r_top=r_top, half_height=shade_h / 2
    )
    if rng.random() < 0.3:
        shade = Primitive(sphere, (0, 0, pole_h + 0.05), radius=rng.uniform(0.08, 0.18))
    return Union(base, pole, shade, smooth=0.015)


def shelf(rng: Rng) -> Node:
    w, d, h, t = rng.uniform(0.5, 1.2), rng.uniform(0.25, 0.45), rng.uniform(0.6, 1.8), rng.uniform(0.025, 0.05)
    rows = int(rng.integers(2, 6))
    cols = 1 if w < 0.8 or rng.random() < 0.5 else 2
    outer = Primitive(box, (0, 0, h / 2), half=(w / 2, d / 2, h / 2))
    cell_w = (w - (cols + 1) * t) / cols
    cell_h = (h - (rows + 1) * t) / rows
    cuts = [
        Primitive(
            box,
            (-w / 2 + t + cell_w / 2 + c * (cell_w + t), -t, t + cell_h / 2 + r * (cell_h + t)),
            half=(cell_w / 2, d / 2, cell_h / 2),
        )
        for r in range(rows)
        for c in range(cols)
    ]
    return Difference(outer, *cuts)


def mug(rng: Rng) -> Node:
    r, hh, wall = rng.uniform(0.035, 0.055), rng.uniform(0.04, 0.065), rng.uniform(0.006, 0.009)
    outer = Primitive(cylinder, (0, 0, hh), radius=r, half_height=hh, rounding=0.003)
    inner = Primitive(cylinder, (0, 0, hh + wall + 0.05), radius=r - wall, half_height=hh + 0.05 - 0.5 * wall)
    major = rng.uniform(0.6, 0.9) * hh
    handle = Primitive(torus, (r, 0, hh), pitch=HALF_PI, major=major, minor=rng.uniform(0.007, 0.011))
    return Difference(Union(outer, handle), inner)


def bottle(rng: Rng) -> Node:
    r, body_h = rng.uniform(0.03, 0.05), rng.uniform(0.1, 0.2)
    neck_r, neck_h, shoulder = rng.uniform(0.011, 0.018), rng.uniform(0.03, 0.07), rng.uniform(0.02, 0.06)
    body = Primitive(cylinder, (0, 0, body_h / 2), radius=r, half_height=body_h / 2, rounding=rng.uniform(0.003, 0.01))
    shoulder_part = Primitive(cone, (0, 0, body_h + shoulder / 2), r_bottom=r, r_top=neck_r, half_height=shoulder / 2)
    neck = Primitive(cylinder, (0, 0, body_h + shoulder + neck_h / 2), radius=neck_r, half_height=neck_h / 2)
    cap = Primitive(cylinder, (0, 0, body_h + shoulder + neck_h), radius=neck_r * 1.25, half_height=0.008)
    return Union(body, shoulder_part, neck, cap, smooth=0.006)


def vase(rng: Rng) -> Node:
    a, b = rng.uniform(0.06, 0.14), rng.uniform(0.08, 0.2)
    neck_r, neck_h = rng.uniform(0.3, 0.7) * a, rng.uniform(0.04, 0.15)
    body = Primitive(ellipsoid, (0, 0, b), radii=(a, a, b))
    neck = Primitive(cone, (0, 0, 1.8 * b + neck_h / 2), r_bottom=neck_r * 0.8, r_top=neck_r, half_height=neck_h / 2)
    lip = Primitive(torus, (0, 0, 1.8 * b + neck_h), major=neck_r, minor=rng.uniform(0.006, 0.012))
    foot = Primitive(cylinder, (0, 0, 0.15 * b), radius=rng.uniform(0.4, 0.8) * a, half_height=0.15 * b)
    return Union(body, neck, lip, foot, smooth=0.015)


def airplane(rng: Rng) -> Node:
    length, r = rng.uniform(1.2, 2.0), rng.uniform(0.06, 0.11)
    span, chord, sweep = rng.uniform(1.0, 2.0), rng.uniform(0.15, 0.3), rng.uniform(0.0, 0.5)
    thick = rng.uniform(0.025, 0.04)
    wing_y = rng.uniform(-0.1, 0.15) * length
    fuselage = Primitive(capsule, (0, 0, 0), pitch=HALF_PI, half_length=length / 2 - r, radius=r)
    parts = [fuselage]
    for side in (-1, 1):
        parts.append(
            Primitive(
                box,
                (side * span / 4, wing_y + math.tan(sweep) * span / 4, 0),
                yaw=side * sweep,
                half=(span / 4, chord / 2, thick / 2),
            )
        )
        parts.append(
            Primitive(
                box,
                (side * span / 9, length / 2 - chord / 2, 0.02),
                yaw=side * sweep,
                half=(span / 9, chord / 3, thick / 2),
            )
        )
    fin_h = rng.uniform(0.15, 0.3)
    parts.append(
        Primitive(
            box, (0, length / 2 - chord / 2, r + fin_h / 2 - 0.02), pitch=-0.3, half=(thick / 2, chord / 2.5, fin_h / 2)
        )
    )
    if rng.random() < 0.6:
        for side in (-1, 1):
            parts.append(
                Primitive(
                    capsule,
                    (side * span / 5, wing_y - 0.05, -0.07),
                    pitch=HALF_PI,
                    half_length=0.08,
                    radius=rng.uniform(0.035, 0.05),
                )
            )
    return Union(*parts, smooth=0.01)


def car(rng: Rng) -> Node:
    length, w, body_h = rng.uniform(1.6, 2.4), rng.uniform(0.7, 1.0), rng.uniform(0.25, 0.4)
    cabin_l, cabin_h = rng.uniform(0.4, 0.65) * length, rng.uniform(0.2, 0.35)
    wheel_r = rng.uniform(0.14, 0.22)
    clearance = wheel_r * rng.uniform(0.6, 0.9)
    body = Primitive(box, (0, 0, clearance + body_h / 2), half=(w / 2, length / 2, body_h / 2), rounding=0.06)
    cabin = Primitive(
        box,
        (0, rng.uniform(-0.05, 0.15) * length, clearance + body_h + cabin_h / 2 - 0.03),
        half=(w / 2 - 0.06, cabin_l / 2, cabin_h / 2),
        rounding=0.08,
    )
    wheels = [
        Primitive(
            cylinder,
            (sx * (w / 2 - 0.04), sy * (length / 2 - wheel_r * 1.4), wheel_r),
            roll=HALF_PI,
            radius=wheel_r,
            half_height=0.06,
        )
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]
    return Union(Union(body, cabin, smooth=0.04), *wheels)


def boat(rng: Rng) -> Node:
    length, w, depth = rng.uniform(1.2, 2.2), rng.uniform(0.35, 0.7), rng.uniform(0.2, 0.4)
    hull_shape = Primitive(ellipsoid, (0, 0.15 * length, 0.0), radii=(w / 2, length * 0.65, depth))
    below_deck = Primitive(box, (0, 0, -depth / 2), half=(w, length / 2, depth / 2))
    hull = Intersection(hull_shape, below_deck)
    parts = [hull]
    if rng.random() < 0.7:
        cabin_l = rng.uniform(0.2, 0.4) * length
        parts.append(
            Primitive(
                box,
                (0, rng.uniform(0.0, 0.2) * length, rng.uniform(0.08, 0.15)),
                half=(w / 2 * 0.6, cabin_l / 2, rng.uniform(0.08, 0.15)),
                rounding=0.03,
            )
        )
    if rng.random() < 0.5:
        mast_h = rng.uniform(0.5, 1.0)
        parts.append(Primitive(capsule, (0, -0.05 * length, mast_h / 2), half_length=mast_h / 2, radius=0.03))
    return Union(*parts, smooth=0.01)


def _legs(rng: Rng, x: float, y: float, height: float, size: float) -> list[Node]:
    square = rng.random() < 0.5
    return [
        Primitive(box, (sx * x, sy * y, height / 2), half=(size, size, height / 2))
        if square
        else Primitive(cylinder, (sx * x, sy * y, height / 2), radius=size, half_height=height / 2)
        for sx in (-1, 1)
        for sy in (-1, 1)
    ]


CATEGORIES: dict[str, Callable[[Rng], Node]] = {
    f.__name__: f for f in (chair, table, sofa, bed, lamp, shelf, mug, bottle, vase, airplane, car, boat)
}


GENERATORS: dict[str, Callable[[Rng], Node]] = {**CATEGORIES, "composition": composition}
"""The 12 object families and the random compositions of primitives, which belong to no family."""


def make_tree(category: str, seed: int) -> Node:
    """The same category and seed always give the same shape."""
    if category not in GENERATORS:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(GENERATORS)}")
    index = list(GENERATORS).index(category)
    return GENERATORS[category](np.random.default_rng([index, seed]))
