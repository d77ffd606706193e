"""Where a model's ONNX graphs live and what they record: shared by the exporter (torch) and the runtime (no torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

STAGES = ("encoder", "decoder")
POINT_STAGES = ("encoder", "terms", "decoder")  # point attention: what each point offers its queries, once a latent


def stages(architecture: str) -> tuple[str, ...]:
    """The graphs a model of this architecture runs as."""
    return POINT_STAGES if architecture == "attention" else STAGES


META_MODEL = "occnet_model"
META_STAGE = "occnet_stage"
META_WEIGHTS = "occnet_weights"
META_HEADER_SHA256 = "occnet_weights_header_sha256"


def graph_path(checkpoint: Path, stage: str) -> Path:
    """A stage's graph lives beside its checkpoint, whose bytes it reads as external data."""
    return checkpoint.with_name(f"{checkpoint.stem}.{stage}.onnx")


def header_digest(header_bytes: bytes) -> str:
    """SHA-256 of a checkpoint's header: it fixes every tensor's name, dtype, shape and place in the file."""
    return hashlib.sha256(header_bytes).hexdigest()


def has_graphs(checkpoint: Path, architecture: str) -> bool:
    """Whether the built-in runtime can run a model: all its graphs lie beside its checkpoint."""
    return all(graph_path(checkpoint, stage).is_file() for stage in stages(architecture))
