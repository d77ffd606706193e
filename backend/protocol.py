"""The add-on <-> worker protocol, version 3. This module is the one place it is written down, and its
dataclasses are the messages both sides build and read (stdlib + numpy only: it runs inside Blender).

Start: `python -m backend.worker --engine torch --device D` (PyTorch) or `python -m backend.worker --engine
runtime` (the built-in CPU runtime: numpy and ONNX Runtime, plus Pillow and trimesh for files; same messages,
hello's engine says which), with OCCNET_MODELS_PATH (os.pathsep separated) naming folders of extra models.
Transport: the worker's stdin (requests) and stdout (replies); no port is opened. Every message travels as:

    4 bytes  big-endian length L of the header (at most MAX_HEADER_BYTES)
    L bytes  UTF-8 JSON object: {"v": 3, "type": ..., "id": ..., "arrays": [[name, dtype, shape], ...], ...fields}
    then     each array's raw bytes, C order, in the order listed (arrays never travel as JSON lists)

"id" is an integer (or null on a reply to a request whose id could not be read). Arrays are plain numbers
(bool, int, uint or float dtypes); one array holds at most MAX_ARRAY_BYTES and one message's arrays together at
most MAX_MESSAGE_BYTES. A message that breaks these rules, names a field its type does not have, or carries two
inputs gets an error reply of kind "protocol" (to its id when that could be read) and the worker reads on; the end
of its stdin always ends the worker.

Requests (add-on -> worker), each a dataclass below; every one carries an "id" that its replies repeat:
    hello        HelloRequest        -> hello  HelloReply
    models       ModelsRequest       -> result ModelsReply
    reconstruct  ReconstructRequest  -> result ReconstructReply (MESH + LATENT)   model "auto": the shipped
                                                                                  default for the input's kind;
                                                                                  one input: a file or an array
    encode       EncodeRequest       -> result EncodeReply (LATENT)
    extract      ExtractRequest      -> result MeshReply
    interpolate  InterpolateRequest  -> result MeshReply (the blend's latent is not sent back)
    cancel       CancelRequest       -> the target job ends with an error of kind "cancelled"; no reply of its own
    shutdown     ShutdownRequest     -> the worker exits after the running job
Replies (worker -> add-on): the "hello"/"result" above, and for any request
    progress     Progress   {stage, fraction}  stage in encode/evaluate/mesh/simplify/refine/normals
    error        ErrorReply {kind, message}    kind in ERROR_KINDS; message is written for the user, with the
                                               fix; "internal" is a bug, its traceback in the worker's log (the
                                               message names it); the client adds "crashed" to the jobs of a
                                               worker that died
OPTIONS = the field "options" of reconstruct, extract and interpolate: an ExtractOptions object (its fields, all
         optional: resolution, threshold (null: the model's), refine_steps, faces, normals, min_piece, use_mise,
         snap)
MESH   = arrays vertices (V,3) float64 in the source's frame (exact far from the origin, where float32 would round
         a georeferenced scan to half a metre; Blender stores float32), faces (F,3) int32, normals (V,3) float32
         (optional), colors (V,3) float32 RGB in [0, 1] (optional: when the input had colour); field stats
LATENT = array code with field latent (a LatentInfo: latent_model, center [x,y,z], scale, blends_by_field). Only
         the model named latent_model decodes it: extract and interpolate with another model are an "input" error.
         The worker sends code as float32 in the model's latent_shape: (c_dim,) for a global code, (3, c_dim, R, R)
         for feature planes (393,216 values for the small triplane model). Requests may send it as float16 (how
         the add-on stores latents) or float32, in any shape with latent_shape's number of values; the worker
         converts to float32
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import types
import typing
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar, Literal

import numpy as np

from .config import Architecture, InputKind
from .engines import EngineName
from .errors import OccNetError
from .surface.options import ExtractOptions

PROTOCOL_VERSION = 4
AUTO_MODEL = "auto"  # the "model" that picks the shipped default for the input's kind
ErrorKind = Literal["protocol", "input", "model", "device", "empty", "cancelled", "oom", "internal", "crashed"]
ERROR_KINDS: tuple[ErrorKind, ...] = typing.get_args(ErrorKind)
Stage = Literal["encode", "evaluate", "mesh", "simplify", "refine", "snap", "normals"]
BlendMethod = Literal["linear", "spherical"]
MAX_HEADER_BYTES = 1 << 20
# 256 MiB: 20 million points as float32 xyz, a 4096 x 4096 RGBA float image, a mesh of 20 million faces;
# the largest latent (feature planes) is a few MB.
MAX_ARRAY_BYTES = 1 << 28
MAX_MESSAGE_BYTES = 1 << 29
MAX_ARRAY_DIMS = 8
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """A message that breaks the protocol; `id` is the message's id when it could be read. `in_step` says whether
    the stream is still at a message's start: when a message's length cannot be known, it is not, and the reader
    must stop (the worker exits and the add-on starts a new one) rather than read bytes as messages."""

    def __init__(self, message: str, msg_id: int | None = None, in_step: bool = True) -> None:
        super().__init__(message)
        self.id = msg_id
        self.in_step = in_step


def input_summary(stats: dict) -> str | None:
    """In words, what the model read of its input, from a reply's stats: their "input" entry holds, for models
    that read every point, points (in the source), used, dropped (non-finite or stray) and, when a cloud was above
    the model's cap, thinned_to and cap, and normals ("given", "none", or "estimated" with normals_share, the share
    of points given one); for images, the mask's rule (`backend.inputs.image.object_mask`). None for
    models that draw a fixed number of points."""
    source = stats.get("input")
    if not source:
        return None
    if source.get("views", 1) > 1:
        rules = {"alpha": "its alpha channel", "border": "its plain border colour"}
        masks = ", ".join(f"{i + 1}: {rules[m]}" for i, m in enumerate(source["masks"]))
        size = " x ".join(f"{v:.3g}" for v in source["hull_size"])
        return (
            f"{source['views']} reference images, one object matching every silhouette (each masked by {masks}); "
            f"their silhouettes meet in a box of {size}."
        )
    if source.get("mask") == "alpha":
        return "The object is what the image's alpha channel keeps."
    if source.get("mask") == "border":
        colour = ", ".join(f"{c:.2f}" for c in source["background"])
        return (
            f"No alpha channel: the background is the border's plain colour (RGB {colour}, within "
            f"{source['tolerance']}), flooded in from the edges; the object covers {source['object_share']:.0%} "
            "of the picture."
        )
    used, points, dropped = source["used"], source["points"], source.get("dropped", 0)
    if "thinned_to" in source:
        text = f"Used {used:,} of {points:,} points: thinned evenly to the model's cap of {source['cap']:,}."
    else:
        text = f"Used all {used:,} points." if not dropped else f"Used {used:,} of {points:,} points."
    if dropped:
        text += f" {dropped:,} stray or non-finite point{'s' if dropped != 1 else ''} left out."
    if source.get("normals") == "estimated":
        text += (
            f" The scan has no normals: {source['normals_share']:.0%} of the points got one from the plane of their"
            " neighbours, turned to the side the model reads as outside (give normals if the scan has them)."
        )
    return text


@dataclass
class Message:
    """One message as it travels: the envelope the typed messages below are encoded into."""

    type: str
    id: int | None = None
    fields: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


# --- the messages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentInfo:
    """What a latent code needs besides its numbers: the model that made it and the input's normalisation."""

    latent_model: str
    center: tuple[float, ...] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    blends_by_field: bool = False  # point attention: its code's length varies; blends mix the two ends' fields


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_kind: InputKind
    architecture: Architecture
    latent_shape: tuple[int, ...]
    size_mb: float
    threshold: float
    c_dim: int  # the code's length, or the features per plane pixel
    evaluation: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ObservationSource:
    """An input: a file the worker reads, or one of the arrays."""

    input_path: str | None = None
    points: np.ndarray | None = None
    point_normals: np.ndarray | None = None  # with points: their outward normals (N, 3), when the scan or mesh has them
    point_colors: np.ndarray | None = None  # with points: their RGB (N, 3) float32 in [0, 1], when they have colour
    pixels: np.ndarray | None = None
    # with pixels: where each picture lies (V, 3, 3): its centre, right and up vectors, as `backend.inputs.views.View`
    views: np.ndarray | None = None
    more_pixels: np.ndarray | None = None  # with views: the 2nd to V-th pictures' pixels, raveled one after another
    more_shapes: np.ndarray | None = None  # with more_pixels: those pictures' shapes (V - 1, 3)
    voxels: np.ndarray | None = None

    def __post_init__(self) -> None:
        """One input, or the worker would have to pick one silently; normals and colours only with points, views
        only with pixels, one per picture."""
        given = [name for name in ("input_path", "points", "pixels", "voxels") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ProtocolError(
                f"send exactly one input ('input_path' or the array 'points', 'pixels' or 'voxels'), not "
                f"{' and '.join(map(repr, given)) or 'none'}"
            )
        for name, partner in (
            ("point_normals", "points"),
            ("point_colors", "points"),
            ("views", "pixels"),
            ("more_pixels", "views"),
            ("more_shapes", "more_pixels"),
            ("more_pixels", "more_shapes"),
        ):
            if getattr(self, name) is not None and getattr(self, partner) is None:
                raise ProtocolError(f"'{name}' comes only with '{partner}'")
        if self.views is not None:
            more = 0 if self.more_shapes is None else len(self.more_shapes)
            if np.shape(self.views) != (1 + more, 3, 3):
                raise ProtocolError(f"'views' must be ({1 + more}, 3, 3): a centre, right and up for each picture")
            if more and int(np.prod(self.more_shapes, axis=1).sum()) != np.size(self.more_pixels):
                raise ProtocolError("'more_pixels' must hold exactly the values 'more_shapes' describe")

    def pictures(self) -> list[np.ndarray]:
        """The pixels of every picture the request carries (the first is `pixels`)."""
        pictures = [self.pixels]
        start = 0
        for shape in [] if self.more_shapes is None else self.more_shapes:
            count = int(np.prod(shape))
            pictures.append(np.asarray(self.more_pixels).ravel()[start : start + count].reshape(tuple(shape)))
            start += count
        return pictures


@dataclass(frozen=True)
class HelloReply:
    TYPE: ClassVar[str] = "hello"
    protocol: int
    backend: str  # the backend's version
    torch: str | None  # PyTorch's version; None for the built-in CPU runtime
    device: str
    devices: list[str]
    pid: int
    engine: EngineName = "torch"  # which engine the worker runs


@dataclass(frozen=True)
class ModelsReply:
    TYPE: ClassVar[str] = "result"
    models: list[ModelInfo]


@dataclass(frozen=True, kw_only=True)
class MeshReply:
    TYPE: ClassVar[str] = "result"
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None  # (V, 3) float32 RGB in [0, 1]: the input's colour near each vertex
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ReconstructReply(MeshReply):
    latent: LatentInfo
    code: np.ndarray


@dataclass(frozen=True, kw_only=True)
class EncodeReply:
    TYPE: ClassVar[str] = "result"
    latent: LatentInfo
    code: np.ndarray


@dataclass(frozen=True)
class Progress:
    TYPE: ClassVar[str] = "progress"
    stage: Stage
    fraction: float


@dataclass(frozen=True)
class ErrorReply:
    TYPE: ClassVar[str] = "error"
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class HelloRequest:
    TYPE: ClassVar[str] = "hello"
    REPLY: ClassVar[type] = HelloReply


@dataclass(frozen=True)
class ModelsRequest:
    TYPE: ClassVar[str] = "models"
    REPLY: ClassVar[type] = ModelsReply
    extra_dirs: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class ReconstructRequest(ObservationSource):
    TYPE: ClassVar[str] = "reconstruct"
    REPLY: ClassVar[type] = ReconstructReply
    model: str
    options: ExtractOptions = ExtractOptions()


@dataclass(frozen=True, kw_only=True)
class EncodeRequest(ObservationSource):
    TYPE: ClassVar[str] = "encode"
    REPLY: ClassVar[type] = EncodeReply
    model: str


@dataclass(frozen=True, kw_only=True)
class ExtractRequest:
    TYPE: ClassVar[str] = "extract"
    REPLY: ClassVar[type] = MeshReply
    model: str
    latent: LatentInfo
    code: np.ndarray
    options: ExtractOptions = ExtractOptions()


@dataclass(frozen=True, kw_only=True)
class InterpolateRequest:
    TYPE: ClassVar[str] = "interpolate"
    REPLY: ClassVar[type] = MeshReply
    model: str
    a: LatentInfo
    b: LatentInfo
    code_a: np.ndarray
    code_b: np.ndarray
    t: float
    method: BlendMethod = "linear"
    options: ExtractOptions = ExtractOptions()


@dataclass(frozen=True)
class CancelRequest:
    TYPE: ClassVar[str] = "cancel"
    REPLY: ClassVar[type | None] = None
    target: int


@dataclass(frozen=True)
class ShutdownRequest:
    TYPE: ClassVar[str] = "shutdown"
    REPLY: ClassVar[type | None] = None


REQUESTS: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        HelloRequest,
        ModelsRequest,
        ReconstructRequest,
        EncodeRequest,
        ExtractRequest,
        InterpolateRequest,
        CancelRequest,
        ShutdownRequest,
    )
}
REPLY_TYPES = ("hello", "result", "progress", "error")
Request = (
    HelloRequest
    | ModelsRequest
    | ReconstructRequest
    | EncodeRequest
    | ExtractRequest
    | InterpolateRequest
    | CancelRequest
    | ShutdownRequest
)
Reply = HelloReply | ModelsReply | MeshReply | EncodeReply | Progress | ErrorReply


def encode(message: Any, msg_id: int | None) -> Message:
    """A request or reply dataclass as a message: arrays travel raw, everything else as JSON fields. A value
    outside its field's choices (a Literal) is refused here, by the side that made it."""
    fields, arrays = {}, {}
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        hint = _hints(type(message))[f.name]
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            raise ProtocolError(f"'{message.TYPE}.{f.name}' is {value!r}, not one of {typing.get_args(hint)}")
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif value is not None or not _is_array(_hints(type(message))[f.name]):
            fields[f.name] = _jsonable(value)
    return Message(message.TYPE, msg_id, fields, arrays)


def decode_request(message: Message) -> Request:
    """The typed request in a message; ProtocolError (with the message's id) for an unknown type or a bad field."""
    cls = REQUESTS.get(message.type)
    if cls is None:
        raise ProtocolError(f"unknown request type '{message.type}'", message.id)
    return decode(cls, message)


def decode_reply(message: Message, request: type) -> Reply:
    """The typed reply to a request of class `request` (progress and error replies fit every request)."""
    cls = {"progress": Progress, "error": ErrorReply}.get(message.type, request.REPLY)
    if message.type not in REPLY_TYPES or cls is None or cls.TYPE != message.type:
        raise ProtocolError(f"unexpected '{message.type}' reply to a '{request.TYPE}' request", message.id)
    return decode(cls, message)


