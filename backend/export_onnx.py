"""Export a checkpoint's two stages to ONNX for the bundled CPU runtime (`backend.runtime`), reproducibly.

Each model gets two graphs beside its `.safetensors` file, the two stages MISE needs:

    NAME.encoder.onnx   network input in the canonical frame -> latent code
                        point models: points (N, 3) float32, already normalised to the unit cube
                        (backend.inputs.pointcloud.normalize_points); image models: image (3, S, S) float32,
                        already prepared (backend.inputs.image.prepare_image); voxel models: voxels (R, R, R)
                        float32 of 0 and 1; code: the model's latent_shape
    NAME.decoder.onnx   code (latent_shape) float32 and points (N, 3) float32 in the canonical frame -> logits (N,)

Point attention (architecture "attention") runs as three:

    NAME.encoder.onnx   what `backend.inputs.attention.prepare_points` makes (plane_points (P, 3), points (N, 3),
                        normals (N, 3), has_normals (), neighbours (N, k), coarse_neighbours (N1, k),
                        parents (N,), unit ()) -> planes (3, C, R, R), features (N, F)
    NAME.terms.onnx     features (N, F) -> what each level's attention reads of every point: values0, directions0,
                        biases0, values1, ...
    NAME.decoder.onnx   planes, unit, points, queries (M, 3), each level's three terms and each level's candidates
                        (M, W) (`backend.inputs.neighbours.Candidates`, -1 for none) -> logits (M,); the graph picks
                        the k nearest candidates within the level's radius itself (TopK)

Views (architecture "views"):

    NAME.encoder.onnx   images (V, 4, S, S) float32 (`backend.inputs.views.PreparedViews`) -> features (V, C, S, S)
                        and, for a model with a thickness head, thickness (V, T): each picture's scores of the
                        thickness scales (`backend.surface.silhouettes.THICKNESS_SCALES`)
    NAME.decoder.onnx   features, masks (V, 1, M, M), sheets (V, 3, M, M), affines (V, 3, 4) and queries (N, 3) ->
                        logits (N,)

N and the other sizes are dynamic. The graphs hold no weights: every initializer that is a checkpoint tensor is
ONNX external data pointing at its bytes inside the `.safetensors` file (same name, dtype, shape; safetensors stores raw
little-endian bytes as ONNX does), so the weights ship once and both engines read the same file. Each graph
records the SHA-256 of the checkpoint's header, which fixes every tensor's name, shape and place: the runtime
refuses a graph whose checkpoint was replaced by one of another layout.
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .checkpoint import load_checkpoint
from .errors import OutputError
from .inputs.attention import prepare_points
from .inputs.neighbours import LEVELS, RADIUS, Candidates, level_size, level_unit
from .models import OccupancyNetwork
from .models.local_decoder import LocalDecoder
from .models.occnet import decode_read
from .models.point_attention import nearest_of_candidates
from .models.triplane import sample_planes_by_gather
from .outputs import atomic_write
from .runtime.graphs import META_HEADER_SHA256, META_MODEL, META_STAGE, META_WEIGHTS, graph_path, header_digest, stages
from .weights_file import read_header

OPSET = 18  # the first with ScatterElements reduction "max": the triplane encoder's pooling
TERM_TABLES = ("values", "directions", "biases")  # what each level's attention reads of a point (`point_terms`)
TERMS = len(TERM_TABLES)
MAX_EMBEDDED_BYTES = 1 << 16  # constants of the graph itself (shapes, indices); weights never embed
_ONNX_DTYPES = {"F32": onnx.TensorProto.FLOAT, "F16": onnx.TensorProto.FLOAT16, "I64": onnx.TensorProto.INT64}


class _Encoder(nn.Module):
    """One observation -> one latent; the submodule keeps its checkpoint name ('encoder.*')."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.encoder = network.encoder

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.encoder(observation[None])[0]


