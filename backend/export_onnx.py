"""Export a checkpoint's two stages to ONNX for the bundled CPU runtime (`backend.runtime`), reproducibly.

Each model gets two graphs beside its `.safetensors` file, the two stages MISE needs:

    NAME.encoder.onnx   network input in the canonical frame -> latent code
                        point models: points (N, 3) float32, already normalised to the unit cube
                        (backend.inputs.pointcloud.normalize_points); image models: image (3, S, S) float32,
                        already prepared (backend.inputs.image.prepare_image); voxel models: voxels (R, R, R)
                        float32 of 0 and 1; code: the model's latent_shape
    NAME.decoder.onnx   code (latent_shape) float32 and points (N, 3) float32 in the canonical frame -> logits (N,)

N is dynamic. The graphs hold no weights: every initializer that is a checkpoint tensor is ONNX external data
pointing at its bytes inside the `.safetensors` file (same name, dtype, shape; safetensors stores raw
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

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .checkpoint import load_checkpoint
from .errors import OutputError
from .models import OccupancyNetwork
from .models.local_decoder import LocalDecoder
from .models.triplane import sample_planes_by_gather
from .outputs import atomic_write
from .runtime.graphs import META_HEADER_SHA256, META_MODEL, META_STAGE, META_WEIGHTS, STAGES, graph_path, header_digest
from .weights_file import read_header

OPSET = 18  # the first with ScatterElements reduction "max": the triplane encoder's pooling
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


def export_model(checkpoint: str | Path, out: str | Path | None = None, overwrite: bool = False) -> list[Path]:
    """Write both stages' graphs for a checkpoint (into `out`, default beside it); returns their paths.

    The graphs read their weights from a file of the checkpoint's name in their own folder, so they work where
    they sit beside it. An existing graph is replaced only with `overwrite`.
    """
    checkpoint = Path(checkpoint)
    network = load_checkpoint(checkpoint).eval()
    header, header_bytes = read_header(checkpoint)
    folder = Path(out) if out is not None else checkpoint.parent
    targets = {stage: folder / graph_path(checkpoint, stage).name for stage in STAGES}
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
