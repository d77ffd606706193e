"""The torch-free parts of the backend that the add-on shares: the worker protocol, the input file types, the
atomic writing of outputs and the colour transfer between points."""

try:  # inside the installed extension, backend/ is a sibling package
    from ..backend import protocol
    from ..backend.colors import neighbour_colors
    from ..backend.formats import LATENT_MARKER, SUPPORTED, input_kind, read_ply_header
    from ..backend.outputs import atomic_write, is_partial, same_file, terminate_as_interrupt
except ImportError:  # a source checkout, where both halves are top-level packages
    from backend import protocol
    from backend.colors import neighbour_colors
    from backend.formats import LATENT_MARKER, SUPPORTED, input_kind, read_ply_header
    from backend.outputs import atomic_write, is_partial, same_file, terminate_as_interrupt

AUTO_MODEL = protocol.AUTO_MODEL
ERROR_KINDS = protocol.ERROR_KINDS
MIN_PIECE = protocol.MIN_PIECE
MODELS_PATH_ENV = protocol.MODELS_PATH_ENV
RESOLUTIONS = protocol.RESOLUTIONS
input_summary = protocol.input_summary
CancelRequest = protocol.CancelRequest
ErrorReply = protocol.ErrorReply
ExtractRequest = protocol.ExtractRequest
HelloReply = protocol.HelloReply
HelloRequest = protocol.HelloRequest
InterpolateRequest = protocol.InterpolateRequest
LatentFrame = protocol.LatentFrame
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
threshold_problem = protocol.threshold_problem
write_message = protocol.write_message

__all__ = [
    "AUTO_MODEL",
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
    "LatentFrame",
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
    "threshold_problem",
    "write_message",
]