class _Decoder(nn.Module):
    """One latent and N points -> N logits; the submodule keeps its checkpoint name ('decoder.*').

    Feature planes are read with one gather and a small matrix product (`sample_planes_by_gather`): ONNX Runtime's
    GridSample took 0.6 s of the decoder's 0.86 s per 100k points on one core; the whole decoder now takes 0.2 s."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.decoder = network.decoder

    def forward(self, code: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        if isinstance(self.decoder, LocalDecoder):  # (N, F) rows throughout: each Linear is one Gemm with its bias
            return self.decoder.decode_features(points, sample_planes_by_gather(code[None], points[None])[0])
        return self.decoder(points[None], code[None])[0]


class _ViewEncoder(nn.Module):
    """Views: V pictures -> V feature maps ('encoder.*'), and with a thickness head each one's scores of the
    thickness scales ('thickness.*')."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.encoder = network.encoder
        self.thickness = getattr(network, "thickness", None)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.thickness is None:
            return self.encoder(images)
        return self.encoder(images), self.thickness(images)


class _ViewDecoder(nn.Module):
    """Views: the maps of one latent and N queries -> N logits ('decoder.*'), maps read by gather."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.decoder = network.decoder

    def forward(self, features, masks, sheets, affines, queries):
        return self.decoder(queries[None], features[None], masks[None], sheets[None], affines[None], by_gather=True)[0]


class _PointEncoder(nn.Module):
    """Point attention's encoder: the planes and the features on the points ('encoder.*', 'point_features.*')."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.encoder, self.point_features = network.encoder, network.point_features

    def forward(self, plane_points, points, normals, has_normals, neighbours, coarse_neighbours, parents, unit):
        planes = self.encoder(plane_points[None])
        read = sample_planes_by_gather(planes, points[None])
        features = self.point_features(
            points[None],
            normals[None],
            has_normals.reshape(1),
            neighbours[None],
            coarse_neighbours[None],
            parents[None],
            unit.reshape(1),
            read,
        )
        return planes[0], features[0]


