"""The torch-free parts of the backend that the add-on shares: the worker protocol, the input file types and the
atomic writing of outputs."""

try:  # inside the installed extension, backend/ is a sibling package
    from ..backend.formats import SUPPORTED, input_kind
    from ..backend.outputs import atomic_write, same_file
    from ..backend.protocol import (
        AUTO_MODEL,
        MODELS_PATH_ENV,
        RESOLUTIONS,
        Message,
        ProtocolError,
        read_message,
        threshold_problem,
        write_message,
    )
except ImportError:  # a source checkout, where both halves are top-level packages
    from backend.formats import SUPPORTED, input_kind
    from backend.outputs import atomic_write, same_file
    from backend.protocol import (
        AUTO_MODEL,
        MODELS_PATH_ENV,
        RESOLUTIONS,
        Message,
        ProtocolError,
        read_message,
        threshold_problem,
        write_message,
    )

__all__ = [
    "AUTO_MODEL",
    "MODELS_PATH_ENV",
    "SUPPORTED",
    "atomic_write",
    "Message",
    "ProtocolError",
    "RESOLUTIONS",
    "input_kind",
    "read_message",
    "same_file",
    "threshold_problem",
    "write_message",
]
