"""Stage the Blender extension and write dist/occnet-<version>.zip.

The zip holds what Blender installs: a root `__init__.py` that registers `occnet_blender`, the
add-on itself, the torch backend with its shipped weights (the worker runs it from there), the
manifest, and `backend/requirements.txt` for the add-on's "Install backend" button.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = "blender_manifest.toml"
PACKAGES = ("occnet_blender", "backend")
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
ROOT_INIT = '''"""OccNet for Blender (written by build.py): the extension's entry point."""

from .occnet_blender import register, unregister

__all__ = ["register", "unregister"]
'''


def manifest_version() -> str:
    return tomllib.loads((ROOT / MANIFEST).read_text())["version"]


def backend_requirements() -> str:
    """The backend's runtime needs, from pyproject.toml: one list for pip and for the installer."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return "\n".join(project["dependencies"]) + "\n"


def staged_files() -> dict[str, bytes]:
    """Archive name -> contents."""
    files = {"__init__.py": ROOT_INIT.encode(), MANIFEST: (ROOT / MANIFEST).read_bytes()}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix not in SKIPPED_SUFFIXES:
                files[relative.as_posix()] = path.read_bytes()
    files["backend/requirements.txt"] = backend_requirements().encode()
    return files


def build(out_dir: Path = ROOT / "dist") -> Path:
    version = manifest_version()
    import backend

    if backend.__version__ != version:
        raise SystemExit(f"{MANIFEST} says version {version} but backend/__init__.py says {backend.__version__}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"occnet-{version}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in staged_files().items():
            archive.writestr(name, data)
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zip (default: dist/)")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
