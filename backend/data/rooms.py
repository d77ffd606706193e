"""Synthetic rooms, after Convolutional Occupancy Networks' synthetic room data set: a floor, walls and furniture.

Each room, in metres before normalisation:
- a floor slab 0.12-0.2 m thick under a 4-6 m footprint: a rectangle, or (a third of the rooms) an L;
- 2 to 4 walls, 0.1-0.2 m thick and 2.0-2.7 m high, along consecutive edges of the footprint, flush with its
  border and standing through the slab; no ceiling, so the room is open at the top. A wall may have a door:
  a full-height gap, or a hole under a lintel;
- 3 to 8 pieces of furniture: the procedural families (chairs, tables, sofas, beds, lamps, shelves, floor vases)
  and random compositions of primitives, at plausible sizes, turned about Z, standing on the floor (sunk SINK into
  it) and at least CLEARANCE from each other, from the walls and from the space in front of a door.

Everything is a signed-distance tree, so labels are exact. The room is normalised like every other shape (bounding
box centred, longest side 1, Z up). A piece of furniture is small in a normalised room (a chair leg is under 1% of
it), so the surface is sampled part by part, each part from a marching-cubes mesh at its own scale, projected onto
the exact surface; samples buried in another part (a leg's foot in the floor) are dropped, which leaves the samples
uniform over the room's surface. Half of the near-surface points are drawn from the furniture's samples, and half
of all near-surface points lie closer to the surface than the families' (NEAR_SIGMAS), so labels resolve a chair leg.

Files: the layout of procedural.py under ROOT/room/<id>/, plus room.json (each part: its kind, box and placement,
in metres and in the canonical frame). `loc` and `scale` in points.npz map the canonical frame back to metres.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..outputs import atomic_write
from ..surface.mesh import Mesh
from .procedural import generate, shape_mesh, surface_samples, tree_bounds, write_files
from .sdf import Node, Normalized, Placed, Primitive, Union, box
from .shapes import GENERATORS

CATEGORY = "room"
DEFAULT_COUNTS = {"train": 300, "val": 20, "test": 20}
ROOM_STREAM = 7417  # rooms draw from numpy streams seeded [ROOM_STREAM, seed, ...], apart from make_tree's
FURNITURE = {"chair": 3.0, "table": 2.0, "sofa": 1.0, "bed": 0.7, "lamp": 1.0, "shelf": 1.0, "vase": 0.6}
FURNITURE["composition"] = 2.0  # random objects of no family
SMALL_FURNITURE = ("chair", "lamp")  # the last two tries for a place, when bigger pieces no longer fit
CLEARANCE = 0.1  # metres between two pieces, and between a piece and a wall
EDGE_MARGIN = 0.05  # metres between a piece and a floor edge that has no wall
SINK = 0.005  # metres a piece stands into the floor, so it sits on it, never above it
DOOR_SPACE = 0.8  # metres kept free in front of a door
NEAR_SIGMAS = (0.005, 0.02)  # near-surface offsets (canonical units), half each: fine detail and the room
FURNITURE_NEAR_SHARE = 0.5
PART_RESOLUTION = 128  # marching cubes over each part's own box, for where the surface samples come from
BURIED = 1e-4  # a surface sample this far (canonical) inside the room lies inside another part
SURFACE = 100_000  # surface samples of every room (furniture gets about a tenth: its share of the area)


@dataclass
class Part:
    """The floor, a wall or a piece of furniture: a tree in its own frame and where it stands in the room."""

    kind: str  # "floor", "wall" or the furniture's family
    local: Node  # metres, in its own frame
    low: np.ndarray  # the surface's bounding box in its own frame
    high: np.ndarray
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))  # room = R(yaw) (scale * local) + offset
    yaw: float = 0.0
    scale: float = 1.0

    @property
    def is_furniture(self) -> bool:
        return self.kind not in ("floor", "wall")

    @property
    def tree(self) -> Node:
        """The part in the room, in metres."""
        if self.yaw == 0.0 and self.scale == 1.0 and not self.offset.any():
            return self.local
        return Placed(self.local, self.offset, self.yaw, self.scale)

    def to_room(self, points: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return (np.asarray(points, np.float64) * self.scale) @ rotation.T + self.offset

    def room_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The part's bounding box in the room (of its turned box: a little larger when it is turned)."""
        corners = np.stack(np.meshgrid(*zip(self.low, self.high, strict=True), indexing="ij"), -1).reshape(-1, 3)
        placed = self.to_room(corners)
        return placed.min(0), placed.max(0)


