"""The add-on <-> worker protocol, version 1. This module is the one place it is written down.

Start: `python -m backend.worker --device D`, with OCCNET_MODELS_PATH (os.pathsep separated) naming
folders of extra models. Transport: the worker's stdin (requests) and stdout (replies); no port is
opened. Every message is one frame:

    4 bytes  big-endian length L of the header
    L bytes  UTF-8 JSON header: {"v": 1, "type": ..., "id": ..., "arrays": [[name, dtype, shape], ...], ...}
    then     each array's raw bytes, C order, in the order listed (arrays never travel as JSON lists)

Requests (add-on -> worker); every one carries an integer "id" that its replies repeat:
    hello        -> hello {protocol, backend, torch, device, devices}
    models       -> result {models: [{name, input_kind, architecture, latent_shape, size_mb, threshold, c_dim,
                                      evaluation}]}   (architecture "global" or "triplane"; c_dim is the code's
                                      length or the features per plane pixel; latent_shape: see LATENT)
    reconstruct  {model, input_path? | arrays points/pixels/voxels, resolution, threshold, refine_steps, faces,
                  normals} -> result MESH + LATENT       (model "auto": the shipped default for the input's kind)
    encode       {model, input_path? | arrays ...} -> result LATENT
    extract      {model, LATENT, resolution, ...} -> result MESH
    interpolate  {model, a: LATENT, b: LATENT, t, method, resolution, ...} -> result MESH + LATENT (the blend)
    cancel       {target: id of a queued or running job} -> that job ends with error {kind: "cancelled"}
    shutdown     -> the worker exits after the running job
Replies (worker -> add-on):
    progress     {id, stage, fraction}  stage in encode/evaluate/mesh/simplify/refine/normals
    result       {id, ...}
    error        {id, kind, message}    kind in protocol/input/model/device/empty/cancelled/oom/internal;
                                        message is written for the user, with the fix; the client adds
                                        kind "crashed" to the jobs of a worker that died
MESH   = arrays vertices (V,3) float64 in the source's frame (exact far from the origin, where float32 would round
         a georeferenced scan to half a metre; Blender stores float32), faces (F,3) int32, normals (V,3) float32
         (optional); fields stats
LATENT = array code (or code_a / code_b in interpolate); fields latent_model, center [x,y,z], scale. Only the model
         named latent_model decodes it: extract and interpolate with another model are an "input" error.
         The worker sends code as float32 in the model's latent_shape: (c_dim,) for a global code, (3, c_dim, R, R)
         for feature planes (393,216 values for the small triplane model). Requests may send it as float16 (how
         the add-on stores latents) or float32, in any shape with latent_shape's number of values; the worker
         converts to float32
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

PROTOCOL_VERSION = 1
AUTO_MODEL = "auto"  # the "model" that picks the shipped default for the input's kind
MODELS_PATH_ENV = "OCCNET_MODELS_PATH"
REQUEST_TYPES = ("hello", "models", "reconstruct", "encode", "extract", "interpolate", "cancel", "shutdown")
REPLY_TYPES = ("hello", "progress", "result", "error")
ERROR_KINDS = ("protocol", "input", "model", "device", "empty", "cancelled", "oom", "internal", "crashed")
MAX_HEADER_BYTES = 1 << 20
RESOLUTIONS = (32, 64, 128, 256, 512)  # the grids a request's "resolution" names: MISE doubles from the first
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The byte stream is not a valid frame."""


def threshold_problem(threshold: float) -> str | None:
    """Why a "threshold" (an occupancy probability) cannot be used, with the fix; None when it can. The one
    statement of its range: the worker, the CLI and the add-on's batch all check with it."""
    if 0.0 < threshold < 1.0:
        return None
    return f"Threshold {threshold} must lie strictly between 0 and 1 (0.5 is the usual surface)."


@dataclass
class Message:
    type: str
    id: int | None = None
    fields: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def write_message(stream: BinaryIO, message: Message) -> None:
    arrays = {name: np.ascontiguousarray(a) for name, a in message.arrays.items()}
    header = {
        **message.fields,
        "v": PROTOCOL_VERSION,
        "type": message.type,
        "id": message.id,
        "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()],
    }
    data = json.dumps(header).encode("utf-8")
    stream.write(_LENGTH.pack(len(data)) + data)
    for a in arrays.values():
        stream.write(memoryview(a).cast("B") if a.nbytes else b"")
    stream.flush()


def read_message(stream: BinaryIO) -> Message | None:
    """The next message, or None at a clean end of stream. Raises ProtocolError on a broken frame."""
    prefix = _read_exact(stream, _LENGTH.size, allow_eof=True)
    if prefix is None:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {length} bytes is larger than the limit of {MAX_HEADER_BYTES}")
    try:
        header = json.loads(_read_exact(stream, length).decode("utf-8"))
        specs = header.pop("arrays", [])
        arrays = {}
        for name, dtype, shape in specs:
            dt = np.dtype(dtype)
            if dt.hasobject:
                raise ProtocolError(f"array '{name}' has an object dtype")
            count = int(np.prod(shape, dtype=np.int64))
            arrays[name] = np.frombuffer(_read_exact(stream, count * dt.itemsize), dtype=dt).reshape(shape)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed header: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    version = header.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version}, expected {PROTOCOL_VERSION}")
    kind = header.pop("type", None)
    msg_id = header.pop("id", None)
    return Message(str(kind), msg_id, header, arrays)


def _read_exact(stream: BinaryIO, size: int, allow_eof: bool = False) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == size:
                return None
            raise ProtocolError(f"stream ended inside a frame ({size - remaining} of {size} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
