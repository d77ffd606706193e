"""The seam between the engines and everything that runs a model: one `Engine` interface, and the one way from an
observation to a latent to a mesh in the source's frame that the API, the worker and `evaluate` all take.

An engine is one model loaded on one engine (PyTorch on a device, or the built-in CPU runtime). It encodes an
observation to a latent, gives the logits field of a code in its own tensors, batches a field for extraction,
and brings the extraction stages it can run (`backend.surface.pipeline.Stages`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..colors import with_input_colors
from ..config import BOX_SIZE, ModelConfig, PointLatentLayout, ViewLatentLayout
from ..inputs import Observation
from ..inputs.attention import PointAttentionInput
from ..inputs.neighbours import NearestWithin
from ..inputs.normals import SPARSEST, field_normals
from ..inputs.open_space import OpenSpace, carving
from ..surface.field import CancelCheck, Evaluator, Progress
from ..surface.latent import Latent, check_latent
from ..surface.mesh import Mesh
from ..surface.options import ExtractOptions
from ..surface.pipeline import ExtractStats, Stages, extract_mesh
from ..surface.silhouettes import find_sheets, sheet_points

Field = Any
"""An engine's own field: a callable from canonical points (N, 3) to logits (N,), in the engine's tensors (torch
tensors on a device, numpy arrays), so that weighted sums of fields stay in them."""


class Engine(Protocol):
    """One model, loaded on one engine."""

    name: str  # the model's
    device: Any  # where it runs (a torch.device, or "cpu")
    config: ModelConfig
    stages: Stages  # what extraction can do after marching cubes here: normals, and decimation and refinement or not

    def encode(self, observation: Observation, seed: int = 0) -> Latent:
        """The latent of an observation of the model's input kind, with the frame that maps results back; `seed`
        draws the points of models that read a fixed number."""
        ...

    def field(self, code: Any) -> Field:
        """The logits of one code (the model's latent layout, float16 or float32)."""
        ...

    def evaluator(self, field: Field, progress: Progress | None, cancel: CancelCheck | None) -> Evaluator:
        """The field in batches this engine runs well, numpy in and out, with progress and cancellation."""
        ...


@dataclass
class Reconstruction:
    mesh: Mesh  # in the source's own frame
    latent: Latent
    stats: dict


def latent_field(engine: Engine, latent: Latent) -> Field:
    """The latent's logits: its own code's, or for a blend of fields the weighted sum of its parts'. A latent of
    another model is refused."""
    check_latent(latent, engine.name, engine.config)
    if not latent.parts:
        return engine.field(latent.code)
    fields = [(weight, engine.field(part.code)) for weight, part in latent.parts]
    return lambda points: sum(weight * field(points) for weight, field in fields)


def with_found_sheets(engine: Engine, code: np.ndarray) -> np.ndarray:
    """A views code of several pictures with the sheets that keep their every silhouette pixel, found by driving
    the engine's own field of the code as encoded (`backend.surface.silhouettes`); one picture's code as it is."""
    layout = ViewLatentLayout.of(engine.config)
    affines, features, masks, _ = layout.split(code)
    if len(affines) == 1:
        return code
    evaluate = engine.evaluator(engine.field(code), None, None)
    sheets = find_sheets(affines, masks, evaluate, ExtractOptions().threshold_logit(engine.config.threshold))
    return layout.join(affines, features, masks, sheets)


def encode_cloud(
    engine: Engine, prepared: PointAttentionInput, encode: Callable[[PointAttentionInput], np.ndarray]
) -> tuple[np.ndarray, dict]:
    """A point-attention code of a prepared cloud, by the engine's own `encode`, and what became of the input
    (`PointAttentionInput.summary`). A cloud without normals, for a model that orients them and unless it is
    sparse, is read twice: its normals found by driving the engine's field of the first reading
    (`backend.inputs.normals`)."""
    code = encode(prepared)
    if prepared.has_normals or not engine.config.orient_normals or prepared.unit > SPARSEST:
        return code, prepared.summary()
    evaluate = engine.evaluator(engine.field(code), None, None)
    normals = field_normals(prepared.points, prepared.neighbours, prepared.unit, evaluate)
    found = float(np.any(normals != 0, axis=1).mean())
    oriented = dataclasses.replace(prepared, normals=normals, has_normals=True, estimated=found)
    return encode(oriented), oriented.summary()


@dataclass(frozen=True)
class InputScan:
    """A point-attention latent's input cloud, as `backend.surface.snap.Scan`."""

    points: np.ndarray
    unit: float

    def nearest(self, queries: np.ndarray, k: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
        return NearestWithin(self.points, radius, k)(queries)


def input_scan(config: ModelConfig, latent: Latent) -> InputScan | None:
    """The cloud a latent was encoded from, in the canonical frame: a point-attention latent holds it. None for
    other models, and for a blend, whose surface lies between its ends' clouds."""
    if config.architecture != "attention" or latent.parts:
        return None
    _, unit, points, _ = PointLatentLayout.of(config).split(np.asarray(latent.code, np.float32))
    return InputScan(np.ascontiguousarray(points), unit)


def open_spaces(engine: Engine, latent: Latent, field: Field) -> list[OpenSpace]:
    """The open space of a point-attention latent's scan (`field` its logits), or of each end of a blend that
    weighs it; none for other models and for clouds too sparse for found normals, which tell open space from a
    partial scan's inside. An end's field is built only if its air side is asked about."""
    config = engine.config
    if config.architecture != "attention" or not config.orient_normals:
        return []
    ends = [part for weight, part in latent.parts if weight > 0] if latent.parts else [latent]
    spaces = []
    for end in ends:
        scan = input_scan(config, end)
        if scan is None or scan.unit > SPARSEST:
            return []

        def normals(scan: InputScan = scan, end: Latent = end) -> tuple[np.ndarray, np.ndarray]:
            logits = engine.evaluator(field if end is latent else engine.field(end.code), None, None)
            return scan.points, field_normals(scan.points, None, scan.unit, logits)

        spaces.append(OpenSpace(scan.points, scan.unit, BOX_SIZE, normals))
    return spaces


def silhouette_seeds(config: ModelConfig, latent: Latent) -> np.ndarray | None:
    """Where a views latent's sheets lie, one point per silhouette pixel (`backend.surface.silhouettes`), so the
    extraction finds every part a picture shows however thin; None for other models and for blends."""
    if config.architecture != "views" or latent.parts:
        return None
    affines, _, masks, sheets = ViewLatentLayout.of(config).split(np.asarray(latent.code, np.float32))
    return sheet_points(affines, masks, sheets)


def extract(
    engine: Engine,
    latent: Latent,
    options: ExtractOptions,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    stats: ExtractStats | None = None,
) -> tuple[Mesh, ExtractStats]:
    """The latent's mesh in its source's frame (float64), and the stage times and counts."""
    field = latent_field(engine, latent)
    evaluate = engine.evaluator(field, progress, cancel)
    config = engine.config
    spaces = open_spaces(engine, latent, field)
    if spaces:
        evaluate.carve = carving(spaces, options.threshold_logit(config.threshold))
    mesh, stats = extract_mesh(
        evaluate,
        options,
        config.threshold,
        config.mesh_normals,
        engine.stages,
        progress,
        stats,
        input_scan(config, latent),
        silhouette_seeds(config, latent),
    )
    return mesh.transformed(latent.frame.as_array(), latent.frame.scale), stats


def reconstruct(
    engine: Engine,
    observation: Observation,
    options: ExtractOptions,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> Reconstruction:
    """Encode, extract, and colour the mesh from the input's colours where it has them; the encoding is timed
    as the stage "encode" beside extraction's."""
    start = time.perf_counter()
    if progress is not None:
        progress("encode", 0.0)
    latent = engine.encode(observation)
    stats = ExtractStats(seconds={"encode": time.perf_counter() - start}, source=latent.source)
    mesh, stats = extract(engine, latent, options, progress, cancel, stats)
    return Reconstruction(with_input_colors(mesh, observation, latent.frame), latent, stats.as_dict())