@dataclass
class Room:
    seed: int
    parts: list[Part]  # the floor, the walls, then the furniture
    low: np.ndarray  # the room's bounding box, metres
    high: np.ndarray
    wall_height: float
    floor_thickness: float
    doors: list[dict]

    def __post_init__(self) -> None:
        self.center = (self.low + self.high) / 2
        self.size = float((self.high - self.low).max())
        self.shape = self.canonical(Union(*(p.tree for p in self.parts)))

    def canonical(self, tree: Node) -> Normalized:
        """A tree in metres seen in the room's canonical frame (centred, longest side 1)."""
        return Normalized(tree, self.center, self.size)

    def to_canonical(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - self.center) / self.size

    @property
    def furniture(self) -> list[Part]:
        return [p for p in self.parts if p.is_furniture]

    def layout(self) -> dict:
        """What room.json holds: each part's kind, placement and box, in metres and in the canonical frame."""

        def boxes(low: np.ndarray, high: np.ndarray) -> dict:
            return {
                "box_m": [_rounded(low), _rounded(high)],
                "box": [_rounded(self.to_canonical(low)), _rounded(self.to_canonical(high))],
            }

        parts = []
        for p in self.parts:
            entry = {"kind": p.kind, **boxes(*p.room_box())}
            if p.is_furniture:
                entry.update(position_m=_rounded(p.to_room((p.low + p.high) / 2)[:2]))
                entry.update(yaw_degrees=round(math.degrees(p.yaw) % 360, 2), scale=round(p.scale, 4))
            parts.append(entry)
        return {
            "seed": self.seed,
            "loc": _rounded(self.center),
            "scale": round(self.size, 5),
            "wall_height_m": round(self.wall_height, 4),
            "floor_thickness_m": round(self.floor_thickness, 4),
            "wall_top": round(float(self.to_canonical([0, 0, self.wall_height])[2]), 5),
            "floor_top": round(float(self.to_canonical([0, 0, 0])[2]), 5),
            "doors": self.doors,
            "parts": parts,
        }


def _rounded(values) -> list[float]:
    return [round(float(v), 5) for v in values]


def make_room(seed: int, bounds_resolution: int = 32) -> Room:
    """The same seed always gives the same room."""
    rng = np.random.default_rng([ROOM_STREAM, seed])
    width, depth = rng.uniform(4.0, 6.0, 2)
    floor_t, wall_t, wall_h = rng.uniform(0.12, 0.2), rng.uniform(0.1, 0.2), rng.uniform(2.0, 2.7)
    notch = None
    if rng.random() < 1 / 3:  # an L: one corner cut away
        notch = (int(rng.integers(4)), width * rng.uniform(0.3, 0.5), depth * rng.uniform(0.3, 0.5))
    polygon = _footprint(width, depth, notch)
    outer = (np.array([-width / 2, -depth / 2]), np.array([width / 2, depth / 2]))
    floor_low = np.array([-width / 2, -depth / 2, -floor_t])
    floor_high = np.array([width / 2, depth / 2, 0.0])
    floor: Node = _box(floor_low, floor_high)
    obstacles = []  # 2-D boxes (center, half, yaw) the furniture keeps CLEARANCE from
    if notch is not None:  # two boxes (the exact distance outside, as for walls with a door)
        low, high = _notch_box(outer, notch)
        boxes = []
        for axis in (0, 1):  # the rectangle less the notch's strip along x, and along y
            box_low, box_high = floor_low.copy(), floor_high.copy()
            if high[axis] >= outer[1][axis]:
                box_high[axis] = low[axis]
            else:
                box_low[axis] = high[axis]
            boxes.append(_box(box_low, box_high))
        floor = Union(*boxes)
        obstacles.append(((low + high) / 2, (high - low) / 2 + EDGE_MARGIN - CLEARANCE, 0.0))
    parts = [Part("floor", floor, floor_low, floor_high)]
    doors = []
    count = int(rng.integers(2, 5))
    first = int(rng.integers(len(polygon)))
    for k in range(first, first + count):
        wall, low, high, door = _wall(rng, polygon, k % len(polygon), wall_t, wall_h, floor_t)
        parts.append(Part("wall", wall, low, high))
        obstacles.append(((low[:2] + high[:2]) / 2, (high[:2] - low[:2]) / 2, 0.0))
        if door is not None:
            centre, half = door.pop("space")
            obstacles.append((centre, half, 0.0))
            doors.append(door)
    for tries in range(20):
        furniture = _furnish(rng, int(rng.integers(3, 9)), seed, tries, outer, obstacles, wall_h, bounds_resolution)
        if len(furniture) >= 3:
            break
    else:
        raise RuntimeError(f"room {seed}: no place for three pieces of furniture")
    return Room(seed, parts + furniture, floor_low, np.r_[floor_high[:2], wall_h], wall_h, floor_t, doors)


