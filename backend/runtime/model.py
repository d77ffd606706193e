"""A shipped model on ONNX Runtime: encode a canonical-frame observation to a latent, evaluate occupancy logits.

The inputs are what the network itself sees, as backend/export_onnx.py describes: points already normalised to
the canonical unit cube (what `backend.inputs.pointcloud.normalize_points` returns, or the runtime's own
torch-free version of it), or an image already prepared (`backend.inputs.image.prepare_image`: (3, S, S) float32).
Normalising the source and mapping the mesh back to its frame are the caller's part, as in the PyTorch backend.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..config import ModelConfig, PointLatentLayout, ViewLatentLayout
from ..errors import InputError, ModelLoadError
from ..inputs.attention import PointAttentionInput
from ..inputs.neighbours import LEVELS, RADIUS, Candidates, level_size, level_unit
from ..inputs.views import PreparedViews
from ..registry import find_model
from ..surface.silhouettes import first_sheets
from ..weights_file import read_config, read_header
from .graphs import META_HEADER_SHA256, META_STAGE, graph_path, header_digest, stages

# Query points per decoder run: as many as keep one hidden layer's activations about this size, in cache.
# Measured on 2 cores: the global-code decoder (128 wide) is fastest at 8,192 points (16,384 ran a fifth
# slower), the triplane decoder (32 wide) at 32,768 (8,192 ran a fifth slower).
ACTIVATION_BYTES = 4 << 20
POINT_CHUNK = 8192  # point attention: queries per decoder run (each reads two levels of 16 neighbours)


class RuntimeModel:
    """One checkpoint's encoder and decoder graphs in ONNX Runtime sessions (each made on first use)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        """`path` is a `.safetensors` checkpoint with its graphs beside it; `threads` 0 means `default_threads()`."""
        self.path = Path(path)
        self.name = self.path.stem
        self.config: ModelConfig = read_config(self.path)
        self.threads = threads or default_threads()
        self._digest = header_digest(read_header(self.path)[1])
        self._sessions: dict[str, ort.InferenceSession] = {}
        for stage in stages(self.config.architecture):
            if not graph_path(self.path, stage).is_file():
                raise ModelLoadError(
                    f"Model '{self.name}' has no {graph_path(self.path, stage).name} beside {self.path}, so the "
                    f"built-in CPU runtime cannot run it. Export it with 'python -m backend export-onnx {self.path}' "
                    "(needs PyTorch), or use the PyTorch backend."
                )

    @property
    def chunk(self) -> int:
        """Query points per decoder run (see ACTIVATION_BYTES)."""
        return max(1024, ACTIVATION_BYTES // (4 * self.config.decoder_hidden))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.config.latent_shape

    def encode(self, observation: np.ndarray | PointAttentionInput | PreparedViews) -> np.ndarray:
        """The latent (float32, `latent_shape`) of one canonical-frame network input: points (N, 3) in the unit
        cube for point-cloud models, a prepared image (3, S, S) for image models, a 0/1 grid (R, R, R) for voxel
        models (as `backend.api` prepares them); point attention's `PointAttentionInput` and views'
        `PreparedViews`, to their flat latents."""
        config = self.config
        if isinstance(observation, PreparedViews):
            features, *thickness = self._session("encoder").run(None, {"images": observation.images})
            masks = observation.masks
            sheets = first_sheets(masks, thickness[0] if thickness else None)
            return ViewLatentLayout.of(config).join(observation.affines, features, masks, sheets)
        if isinstance(observation, PointAttentionInput):
            arrays = observation.arrays()
            session = self._session("encoder")
            feed = {i.name: np.ascontiguousarray(arrays[i.name]) for i in session.get_inputs()}
            planes, features = session.run(None, feed)
            return PointLatentLayout.of(config).join(planes, observation.unit, observation.points, features)
        observation = np.asarray(observation)
        if config.input_kind == "pointcloud":
            if observation.ndim != 2 or observation.shape[1] != 3 or len(observation) == 0:
                raise InputError(f"The encoder takes canonical points (N, 3); got shape {observation.shape}.")
        else:
            expected, what = {
                "image": ((3, config.image_size, config.image_size), "a prepared image"),
                "voxels": ((config.voxel_resolution,) * 3, "an occupancy grid"),
            }[config.input_kind]
            if observation.shape != expected:
                raise InputError(f"The encoder takes {what} {expected}; got shape {observation.shape}.")
        session = self._session("encoder")
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(observation, dtype=np.float32)}
        return session.run(None, feed)[0].reshape(self.latent_shape)

    def field(self, code: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The logits of one latent as a function of canonical points (N, 3): what mesh extraction drives."""
        if self.config.architecture == "attention":
            return self._point_field(code)
        if self.config.architecture == "views":
            return self._view_field(code)
        code = self._code(code)
        return lambda points: self.logits(code, points)

    def _view_field(self, code: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        if problem := self.config.latent_size_problem(np.asarray(code).size):
            raise InputError(f"The latent does not fit model '{self.name}' ({problem}).")
        arrays = ViewLatentLayout.of(self.config).split(np.asarray(code, np.float32))
        names = ("affines", "features", "masks", "sheets")
        fixed = dict(zip(names, (np.ascontiguousarray(a) for a in arrays), strict=True))
        session = self._session("decoder")
        chunk = max(1024, self.chunk // len(fixed["affines"]))

        def logits(queries: np.ndarray) -> np.ndarray:
            queries = np.ascontiguousarray(queries, dtype=np.float32)
            out = np.empty(len(queries), dtype=np.float32)
            for start in range(0, len(queries), chunk):
                out[start : start + chunk] = session.run(None, {**fixed, "queries": queries[start : start + chunk]})[0]
            return out

        return logits

    def _point_field(self, code: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """Point attention: what each point offers its queries, once (the terms graph); then, batch after batch,
        each level's candidate neighbours (numpy) and the decoder graph, which picks the nearest among them."""
        if problem := self.config.latent_size_problem(np.asarray(code).size):
            raise InputError(f"The latent does not fit model '{self.name}' ({problem}).")
        planes, unit, points, features = PointLatentLayout.of(self.config).split(np.asarray(code, np.float32))
        points, features = np.ascontiguousarray(points), np.ascontiguousarray(features)
        session = self._session("terms")
        terms = dict(
            zip((o.name for o in session.get_outputs()), session.run(None, {"features": features}), strict=True)
        )
        radii = [RADIUS * level_unit(unit, level) for level in range(LEVELS)]
        searches = [Candidates(points[: level_size(len(points), level)], radii[level]) for level in range(LEVELS)]
        fixed = {"planes": np.ascontiguousarray(planes), "unit": np.array(unit, dtype=np.float32), "points": points}
        fixed.update(terms)
        session = self._session("decoder")

        def logits(queries: np.ndarray) -> np.ndarray:
            queries = np.ascontiguousarray(queries, dtype=np.float32)
            out = np.empty(len(queries), dtype=np.float32)
            candidates = [search(queries) for search in searches]
            counts = [(c >= 0).sum(axis=1) for c in candidates]  # rows hold their candidates first, then -1
            order = np.argsort(sum(counts), kind="stable")  # similar rows together: little padding
            for start in range(0, len(queries), POINT_CHUNK):
                rows = order[start : start + POINT_CHUNK]
                feed = {**fixed, "queries": queries[rows]}
                for level, (found, count) in enumerate(zip(candidates, counts, strict=True)):
                    width = max(self.config.neighbours, int(count[rows].max()))
                    feed[f"candidates{level}"] = _columns(found[rows], width)
                out[rows] = session.run(None, feed)[0]
            return out

        return logits

    def logits(self, code: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Occupancy logits (N,) float32 of canonical points (N, 3) for a latent (float16 or float32, any shape
        holding `latent_shape`'s number of values, as the worker protocol carries it)."""
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise InputError(f"Query points must be an (N, 3) array; got shape {points.shape}.")
        if self.config.architecture in ("attention", "views"):
            return self.field(code)(points)
        code = self._code(code)
        points = np.ascontiguousarray(points, dtype=np.float32)
        session = self._session("decoder")
        out = np.empty(len(points), dtype=np.float32)
        for start in range(0, len(points), self.chunk):
            chunk = points[start : start + self.chunk]
            out[start : start + len(chunk)] = session.run(None, {"code": code, "points": chunk})[0]
        return out

    def _code(self, code: np.ndarray) -> np.ndarray:
        code = np.asarray(code)
        if code.size != int(np.prod(self.latent_shape)):
            raise InputError(
                f"The latent has {code.size} values but model '{self.name}' uses {int(np.prod(self.latent_shape))}."
            )
        return np.ascontiguousarray(code, dtype=np.float32).reshape(self.latent_shape)

    def _session(self, stage: str) -> ort.InferenceSession:
        if stage not in self._sessions:
            self._sessions[stage] = self._open(stage)
        return self._sessions[stage]

    def _open(self, stage: str) -> ort.InferenceSession:
        path = graph_path(self.path, stage)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about nodes it cannot constant-fold are not the user's concern
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads yield Blender's CPU
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's errors share no base class below Exception
            if found := re.search(r'External data path does not exist: "([^"]+)"', str(exc)):
                original = Path(found.group(1)).stem
                raise ModelLoadError(
                    f"{path.name} reads its weights from '{original}.safetensors', not {self.path.name}: the model "
                    f"was renamed with its graphs. Rename its files back to '{original}.*', or export its graphs "
                    f"again with 'python -m backend export-onnx {self.path} --overwrite'."
                ) from exc
            raise ModelLoadError(
                f"{path}: ONNX Runtime cannot load it ({' '.join(str(exc).split())}). Export it again with "
                f"'python -m backend export-onnx {self.path} --overwrite'."
            ) from exc
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get(META_STAGE) != stage or meta.get(META_HEADER_SHA256) != self._digest:
            raise ModelLoadError(
                f"{path} was exported from another version of {self.path.name} (its tensors lie elsewhere). "
                f"Export it again with 'python -m backend export-onnx {self.path} --overwrite'."
            )
        return session


def _columns(rows: np.ndarray, width: int) -> np.ndarray:
    """Candidate rows cut or padded (with -1) to `width` columns: the graph's TopK needs at least k."""
    if rows.shape[1] >= width:
        return np.ascontiguousarray(rows[:, :width])
    return np.pad(rows, ((0, 0), (0, width - rows.shape[1])), constant_values=-1)


def default_threads() -> int:
    """As many threads as PyTorch would take: OMP_NUM_THREADS, else every CPU this process may run on. (ONNX
    Runtime's own choice, the physical cores it detects, was one thread on a 2-core machine: 1.3x slower.)"""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_runtime_model(name_or_path: str | Path, threads: int = 0) -> RuntimeModel:
    """A shipped model by name ('triplane-pointcloud'), one in OCCNET_MODELS_PATH, or a checkpoint by path."""
    return RuntimeModel(find_model(name_or_path), threads)
