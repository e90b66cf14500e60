"""Leak-free, deterministic train/val/test splits, written to an auditable manifest.

Leaks come from the same photo appearing twice (augmented copies, resized copies) and from faces
of one scene photo. Both are handled by grouping: files whose perceptual hashes are within
``max_distance`` bits are joined (union-find), and all faces of one file share its group. A
group's split is a pure function of its key (a hash), so the same data always splits the same
way and adding new files does not move old groups across the line.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.data.index import Sample
from maskwatch.fileio import atomic_write

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFractions:
    val: float = 0.15
    test: float = 0.15


def near_duplicate_groups(keys: Sequence[str], hashes: np.ndarray, max_distance: int = 6) -> list[str]:
    """Union files whose 64-bit hashes differ in at most ``max_distance`` bits.

    Returns, for each file, its group key: the smallest member key, so group keys do not depend on
    the order the files were found in.
    """
    n = len(keys)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.asarray(hashes, dtype=np.uint64)
    for i in range(n - 1):
        distances = np.bitwise_count(hashes[i + 1 :] ^ hashes[i])
        for j in np.nonzero(distances <= max_distance)[0]:
            root_a, root_b = find(i), find(i + 1 + int(j))
            if root_a != root_b:
                parent[max(root_a, root_b)] = min(root_a, root_b)
    smallest: dict[int, str] = {}
    for i in range(n):
        root = find(i)
        smallest[root] = min(smallest.get(root, keys[i]), keys[i])
    return [smallest[find(i)] for i in range(n)]


def split_of(group: str, fractions: SplitFractions = SplitFractions(), seed: int = 0) -> str:
    """Assign a group to a split from a hash of its key: stable across runs and machines."""
    digest = hashlib.sha1(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < fractions.test:
        return "test"
    if u < fractions.test + fractions.val:
        return "val"
    return "train"


@dataclass(frozen=True)
class ManifestRow:
    sample: Sample
    group: str
    split: str


MANIFEST_FIELDS = ("path", "label", "source", "x1", "y1", "x2", "y2", "group", "split")


def write_manifest(rows: Sequence[ManifestRow], path: Path) -> None:
    """Write the split manifest (CSV, gzip for ``.gz``) atomically, so a run can be reproduced and audited."""
    path = Path(path)
    if not path.name.endswith(".gz"):
        with atomic_write(path, newline="") as handle:
            _write_rows(handle, rows)
        return
    # gzip with mtime 0: the same rows give the same bytes, so a committed manifest only changes when its rows do
    with atomic_write(path, "wb") as raw:
        with (
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed,
            io.TextIOWrapper(packed, newline="") as handle,
        ):
            _write_rows(handle, rows)


def _write_rows(handle, rows: Sequence[ManifestRow]) -> None:
    writer = csv.writer(handle)
    writer.writerow(MANIFEST_FIELDS)
    for row in rows:
        box = row.sample.box or ("", "", "", "")
        writer.writerow([str(row.sample.path), row.sample.label, row.sample.source, *box, row.group, row.split])


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest` (plain or gzip-compressed CSV).

    Raises ValueError naming the file (and line) for a missing column, a bad box value or an unreadable file, so that
    ``--splits`` and ``evaluate MANIFEST`` report one line instead of a KeyError traceback.
    """
    rows = []
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [k for k in MANIFEST_FIELDS if k not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a split manifest (missing columns {', '.join(missing)})")
            for line, record in enumerate(reader, start=2):
                try:
                    box = tuple(float(record[k]) for k in ("x1", "y1", "x2", "y2")) if record["x1"] else None
                except (TypeError, ValueError):
                    raise ValueError(f"{path}:{line}: box values are not numbers") from None
                sample = Sample(Path(record["path"]), record["label"], record["source"], box)  # type: ignore[arg-type]
                rows.append(ManifestRow(sample, record["group"], record["split"]))
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as error:
        raise ValueError(f"{path}: cannot read split manifest ({error})") from None
    return rows
