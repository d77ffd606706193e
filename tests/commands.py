"""Running the backend's CLI as a user does: a fresh process, output captured."""

import subprocess
import sys


def run_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend", *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )
