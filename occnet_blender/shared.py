"""The torch-free parts of the backend that the add-on shares: the worker protocol and the input file types."""

try:  # inside the installed extension, backend/ is a sibling package
    from ..backend import protocol
    from ..backend.formats import SUPPORTED, input_kind
except ImportError:  # a source checkout, where both halves are top-level packages
    from backend import protocol
    from backend.formats import SUPPORTED, input_kind

AUTO_MODEL = protocol.AUTO_MODEL
ERROR_KINDS = protocol.ERROR_KINDS
MODELS_PATH_ENV = protocol.MODELS_PATH_ENV
CancelRequest = protocol.CancelRequest
ErrorReply = protocol.ErrorReply
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
write_message = protocol.write_message

__all__ = [
    "AUTO_MODEL",
    "ERROR_KINDS",
    "MODELS_PATH_ENV",
    "SUPPORTED",
    "CancelRequest",
    "ErrorReply",
    "HelloReply",
    "HelloRequest",
    "InterpolateRequest",
    "LatentFrame",
    "MeshReply",
    "ModelInfo",
    "ModelsRequest",
    "Progress",
    "ProtocolError",
    "ReconstructReply",
    "ReconstructRequest",
    "Reply",
    "Request",
    "ShutdownRequest",
    "decode_reply",
    "encode",
    "input_kind",
    "read_message",
    "write_message",
]
