"""Extend the committed split manifest with new data without moving any existing row (issue 9: scenes-ilc).

    python recipes/extend_splits.py recipes/default_splits.csv.gz ../shared/data/scenes-ilc --out recipes/default_splits.csv.gz

Rows already in the manifest keep their group and split; new files are grouped by perceptual hash with each other and
with the old files (a near-duplicate of an old file joins its group), and the other new groups are assigned by the hash
of their key, exactly as a fresh split would assign them.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from maskwatch.data.index import index_sources
from maskwatch.data.loading import extend_splits, hash_image_files, load_samples
from maskwatch.data.splits import read_manifest, write_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("data", type=Path, nargs="+", help="new source folders (class folders or VOC scenes)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    old_rows = read_manifest(args.manifest)
    known = {row.sample.path for row in old_rows}
    report = index_sources(args.data)
    fresh = [s for s in report.samples if s.path not in known]
    new = load_samples(fresh, size=32)  # crops unused here; hashes of the full images are what matter
    old_hashes, problems = hash_image_files(sorted(known))
    for problem in [*report.problems, *new.problems, *problems]:
        logging.warning("%s", problem)
    root = args.data[0].parent
    rows = extend_splits(old_rows, old_hashes, new, seed=args.seed, root=root)
    write_manifest(rows, args.out)
    added = rows[len(old_rows) :]
    logging.info(
        "kept %d rows unchanged; added %d faces: %s",
        len(old_rows),
        len(added),
        dict(Counter((r.sample.source, r.split) for r in added)),
    )


if __name__ == "__main__":
    main()
