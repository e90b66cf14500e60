"""Label corrections: whole-face files whose folder gives the wrong class, and the class they belong to.

Exclusion lists drop a mislabelled file; a correction keeps it under its right class. That matters for masks worn
under the nose in sources without a ``mask_incorrect`` folder (chandrika files them under ``with_mask``): left as
they are they teach the model that such a mask is worn correctly, and dropped they are real incorrectly worn masks
lost to a class that has few.

A list holds one correction per line, ``PATH -> LABEL  # reason``; PATH is relative to the working folder or to the
list's own folder (as for ``--exclude``) and may contain spaces. Only whole-face files (no box) are corrected: a
scene photo holds several faces, and one path cannot say which.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from maskwatch.data.index import Sample
from maskwatch.labels import UnknownLabelError, canonical_label

ARROW = "->"


@dataclass(frozen=True)
class LabelCorrection:
    """One line of a list: the entry as written, the paths it may name, and the right label."""

    entry: str
    paths: frozenset[Path]
    label: str


def read_label_corrections(files: Iterable[str | Path]) -> list[LabelCorrection]:
    """Every correction of the lists in ``files``; raises ValueError naming the file and line of a malformed one."""
    corrections: list[LabelCorrection] = []
    seen: dict[Path, str] = {}
    for file in files:
        try:
            lines = Path(file).read_text(encoding="utf-8-sig").splitlines()  # -sig: editors that write a BOM
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ValueError(f"--relabel {file}: cannot read ({reason})") from None
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            entry, arrow, label = text.rpartition(ARROW)
            entry, label = entry.strip(), label.strip()
            if not arrow or not entry or not label:
                raise ValueError(f"--relabel {file}:{number}: expected 'PATH -> LABEL', got {text!r}")
            try:
                label = canonical_label(label)
            except UnknownLabelError as error:
                raise ValueError(f"--relabel {file}:{number}: {error}") from None
            paths = frozenset({Path(entry).resolve(), (Path(file).parent / entry).resolve()})
            for path in paths:
                if seen.get(path, label) != label:
                    raise ValueError(f"--relabel {file}:{number}: {entry} is corrected to {seen[path]} elsewhere")
                seen[path] = label
            corrections.append(LabelCorrection(entry, paths, label))
    return corrections


def apply_label_corrections(samples: Sequence[Sample], corrections: Sequence[LabelCorrection]) -> tuple[list[Sample], list[str]]:
    """``samples`` with the corrected labels, and the entries that named no whole-face sample (each worth a warning:
    a typo or a moved file would otherwise quietly keep the wrong label)."""
    naming: dict[Path, list[LabelCorrection]] = {}
    for correction in corrections:
        for path in correction.paths:
            naming.setdefault(path, []).append(correction)  # agreeing entries may name one file in two spellings
    used: set[int] = set()
    out = []
    for sample in samples:
        matches = naming.get(Path(sample.path).resolve(), []) if sample.box is None else []
        if not matches:
            out.append(sample)
            continue
        used.update(id(c) for c in matches)
        out.append(replace(sample, label=matches[0].label))
    return out, [c.entry for c in corrections if id(c) not in used]
