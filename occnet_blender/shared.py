"""The torch-free parts of the backend that the add-on shares: the worker protocol and the input file types."""

try:  # inside the installed extension, backend/ is a sibling package
    from ..backend.formats import SUPPORTED, input_kind
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
    "Message",
    "ProtocolError",
    "RESOLUTIONS",
    "input_kind",
    "read_message",
    "threshold_problem",
    "write_message",
]
