"""Writing results without risking the user's files: checks before any work, and atomic replacement.

Standard library only, so checkpoints, data sets, meshes and latents all write the same way.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

PARTIAL = ".partial"  # the mark of atomic_write's temporary files: NAME.PID.partial.SUFFIX
_PARTIAL_NAME = re.compile(rf"\.\d+{re.escape(PARTIAL)}(\.[^.]*)?$")


def is_partial(path: str | Path) -> bool:
    """Whether a file is a temporary that atomic_write left behind (a killed process): never an input."""
    return bool(_PARTIAL_NAME.search(Path(path).name))


def final_name(path: str) -> str:
    """The file a temporary of atomic_write stands for (itself for any other name)."""
    return _PARTIAL_NAME.sub("", path)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM (a pipeline's stop, `kill`) unwinds like Ctrl-C, so every atomic write removes its
    temporary file and leaves the earlier file as it was. Only the main thread can take signals; elsewhere the
    block changes nothing."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; it replaces `path` in one step only once the block ends.

    A failed or interrupted write (an exception, Ctrl-C) removes the temporary file and leaves any existing
    `path` as it was. The temporary name keeps the suffix, for writers that pick the format by extension.
    Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def check_output(path: str | Path, inputs: Iterable[str | Path] = (), flag: str = "--out") -> Path:
    """Refuse, before any computation, an output that is a folder, cannot be created, or is one of `inputs`.

    An existing file that is not an input may be replaced: the user named it as the output.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; name a file inside it.")
    for source in inputs:
        if same_file(path, source):
            raise OutputError(
                f"{flag} {path}: is also an input of this command and would be overwritten; choose another file name."
            )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: cannot write into {folder}; choose a folder you can write to.")
    temporary, limit = partial_path(path).name, _name_max(folder)
    if max(len(os.fsencode(part)) for part in (*path.parts[:-1], temporary)) > limit:
        raise OutputError(
            f"{flag} {path}: the name is too long for the file system once the temporary suffix is added "
            f"(at most {limit - len(temporary) + len(path.name)} characters); choose a shorter name."
        )
    return path


def partial_path(path: Path) -> Path:
    """Where atomic_write writes `path` first: beside it, with the suffix kept for format-picking writers."""
    return path.with_name(f"{path.name}.{os.getpid()}{PARTIAL}{path.suffix}")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # Windows has no pathconf; its limit is 255 as well
        return 255


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same resolved path, or (links, other spellings) the same inode."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a loop of links names no file at all
        return os.path.abspath(a) == os.path.abspath(b)