class _PointTerms(nn.Module):
    """What each level's attention reads of every point ('attention.*')."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.attention = network.attention

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(table for attention in self.attention for table in attention.point_terms(features))


class _PointDecoder(nn.Module):
    """Point attention's decoder: each level's k nearest candidates within its radius, then `decode_read`."""

    def __init__(self, network: OccupancyNetwork) -> None:
        super().__init__()
        self.decoder, self.attention, self.k = network.decoder, network.attention, network.config.neighbours
        self.density = network.density

    def forward(self, planes, unit, points, queries, *levels):
        tables, candidates = levels[: TERMS * LEVELS], levels[TERMS * LEVELS :]
        found = [
            nearest_of_candidates(
                points[None],
                queries[None],
                candidates[None],
                (RADIUS * level_unit(1.0, level) * unit).reshape(1),
                self.k,
            )
            for level, candidates in enumerate(candidates)
        ]
        read = sample_planes_by_gather(planes[None], queries[None])
        terms = [tuple(t[None] for t in tables[level * TERMS : (level + 1) * TERMS]) for level in range(LEVELS)]
        return decode_read(
            self.attention, self.decoder, queries[None], read, points[None], unit.reshape(1), terms, found, self.density
        )[0]


def export_model(checkpoint: str | Path, out: str | Path | None = None, overwrite: bool = False) -> list[Path]:
    """Write both stages' graphs for a checkpoint (into `out`, default beside it); returns their paths.

    The graphs read their weights from a file of the checkpoint's name in their own folder, so they work where
    they sit beside it. An existing graph is replaced only with `overwrite`.
    """
    checkpoint = Path(checkpoint)
    network = load_checkpoint(checkpoint).eval()
    header, header_bytes = read_header(checkpoint)
    folder = Path(out) if out is not None else checkpoint.parent
    targets = {stage: folder / graph_path(checkpoint, stage).name for stage in stages(network.config.architecture)}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise OutputError(f"{', '.join(existing)} already exist; pass --overwrite to export again over them.")
    folder.mkdir(parents=True, exist_ok=True)
    config = network.config
    n = torch.export.Dim("N", min=1)
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    if config.input_kind == "pointcloud":
        encoder_args, encoder_names, encoder_shapes = (points,), ["points"], ({0: n},)
    elif config.input_kind == "image":
        image = torch.zeros(3, config.image_size, config.image_size)
        encoder_args, encoder_names, encoder_shapes = (image,), ["image"], None
    else:
        grid = torch.zeros((config.voxel_resolution,) * 3)
        encoder_args, encoder_names, encoder_shapes = (grid,), ["voxels"], None
    if config.architecture == "attention":
        graphs = _point_graphs(network)
    elif config.architecture == "views":
        graphs = _view_graphs(network)
    else:
        code = torch.zeros(config.latent_shape)
        graphs = {
            "encoder": _export(_Encoder(network), encoder_args, encoder_names, ["code"], encoder_shapes),
            "decoder": _export(_Decoder(network), (code, points), ["code", "points"], ["logits"], ({}, {0: n})),
        }
    for stage, model in graphs.items():
        _strip_provenance(model)
        _point_at_checkpoint(model, checkpoint.name, header, len(header_bytes), checkpoint.read_bytes())
        for key, value in (
            (META_MODEL, checkpoint.stem),
            (META_STAGE, stage),
            (META_WEIGHTS, checkpoint.name),
            (META_HEADER_SHA256, header_digest(header_bytes)),
        ):
            model.metadata_props.add(key=key, value=value)
        with atomic_write(targets[stage]) as partial:
            partial.write_bytes(model.SerializeToString(deterministic=True))
    return list(targets.values())


def _point_graphs(network: OccupancyNetwork) -> dict[str, onnx.ModelProto]:
    """Point attention's three graphs, traced on a small cloud of the model's own input."""
    config = network.config
    generator = torch.Generator().manual_seed(0)
    cloud = torch.rand(300, 3, generator=generator).numpy() - 0.5
    prepared, _ = prepare_points(cloud, None, config)
    encoder_inputs = {k: torch.as_tensor(v) for k, v in prepared.arrays().items()}
    widths = [f"W{level}" for level in range(LEVELS)]
    dims = {name: torch.export.Dim(name, min=2) for name in ("P", "N", "N1", "M", *widths)}
    encoder_shapes = {
        "plane_points": {0: dims["P"]},
        "points": {0: dims["N"]},
        "normals": {0: dims["N"]},
        "has_normals": {},
        "neighbours": {0: dims["N"]},
        "coarse_neighbours": {0: dims["N1"]},
        "parents": {0: dims["N"]},
        "unit": {},
    }
    with torch.no_grad():
        planes, features = _PointEncoder(network)(*encoder_inputs.values())
        terms = _PointTerms(network)(features)
    queries = torch.rand(64, 3, generator=generator) - 0.5
    candidates = []
    for level in range(LEVELS):
        cloud = prepared.points[: level_size(len(prepared.points), level)]
        found = Candidates(cloud, RADIUS * level_unit(prepared.unit, level))(queries.numpy())
        found = np.pad(found, ((0, 0), (0, max(0, config.neighbours + 1 - found.shape[1]))), constant_values=-1)
        candidates.append(torch.as_tensor(found))  # wider than k, as the runtime always sends
    decoder_args = (planes, torch.tensor(prepared.unit), torch.as_tensor(prepared.points), queries, *terms, *candidates)
    term_names = [f"{table}{level}" for level in range(LEVELS) for table in TERM_TABLES]
    decoder_names = [
        "planes",
        "unit",
        "points",
        "queries",
        *term_names,
        *(f"candidates{level}" for level in range(LEVELS)),
    ]
    levels = (*({0: dims["N"]} for _ in range(TERMS * LEVELS)), *({0: dims["M"], 1: dims[width]} for width in widths))
    decoder_shapes = ({}, {}, {0: dims["N"]}, {0: dims["M"]}, levels)  # torch.export sees *levels as one tuple
    return {
        "encoder": _export(
            _PointEncoder(network),
            tuple(encoder_inputs.values()),
            list(encoder_inputs),
            ["planes", "features"],
            tuple(encoder_shapes.values()),
        ),
        "terms": _export(_PointTerms(network), (features,), ["features"], term_names, ({0: dims["N"]},)),
        "decoder": _export(_PointDecoder(network), decoder_args, decoder_names, ["logits"], decoder_shapes),
    }


def _view_graphs(network: OccupancyNetwork) -> dict[str, onnx.ModelProto]:
    config = network.config
    views, n = torch.export.Dim("V", min=1), torch.export.Dim("N", min=1)
    images = torch.rand(2, 4, config.image_size, config.image_size, generator=torch.Generator().manual_seed(0))
    features = torch.zeros(2, config.c_dim, config.image_size, config.image_size)
    masks = torch.zeros(2, 1, config.mask_size, config.mask_size)
    sheets = torch.zeros(2, 3, config.mask_size, config.mask_size)
    outputs = ["features", "thickness"] if config.thickness_width else ["features"]
    affines = torch.eye(3, 4).repeat(2, 1, 1)
    queries = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    return {
        "encoder": _export(_ViewEncoder(network), (images,), ["images"], outputs, ({0: views},)),
        "decoder": _export(
            _ViewDecoder(network),
            (features, masks, sheets, affines, queries),
            ["features", "masks", "sheets", "affines", "queries"],
            ["logits"],
            ({0: views}, {0: views}, {0: views}, {0: views}, {0: n}),
        ),
    }


def _export(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], shapes) -> onnx.ModelProto:
    """The module's graph as torch's ONNX exporter writes it, unoptimised: its optimiser folds each Linear's
    transposed weight into a new constant, which would then no longer be a checkpoint tensor (ONNX Runtime folds
    those transposes itself when it loads the graph)."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            args,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=shapes,
            opset_version=OPSET,
            dynamo=True,
            optimize=False,
            verbose=False,
        )
    return program.model_proto