def decode(cls: type, message: Message) -> Any:
    try:
        return _from_fields(cls, message.fields, message.arrays, cls.TYPE)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), message.id) from None


# --- framing --------------------------------------------------------------------------------------------


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
    """The next message, or None at a clean end of stream. Raises ProtocolError on a broken message. One whose
    arrays can be measured (plain number dtypes, non-negative shapes, within MAX_MESSAGE_BYTES) is read to its end
    even when refused, so the stream stays in step; one whose length cannot be known (an oversized header, an
    unreadable array list, a size beyond the limits) raises with `in_step` False. A header that is not a JSON
    object is taken to carry no arrays."""
    prefix = _read_exact(stream, _LENGTH.size, allow_eof=True)
    if prefix is None:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {length} bytes is larger than the limit of {MAX_HEADER_BYTES}", in_step=False)
    try:
        header = json.loads(_read_exact(stream, length).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"the header is a JSON {type(header).__name__}, not an object")
    raw_id = header.pop("id", None)
    msg_id = raw_id if type(raw_id) is int else None
    specs = [_array_spec(spec, msg_id) for spec in _as_list(header.pop("arrays", []), "arrays", msg_id)]
    total = sum(dtype.itemsize * count for _, dtype, _, count in specs)
    if total > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"the arrays hold {total} bytes, more than the limit of {MAX_MESSAGE_BYTES}", msg_id, in_step=False
        )
    problem = _header_problem(header, raw_id)
    if problem:
        _skip(stream, total)
        raise ProtocolError(problem, msg_id)
    arrays = {}
    for name, dtype, shape, count in specs:
        arrays[name] = np.frombuffer(_read_exact(stream, count * dtype.itemsize), dtype=dtype).reshape(shape)
    return Message(header.pop("type"), msg_id, header, arrays)


def _header_problem(header: dict, raw_id: object) -> str | None:
    """What is wrong with a message header's id, version and type (popping the version), or None."""
    if raw_id is not None and type(raw_id) is not int:
        return f"the id {raw_id!r} is not an integer"
    version = header.pop("v", None)
    if version != PROTOCOL_VERSION:
        return f"protocol version {version!r}, expected {PROTOCOL_VERSION}"
    if not isinstance(header.get("type"), str):
        return f"the type {header.get('type')!r} is not a string"
    return None


def _array_spec(spec: object, msg_id: int | None) -> tuple[str, np.dtype, tuple[int, ...], int]:
    """[name, dtype, shape] checked: a plain number dtype, a small non-negative shape, within the size cap. A spec
    that breaks these leaves the message's length unknown."""
    if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], str)):
        raise ProtocolError(f"array spec {spec!r} is not [name, dtype, shape]", msg_id, in_step=False)
    name, dtype_text, shape = spec
    try:
        dtype = np.dtype(dtype_text)
    except TypeError:
        raise ProtocolError(f"array '{name}' has an unknown dtype {dtype_text!r}", msg_id, in_step=False) from None
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(
            f"array '{name}' has dtype {dtype_text!r}; only bool, int and float travel", msg_id, in_step=False
        )
    shape = _as_list(shape, f"array '{name}' shape", msg_id)
    if len(shape) > MAX_ARRAY_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        raise ProtocolError(
            f"array '{name}' has shape {shape!r}; give at most 8 non-negative integers", msg_id, in_step=False
        )
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize > MAX_ARRAY_BYTES:
        raise ProtocolError(
            f"array '{name}' claims {count * dtype.itemsize} bytes, more than the limit of {MAX_ARRAY_BYTES}",
            msg_id,
            in_step=False,
        )
    return name, dtype, tuple(shape), count


def _as_list(value: object, what: str, msg_id: int | None) -> list:
    if not isinstance(value, list):
        raise ProtocolError(f"{what} is not a list", msg_id, in_step=False)
    return value


def _skip(stream: BinaryIO, size: int) -> None:
    """Read past `size` bytes a refused message declared, a megabyte at a time."""
    while size:
        size -= len(_read_exact(stream, min(size, 1 << 20)))


def _read_exact(stream: BinaryIO, size: int, allow_eof: bool = False) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == size:
                return None
            raise ProtocolError(f"stream ended inside a message ({size - remaining} of {size} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# --- field conversion -----------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_array(hint: Any) -> bool:
    return hint is np.ndarray or np.ndarray in typing.get_args(hint)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_fields(cls: type, fields: dict, arrays: dict[str, np.ndarray], where: str) -> Any:
    """The dataclass from a message's fields and arrays; a field or array it does not have is refused (a misspelt
    setting must not fall back to its default), and so is a value its own checks refuse."""
    hints, values = _hints(cls), {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((set(fields) | set(arrays)) - names)
    if unknown:
        raise ProtocolError(
            f"'{where}' has no field {', '.join(map(repr, unknown))} (its fields: {', '.join(sorted(names))})"
        )
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if _is_array(hints[f.name]):
            if f.name in arrays:
                values[f.name] = arrays[f.name]
            elif required:
                raise ProtocolError(f"'{where}' needs the array '{f.name}'")
        elif f.name in fields:
            values[f.name] = _convert(fields[f.name], hints[f.name], f"{where}.{f.name}")
        elif required:
            raise ProtocolError(f"'{where}' needs the field '{f.name}'")
    try:
        return cls(**values)
    except OccNetError as exc:  # a value the class's own checks refuse (an extraction setting out of range)
        raise ProtocolError(f"'{where}': {exc}") from None


def _convert(value: Any, hint: Any, where: str) -> Any:
    """A JSON value checked against a field's type hint; ProtocolError names the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProtocolError(f"'{where}' must be an object")
        return _from_fields(hint, value, {}, where)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list):
            raise ProtocolError(f"'{where}' must be a list")
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if tuple in (origin, hint) else items
    if origin is Literal:
        if value not in args:
            raise ProtocolError(f"'{where}' is {value!r}, not one of {', '.join(map(repr, args))}")
        return value
    if hint is Any:
        return value
    if hint is float and type(value) in (int, float):
        return float(value)
    if hint is dict and isinstance(value, dict) or type(value) is hint:
        return value
    raise ProtocolError(f"'{where}' must be {getattr(hint, '__name__', hint)}, not {type(value).__name__}")
