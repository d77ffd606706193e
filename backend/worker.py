"""The process the Blender add-on starts: serves protocol requests (protocol.py) on stdin/stdout through
serve.py, on the PyTorch engine or the built-in CPU runtime:

    python -m backend.worker --engine torch --device auto     # any Python with PyTorch
    python -m backend.worker --engine runtime                 # Blender's own Python: numpy and ONNX Runtime

The engine's libraries load only after stdout is handed to the protocol alone, so nothing a library prints at
import corrupts a message; the runtime never imports torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .engines import ENGINES
from .serve import Server, protocol_channel, serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="torch", choices=ENGINES, help="PyTorch, or the built-in CPU runtime")
    parser.add_argument("--device", default="auto", help="PyTorch's device for jobs: auto, cuda, mps or cpu")
    parser.add_argument("--threads", type=int, default=0, help="the runtime's threads per model; 0: as PyTorch")
    parser.add_argument("--log", type=Path, help="where bugs' tracebacks go (default: a file in the temp folder)")
    args = parser.parse_args(argv)
    channel = protocol_channel()  # first: the engine's libraries load with the server, after it, so hello is quick
    serve_forever(Server(channel, args.engine, args.device, args.threads, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