def _footprint(width: float, depth: float, notch: tuple[int, float, float] | None) -> list[np.ndarray]:
    """The floor's outline, counter-clockwise: a rectangle, or an L where corner `notch[0]` is cut away."""
    corners = [np.array(c) for c in ((-width / 2, -depth / 2), (width / 2, -depth / 2), (width / 2, depth / 2))]
    corners.append(np.array((-width / 2, depth / 2)))
    if notch is None:
        return corners
    k, nx, ny = notch
    corner = corners[k]
    cut = np.sign(corner) * (nx, ny)

    def toward(other: np.ndarray) -> np.ndarray:
        along = 0 if other[0] != corner[0] else 1
        moved = corner.copy()
        moved[along] -= cut[along]
        return moved

    return corners[:k] + [toward(corners[k - 1]), corner - cut, toward(corners[(k + 1) % 4])] + corners[k + 1 :]


def _notch_box(outer: tuple[np.ndarray, np.ndarray], notch: tuple[int, float, float]) -> tuple[np.ndarray, np.ndarray]:
    k, nx, ny = notch
    corner = np.array([outer[k in (1, 2)][0], outer[k in (2, 3)][1]])
    inner = corner - np.sign(corner) * (nx, ny)
    return np.minimum(corner, inner), np.maximum(corner, inner)


def _wall(
    rng: np.random.Generator, polygon: list[np.ndarray], k: int, thickness: float, height: float, floor_t: float
) -> tuple[Node, np.ndarray, np.ndarray, dict | None]:
    """The wall on edge k of the outline, inside it and flush with it; longer by its thickness at an inner corner,
    so two walls there meet. Some walls get a door."""
    n = len(polygon)
    a, b = polygon[k], polygon[(k + 1) % n]
    direction = (b - a) / np.linalg.norm(b - a)
    inward = np.array([-direction[1], direction[0]])  # left of a counter-clockwise outline

    def reflex(i: int) -> bool:  # a right turn at vertex i: an inner corner
        d_in, d_out = polygon[i] - polygon[i - 1], polygon[(i + 1) % n] - polygon[i]
        return d_in[0] * d_out[1] - d_in[1] * d_out[0] < 0

    start = a - direction * thickness * reflex(k)
    end = b + direction * thickness * reflex((k + 1) % n)
    low, high = _span(start, end, inward, thickness, -floor_t, height)
    length = float(np.linalg.norm(end - start))
    if length < 2.5 or rng.random() > 0.35:
        return _box(low, high), low, high, None
    width = rng.uniform(0.8, 1.0)
    along = rng.uniform(0.3 + thickness + width / 2, length - 0.3 - thickness - width / 2)
    top = rng.uniform(2.0, 2.1)
    if top > height - 0.2 or rng.random() < 0.5:
        top = height  # no lintel: a gap from the floor up
    # Boxes side by side, not a box minus the doorway: a union of boxes keeps the exact distance outside it,
    # which the projections onto the surface (bounds, surface samples) rely on.
    jambs = [start + direction * (along - width / 2), start + direction * (along + width / 2)]
    pieces = [_box(*_span(start, jambs[0], inward, thickness, -floor_t, height))]
    pieces.append(_box(*_span(jambs[1], end, inward, thickness, -floor_t, height)))
    pieces.append(_box(*_span(jambs[0], jambs[1], inward, thickness, -floor_t, 0.0)))  # the sill, in the slab
    if top < height:
        pieces.append(_box(*_span(jambs[0], jambs[1], inward, thickness, top, height)))  # the lintel
    centre = start + direction * along + inward * thickness / 2
    space = (
        centre + inward * (thickness + DOOR_SPACE) / 2,
        np.abs(direction) * width / 2 + np.abs(inward) * DOOR_SPACE / 2,
    )
    door = {"center_m": _rounded(centre), "width_m": round(width, 4), "height_m": round(top, 4)}
    return Union(*pieces), low, high, {**door, "space": space}


