"""Fix the real-mesh split to a list of held-out meshes, whatever the data script's grouping does today.

Why: the shipped models' tables are measured on exactly the meshes held out when the first of them trained
(docs/results/real-heldout-split.txt). The data script's grouping rules changed since, which moved a few meshes
between splits, so training on `data/real`'s train split as it is now could train on a held-out mesh. This writes
two folders of links into `data/real`: one whose test split is exactly the list, one whose train and validation
splits are `data/real`'s without any listed mesh.

    python scripts/heldout_split.py            # data/real -> data/real_heldout, data/real_train
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real")
    parser.add_argument("--heldout", type=Path, default=ROOT / "docs" / "results" / "real-heldout-split.txt")
    parser.add_argument("--test-out", type=Path, default=ROOT / "data" / "real_heldout")
    parser.add_argument("--train-out", type=Path, default=ROOT / "data" / "real_train")
    args = parser.parse_args()
    listed = {tuple(line.split("/", 1)) for line in args.heldout.read_text().split()}
    missing = sorted(f"{c}/{n}" for c, n in listed if not (args.data / c / n / "points.npz").is_file())
    if missing:
        raise SystemExit(
            f"{len(missing)} held-out meshes are not in {args.data} (first: {missing[0]}); prepare it first"
        )
    for category in sorted({c for c, _ in listed} | {p.name for p in args.data.iterdir() if p.is_dir()}):
        source = args.data / category
        held = sorted(n for c, n in listed if c == category)
        splits = {
            s: (source / f"{s}.lst").read_text().split() if (source / f"{s}.lst").is_file() else []
            for s in ("train", "val")
        }
        kept = {s: [n for n in names if (category, n) not in listed] for s, names in splits.items()}
        write(args.test_out / category, source, {"test": held, "train": [], "val": []})
        write(args.train_out / category, source, {**kept, "test": []})
        moved = sum(len(splits[s]) - len(kept[s]) for s in splits)
        print(
            f"{category}: {len(held)} held out, {len(kept['train'])} train, {len(kept['val'])} val ({moved} left out)"
        )
    return 0


def write(folder: Path, source: Path, splits: dict[str, list[str]]) -> None:
    """Split lists in `folder` and a link to each listed mesh of `source`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        (folder / f"{split}.lst").write_text("\n".join(names) + ("\n" if names else ""))
        for name in names:
            link = folder / name
            if not link.exists():
                link.symlink_to((source / name).resolve(), target_is_directory=True)


if __name__ == "__main__":
    raise SystemExit(main())
