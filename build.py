"""Stage the Blender extension and write one zip per platform: dist/occnet-<version>-<platform>.zip.

Each zip holds what Blender installs: a root `__init__.py` that registers `occnet_blender`, the add-on itself,
the backend with its shipped weights, `backend/requirements.txt` for the add-on's "Install backend" button, the
manifest with the zip's `platforms` and `wheels`, and that platform's wheels under `wheels/` (Blender installs
them into its extensions site-packages): ONNX Runtime, which runs the models on the CPU, and Pillow, trimesh and
laspy, which read image, mesh and .las files as the PyTorch backend does. They need only numpy, which Blender ships,
so nothing is downloaded.

The wheels come unmodified from the package registry (`pip download`), are cached under build/wheels/ and are
checked against the sha256 pinned in WHEELS, so a build is reproducible; so are the zips (fixed timestamps).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = "blender_manifest.toml"
PACKAGES = ("occnet_blender", "backend")
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}
WHEEL_CACHE = ROOT / "build" / "wheels"
ZIP_LIMIT = 100 * 1000 * 1000  # bytes: the most the extension platform accepts per upload
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the same timestamp on every entry: the same inputs give the same zip bytes
PYTHON_VERSION = "3.11"  # Blender 4.2 to 5.0
ROOT_INIT = '''"""OccNet for Blender (written by build.py): the extension's entry point."""

from .occnet_blender import register, unregister