def _span(
    a: np.ndarray, b: np.ndarray, inward: np.ndarray, thickness: float, bottom: float, top: float
) -> tuple[np.ndarray, np.ndarray]:
    """The box from a to b along a wall, `thickness` inward, from `bottom` to `top`."""
    corners = np.stack([a, b, a + inward * thickness, b + inward * thickness])
    return np.r_[corners.min(0), bottom], np.r_[corners.max(0), top]


def _box(low: np.ndarray, high: np.ndarray) -> Primitive:
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return Primitive(box, tuple((low + high) / 2), half=tuple((high - low) / 2))


def _furnish(
    rng: np.random.Generator,
    count: int,
    seed: int,
    attempt: int,
    outer: tuple[np.ndarray, np.ndarray],
    obstacles: list[tuple[np.ndarray, np.ndarray, float]],
    wall_height: float,
    bounds_resolution: int,
) -> list[Part]:
    """Up to `count` pieces placed at random where they fit; a piece that fits nowhere is swapped for a smaller one."""
    placed: list[Part] = []
    taken = list(obstacles)
    families, weights = list(FURNITURE), np.array(list(FURNITURE.values()))
    for slot in range(count):
        for tries in range(4):
            family = str(rng.choice(families, p=weights / weights.sum())) if tries < 2 else SMALL_FURNITURE[tries - 2]
            piece_rng = np.random.default_rng([ROOM_STREAM, seed, attempt, slot, tries])
            part = _piece(piece_rng, family, bounds_resolution)
            if (part.high[2] - part.low[2]) * part.scale > wall_height - 0.2:
                continue
            if _place(rng, part, outer, taken):
                placed.append(part)
                half = (part.high[:2] - part.low[:2]) / 2 * part.scale
                taken.append((part.to_room((part.low + part.high) / 2)[:2], half, part.yaw))
                break
    return placed


def _piece(rng: np.random.Generator, family: str, bounds_resolution: int) -> Part:
    """One piece of furniture in its own frame, with the scale that makes it a plausible size."""
    tree = GENERATORS[family](rng)
    low, high = tree_bounds(tree, resolution=bounds_resolution)
    extent = high - low
    if family == "vase":  # the family's vases are for a table: a floor vase is larger
        scale = rng.uniform(0.4, 1.0) / extent[2]
    elif family == "composition":  # no size of its own: an object of 0.4-1.2 m
        scale = rng.uniform(0.4, 1.2) / extent.max()
    else:  # the families are drawn in metres
        scale = rng.uniform(0.9, 1.1)
    return Part(family, tree, low, high, scale=float(scale))


def _place(
    rng: np.random.Generator,
    part: Part,
    outer: tuple[np.ndarray, np.ndarray],
    taken: list[tuple[np.ndarray, np.ndarray, float]],
    tries: int = 40,
) -> bool:
    """Give the part a place on the floor and a turn about Z that keep it clear of everything taken; False if none."""
    half = (part.high[:2] - part.low[:2]) / 2 * part.scale
    centre_local = (part.low + part.high) / 2 * part.scale
    for _ in range(tries):
        if rng.random() < 0.6:  # most furniture is square to the walls
            yaw = float(rng.integers(4) * math.pi / 2 + rng.normal(scale=0.05))
        else:
            yaw = float(rng.uniform(0, 2 * math.pi))
        reach = _reach(half, yaw) + EDGE_MARGIN
        if np.any(outer[1] - outer[0] < 2 * reach):
            continue
        xy = rng.uniform(outer[0] + reach, outer[1] - reach)
        if any(_overlap((xy, half + CLEARANCE, yaw), other) for other in taken):
            continue
        c, s = math.cos(yaw), math.sin(yaw)
        turned = np.array([c * centre_local[0] - s * centre_local[1], s * centre_local[0] + c * centre_local[1]])
        part.offset = np.r_[xy - turned, -SINK - part.low[2] * part.scale]
        part.yaw = yaw
        return True
    return False


def _reach(half: np.ndarray, yaw: float) -> np.ndarray:
    """Half the extent along x and y of a box of half-sides `half` turned by `yaw`."""
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    return np.array([c * half[0] + s * half[1], s * half[0] + c * half[1]])