def _strip_provenance(model: onnx.ModelProto) -> None:
    """Drop what the exporter records about where each node came from (stack traces with this checkout's
    absolute paths, FX node text): four fifths of the graph's bytes, and the same model would differ by folder."""
    del model.graph.metadata_props[:]
    for node in model.graph.node:
        del node.metadata_props[:]
        node.ClearField("doc_string")


def _point_at_checkpoint(model: onnx.ModelProto, weights: str, header: dict, header_length: int, data: bytes) -> None:
    """Make every initializer that is a checkpoint tensor external data at that tensor's bytes in the file
    (`data`, the whole file: the bytes there must be the initializer's own)."""
    embedded = 0
    for tensor in model.graph.initializer:
        entry = header.get(tensor.name)
        if entry is None:
            embedded += len(tensor.raw_data) or numpy_helper.to_array(tensor).nbytes
            continue
        begin, end = entry["data_offsets"]
        if _ONNX_DTYPES.get(entry["dtype"]) != tensor.data_type or list(entry["shape"]) != list(tensor.dims):
            raise RuntimeError(f"graph initializer {tensor.name} differs from the checkpoint's tensor of that name")
        if tensor.raw_data != data[header_length + begin : header_length + end]:
            raise RuntimeError(f"graph initializer {tensor.name} does not hold the checkpoint's bytes of that name")
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        for key, value in (("location", weights), ("offset", str(header_length + begin)), ("length", str(end - begin))):
            tensor.external_data.add(key=key, value=value)
    if embedded > MAX_EMBEDDED_BYTES:
        raise RuntimeError(f"the graph embeds {embedded} bytes of constants that are not checkpoint tensors")