__all__ = ["register", "unregister"]
'''

# The one pinned list: Blender platform -> the wheels its zip carries (CPython 3.11), each with its sha256.
# ONNX Runtime runs the models; Pillow, trimesh and laspy read image, mesh and .las files as the PyTorch backend does
# (trimesh and laspy are pure Python: one wheel for all). ONNX Runtime 1.31 has no Intel-macOS wheel (the last was
# 1.23), so there is no macos-x64 zip. Not bundled: lazrs (.laz) and pye57 (.e57) have no Windows-on-ARM
# wheels, so the built-in engine refuses those formats naming the fix (the installed PyTorch
# backend has them); .pcd needs no package.
TRIMESH = ("trimesh-5.2.0-py3-none-any.whl", "04db2c7ec62afdd7763fb04c82bb5f257ddd984993a19ee83697f475fc58fd29")
LASPY = ("laspy-2.7.0-py3-none-any.whl", "15f5344c62a1023461996bdf5d1ba5fdd813e96694a524fee712931134f3792f")
WHEELS: dict[str, tuple[tuple[str, str], ...]] = {
    "linux-x64": (
        (
            "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
        ),
        (
            "pillow-13.0.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
            "a625df9a2a5597fa5e5266e01aefc82604bb85d291e3547981e863560d75da6c",
        ),
        TRIMESH,
        LASPY,
    ),
    "windows-x64": (
        (
            "onnxruntime-1.31.1-cp311-cp311-win_amd64.whl",
            "c3d91b5de31e2fc82d71bd65b2b22bddee8b49057a3a36338e9a868e0ea90c05",
        ),
        ("pillow-13.0.0-cp311-cp311-win_amd64.whl", "d7710eb676e9bb68965cb045be0d333b4c0d7f9dfbaa7fbf121385b1588683d3"),
        TRIMESH,
        LASPY,
    ),
    "windows-arm64": (
        (
            "onnxruntime-1.31.1-cp311-cp311-win_arm64.whl",
            "93800007a7023b3ab26ad72e6463d0d57d84ead49a2f6341954d91438e046bc0",
        ),
        ("pillow-13.0.0-cp311-cp311-win_arm64.whl", "12fbb851cf323cc19aac3eea1df5ad17b57e91e9fe3cfd06100dba7bb8208c13"),
        TRIMESH,
        LASPY,
    ),
    "macos-arm64": (
        (
            "onnxruntime-1.31.1-cp311-cp311-macosx_14_0_arm64.whl",
            "60b6b69bfe580eab576cacc5d132a0e9cf2a37fcfd18d46dd191042b1d1ed0d7",
        ),
        (
            "pillow-13.0.0-cp311-cp311-macosx_11_0_arm64.whl",
            "37290fbef0c73e2d51d594eb78fded7dc7170d1c3ad0a890269e6fd8c8c4e061",
        ),
        TRIMESH,
        LASPY,
    ),
}
PLATFORMS = tuple(WHEELS)


class WheelUnavailable(RuntimeError):
    """A pinned wheel is not in the cache and could not be fetched (offline, registry down, hash mismatch)."""


def manifest_version() -> str:
    return tomllib.loads((ROOT / MANIFEST).read_text())["version"]


def backend_requirements() -> str:
    """The backend's runtime needs, from pyproject.toml: one list for pip and for the installer."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return "\n".join(project["dependencies"]) + "\n"


def zip_name(version: str, platform: str) -> str:
    """Blender's own name for a split-platform build (`blender_ext.py build --split-platforms`)."""
    return f"occnet-{version}-{platform.replace('-', '_')}.zip"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(filename: str, expected: str, cache: Path = WHEEL_CACHE) -> Path:
    """A pinned wheel, from the cache or else from the registry; its sha256 is always checked."""
    cached = cache / filename
    if cached.exists() and sha256(cached) == expected:
        return cached
    distribution, version, *_, platform_tags = filename.removesuffix(".whl").split("-")
    wheel_platform = platform_tags.split(".")[0]  # one of a compressed tag set is enough for pip to find it
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", PYTHON_VERSION, "--platform", wheel_platform, "--dest", scratch]
        done = subprocess.run([*command, f"{distribution}=={version}"], capture_output=True, text=True)
        fetched = Path(scratch) / filename
        if done.returncode != 0 or not fetched.exists():
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else f"pip did not write {filename}"
            raise WheelUnavailable(f"{filename} is not in {cache} and pip could not fetch it: {reason}")
        if (actual := sha256(fetched)) != expected:
            raise WheelUnavailable(
                f"{filename} from the registry has sha256 {actual}, not the pinned {expected}: "
                "check the registry, or update WHEELS in build.py if the pin was wrong."
            )
        fetched.replace(cached)
    return cached


def fetch_wheels(platforms: Iterable[str] = PLATFORMS, cache: Path = WHEEL_CACHE) -> dict[str, list[Path]]:
    return {platform: [fetch_wheel(*pin, cache=cache) for pin in WHEELS[platform]] for platform in platforms}


def platform_manifest(platform: str) -> bytes:
    """The source manifest with this zip's `platforms` and `wheels`, as top-level keys before the first table."""
    text = (ROOT / MANIFEST).read_text()
    lines = text.splitlines(keepends=True)
    first_table = next(i for i, line in enumerate(lines) if line.startswith("["))
    wheels = ", ".join(f'"./wheels/{filename}"' for filename, _ in WHEELS[platform])
    fields = f'platforms = ["{platform}"]\nwheels = [{wheels}]\n\n'
    return ("".join(lines[:first_table]) + fields + "".join(lines[first_table:])).encode()


def staged_files() -> dict[str, bytes]:
    """Archive name -> contents, the same for every platform (the manifest is added per platform)."""
    files = {"__init__.py": ROOT_INIT.encode()}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix not in SKIPPED_SUFFIXES:
                files[relative.as_posix()] = path.read_bytes()
    files["backend/requirements.txt"] = backend_requirements().encode()
    files["LICENSE"] = (ROOT / "LICENSE").read_bytes()  # the GPL's text travels with the code it licenses
    return files


def write_zip(target: Path, files: dict[str, bytes], wheels: list[Path]) -> Path:
    """Write atomically; the wheels are stored as they are (already compressed), the rest deflated."""
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, data in files.items():
            archive.writestr(entry(name), data, compress_type=zipfile.ZIP_DEFLATED)
        for wheel in wheels:
            archive.writestr(entry(f"wheels/{wheel.name}"), wheel.read_bytes(), compress_type=zipfile.ZIP_STORED)
    partial.replace(target)
    return target


def entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.external_attr = 0o644 << 16
    return info


def build(out_dir: Path = ROOT / "dist", platforms: Iterable[str] = PLATFORMS) -> dict[str, Path]:
    """Write one zip per platform into `out_dir`; returns platform -> zip path."""
    platforms = tuple(platforms)
    if unknown := [p for p in platforms if p not in WHEELS]:
        raise SystemExit(f"No wheels are pinned for {', '.join(unknown)}; choose from {', '.join(WHEELS)}.")
    version = manifest_version()
    import backend

    if backend.__version__ != version:
        raise SystemExit(f"{MANIFEST} says version {version} but backend/__init__.py says {backend.__version__}.")
    wheels = fetch_wheels(platforms)
    common = staged_files()
    out_dir.mkdir(parents=True, exist_ok=True)
    zips = {}
    for platform in platforms:
        files = {**common, MANIFEST: platform_manifest(platform)}
        zips[platform] = write_zip(out_dir / zip_name(version, platform), files, wheels[platform])
        if (size := zips[platform].stat().st_size) > ZIP_LIMIT:
            raise SystemExit(f"{zips[platform]} is {size / 1e6:.1f} MB, over the {ZIP_LIMIT / 1e6:.0f} MB limit.")
    return zips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zips (default: dist/)")
    parser.add_argument(
        "--platform", action="append", choices=PLATFORMS, help="build only this platform (repeatable; default: all)"
    )
    parser.add_argument("--fetch-only", action="store_true", help="only fill the wheel cache (build/wheels/)")
    args = parser.parse_args(argv)
    platforms = args.platform or PLATFORMS
    try:
        if args.fetch_only:
            for path in fetch_wheels(platforms).values():
                print(path)
        else:
            for path in build(args.out, platforms).values():
                print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    except WheelUnavailable as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