def _overlap(a: tuple[np.ndarray, np.ndarray, float], b: tuple[np.ndarray, np.ndarray, float]) -> bool:
    """Whether two turned rectangles (centre, half-sides, yaw) overlap: no separating axis among their sides."""
    axes = []
    for _, _, yaw in (a, b):
        c, s = math.cos(yaw), math.sin(yaw)
        axes.append((np.array([c, s]), np.array([-s, c])))
    gap = np.asarray(b[0]) - np.asarray(a[0])
    for axis in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        ra = a[1][0] * abs(axes[0][0] @ axis) + a[1][1] * abs(axes[0][1] @ axis)
        rb = b[1][0] * abs(axes[1][0] @ axis) + b[1][1] * abs(axes[1][1] @ axis)
        if abs(gap @ axis) > ra + rb:
            return False
    return True


def room_surface(
    room: Room, count: int, rng: np.random.Generator, resolution: int = PART_RESOLUTION
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` points on the room's exact surface (canonical frame), uniform over its area, their outward normals,
    and the index in room.parts of the part each lies on.

    Each part is meshed by marching cubes over its own box at `resolution` (a chair leg is several cells thick),
    sampled by area and projected onto its exact surface; samples inside another part are dropped.
    """
    meshes, shapes = [], []
    for part in room.parts:
        centre, size = (part.low + part.high) / 2, float((part.high - part.low).max())
        mesh = shape_mesh(Normalized(part.local, centre, size), resolution)
        vertices = room.to_canonical(part.to_room(mesh.vertices.astype(np.float64) * size + centre))
        meshes.append(Mesh(vertices, mesh.faces))
        shapes.append(room.canonical(part.tree))
    areas = np.array([_area(m) for m in meshes])
    points, normals, owners = [], [], []
    kept = 0
    while kept < count:
        draws = rng.multinomial(int((count - kept) * 1.3) + 64, areas / areas.sum())
        for i, n in enumerate(draws):
            if n == 0:
                continue
            p, normal = surface_samples(shapes[i], meshes[i], int(n), rng)
            with torch.no_grad():
                exposed = (room.shape(torch.from_numpy(p)) > -BURIED).numpy()
            points.append(p[exposed])
            normals.append(normal[exposed])
            owners.append(np.full(int(exposed.sum()), i))
            kept += int(exposed.sum())
    chosen = rng.permutation(kept)[:count]
    return np.concatenate(points)[chosen], np.concatenate(normals)[chosen], np.concatenate(owners)[chosen]


def _area(mesh: Mesh) -> float:
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    return float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() / 2)


def near_points(
    room: Room, surface: np.ndarray, owners: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Points around the surface: FURNITURE_NEAR_SHARE of them around the furniture, offsets of NEAR_SIGMAS."""
    furniture = np.flatnonzero(np.isin(owners, [i for i, p in enumerate(room.parts) if p.is_furniture]))
    n_furniture = int(count * FURNITURE_NEAR_SHARE) if len(furniture) else 0
    chosen = np.concatenate([rng.choice(furniture, n_furniture), rng.choice(len(surface), count - n_furniture)])
    sigma = rng.choice(NEAR_SIGMAS, count)[:, None]
    return surface[chosen] + rng.normal(size=(count, 3)) * sigma


def write_room(
    folder: Path,
    category: str,
    seed: int,
    n_uniform: int,
    n_near: int,
    n_surface: int,
    views: int,
    image_size: int,
    resolution: int = PART_RESOLUTION,
) -> None:
    """All files of one room (the signature of procedural.write_shape); skipped when already complete."""
    if (folder / "done").exists():
        return
    torch.set_num_threads(1)
    room = make_room(seed)
    rng = np.random.default_rng([ROOM_STREAM, seed, 1])
    surface, normals, owners = room_surface(room, n_surface, rng, resolution)
    near = near_points(room, surface, owners, n_near, rng)
    with atomic_write(folder / "room.json") as partial:
        partial.write_text(json.dumps(room.layout(), indent=1))
    write_files(folder, room.shape, surface, normals, near, n_uniform, rng, views, image_size, room.center, room.size)


def generate_rooms(
    root: str | Path,
    counts: dict[str, int] | None = None,
    workers: int = 1,
    views: int = 0,
    image_size: int = 128,
    surface: int = SURFACE,
    resolution: int = PART_RESOLUTION,
) -> Path:
    """Write (or finish writing) a data set of rooms under root/room/; returns root."""
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    write = functools.partial(write_room, resolution=resolution)
    return generate(root, [CATEGORY], counts, views, image_size, workers, surface, surface, write=write)
