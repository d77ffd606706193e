"""The torch-free parts of the backend that the add-on shares: the worker protocol and the extraction options it
carries, the input file types, the atomic writing of outputs and the colour transfer between points."""

try:  # inside the installed extension, backend/ is a sibling package
    from ..backend import protocol
    from ..backend.colors import neighbour_colors
    from ..backend.errors import InputError
    from ..backend.formats import LATENT_MARKER, SUPPORTED, input_kind, read_ply_header
    from ..backend.inputs.views import View
    from ..backend.outputs import atomic_write, is_partial, same_file, terminate_as_interrupt
    from ..backend.registry import MODELS_PATH_ENV
    from ..backend.surface.options import (
        DEFAULT_RESOLUTION,
        MIN_PIECE,
        RESOLUTIONS,
        ExtractOptions,
        OptionsError,
    )
except ImportError:  # a source checkout, where both halves are top-level packages
    from backend import protocol
    from backend.colors import neighbour_colors
    from backend.errors import InputError
    from backend.formats import LATENT_MARKER, SUPPORTED, input_kind, read_ply_header
    from backend.inputs.views import View
    from backend.outputs import atomic_write, is_partial, same_file, terminate_as_interrupt
    from backend.registry import MODELS_PATH_ENV
    from backend.surface.options import (
        DEFAULT_RESOLUTION,
        MIN_PIECE,
        RESOLUTIONS,
        ExtractOptions,
        OptionsError,
    )

AUTO_MODEL = protocol.AUTO_MODEL
ERROR_KINDS = protocol.ERROR_KINDS
input_summary = protocol.input_summary
CancelRequest = protocol.CancelRequest
ErrorReply = protocol.ErrorReply
ExtractRequest = protocol.ExtractRequest
HelloReply = protocol.HelloReply
HelloRequest = protocol.HelloRequest
InterpolateRequest = protocol.InterpolateRequest
LatentInfo = protocol.LatentInfo
MeshReply = protocol.MeshReply
ModelInfo = protocol.ModelInfo
ModelsRequest = protocol.ModelsRequest
Progress = protocol.Progress
ProtocolError = protocol.ProtocolError
ReconstructReply = protocol.ReconstructReply
ReconstructRequest = protocol.ReconstructRequest
Reply = protocol.Reply
Request = protocol.Request
ShutdownRequest = protocol.ShutdownRequest
decode_reply = protocol.decode_reply
encode = protocol.encode
read_message = protocol.read_message
write_message = protocol.write_message

__all__ = [
    "InputError",
    "View",
    "AUTO_MODEL",
    "DEFAULT_RESOLUTION",
    "ExtractOptions",
    "OptionsError",
    "ERROR_KINDS",
    "LATENT_MARKER",
    "MIN_PIECE",
    "MODELS_PATH_ENV",
    "SUPPORTED",
    "atomic_write",
    "CancelRequest",
    "ErrorReply",
    "ExtractRequest",
    "HelloReply",
    "HelloRequest",
    "InterpolateRequest",
    "LatentInfo",
    "MeshReply",
    "ModelInfo",
    "ModelsRequest",
    "Progress",
    "ProtocolError",
    "RESOLUTIONS",
    "ReconstructReply",
    "ReconstructRequest",
    "Reply",
    "Request",
    "ShutdownRequest",
    "decode_reply",
    "encode",
    "input_kind",
    "input_summary",
    "neighbour_colors",
    "is_partial",
    "read_message",
    "read_ply_header",
    "same_file",
    "terminate_as_interrupt",
    "write_message",
]
