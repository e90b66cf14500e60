"""Turn folders of images into labelled samples: class-folder trees and Pascal VOC scenes.

A sample is a file plus, for scene photos, the face box to crop from it. Problems (unknown
labels, non-image files, empty folders, tiny boxes) are collected as one-line messages rather
than raised, so one bad file never stops an index of thousands.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maskwatch.imaging import is_image_path, is_left_out, is_system_file, is_system_folder, leaving_out
from maskwatch.labels import UnknownLabelError, canonical_label
from maskwatch.voc import VocObject, box_problem, find_scene_image, parse_voc, read_voc_folder

__all__ = ["VocObject", "box_problem", "find_scene_image", "parse_voc"]  # re-exported: the VOC reader lives in maskwatch.voc

log = logging.getLogger(__name__)

#: Scene faces smaller than this (shorter side, pixels) are skipped for classifier training.
DEFAULT_MIN_FACE = 10


@dataclass(frozen=True)
class Sample:
    """One labelled face: a whole image (class folders) or a box inside a scene photo."""

    path: Path
    label: str
    source: str
    box: tuple[float, float, float, float] | None = None


@dataclass
class IndexReport:
    """What an index found and what it had to skip, with the reason for each skip."""

    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped_small: int = 0

    def extend(self, other: IndexReport) -> None:
        self.samples.extend(other.samples)
        self.problems.extend(other.problems)
        self.skipped_small += other.skipped_small

    def summary(self) -> str:
        counts = Counter(sample.label for sample in self.samples)
        parts = ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))
        return (
            f"{len(self.samples)} faces ({parts}); {len(self.problems)} files or folders skipped; "
            f"{self.skipped_small} boxes too small"
        )


def source_name(root: Path) -> str:
    """What reports call a data folder: its name, also when it is spelled ``.``, ``./`` or ``..``."""
    root = Path(root)
    return root.name if root.name not in ("", "..") else root.resolve().name


def index_class_folders(root: Path, source: str | None = None, skip: Sequence[Path] = ()) -> IndexReport:
    """Index ``root/<label>/**/<image>``; folder names may be any alias of a canonical label. ``skip``: files and
    folders left out (``evaluate``'s own outputs, when they lie inside the tree)."""
    root = Path(root)
    source = source or source_name(root)
    report = IndexReport()
    if not root.is_dir():
        report.problems.append(f"{root}: not a folder")
        return report
    left_out = leaving_out(skip)
    here = [p for p in root.iterdir() if not is_left_out(p, left_out)]
    folders = sorted(p for p in here if p.is_dir() and not is_system_folder(p.name))
    loose = sorted(p for p in here if not p.is_dir() and is_image_path(p) and not is_system_file(p))
    if loose and not any(_is_label(folder.name) for folder in folders):
        # e.g. one class folder given by mistake: one line, not one per image
        report.problems.append(
            f"{root}: {len(loose)} images lie directly in it and no class folder (with_mask/, without_mask/, "
            f"mask_incorrect/ or an alias) is below it; skipped"
        )
        loose = []
    for path in loose:
        reason = "broken symbolic link" if not path.exists() else "an image outside any class folder (its class is unknown)"
        report.problems.append(f"{path}: skipped, {reason}")
    for folder in folders:
        try:
            label = canonical_label(folder.name)
        except UnknownLabelError as error:
            count = "" if folder.is_symlink() else f" ({_image_count(folder)} images)"  # a link may lead anywhere
            report.problems.append(f"{folder}: skipped folder{count}, {error}")
            continue
        entries = sorted(
            p
            for p in folder.rglob("*")
            if (p.is_file() or p.is_symlink()) and not is_system_file(p, folder) and not is_left_out(p, left_out)
        )
        files = [p for p in entries if p.is_file()]
        images = [p for p in files if is_image_path(p)]
        for path in entries:
            if not path.exists():
                report.problems.append(f"{path}: skipped, broken symbolic link")
            elif path.is_file() and not is_image_path(path):
                report.problems.append(f"{path}: skipped, not an image file name")
        if not images:
            report.problems.append(f"{folder}: empty class folder (no images)")
        report.samples.extend(Sample(path, label, source) for path in images)
    if not report.samples and not report.problems:
        report.problems.append(f"{root}: no class folders found")
    return report


def _is_label(name: str) -> bool:
    try:
        canonical_label(name)
    except UnknownLabelError:
        return False
    return True


def _image_count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and is_image_path(p) and not is_system_file(p, folder))


def index_voc_scenes(root: Path, source: str | None = None, *, min_face: int = DEFAULT_MIN_FACE) -> IndexReport:
    """Index every annotated face of ``root/images`` + ``root/annotations`` as a box sample."""
    root = Path(root)
    source = source or source_name(root)
    folder = read_voc_folder(root / "images", root / "annotations")
    report = IndexReport(problems=folder.problems)
    for scene in folder.scenes:
        for label, box in scene.faces:
            x1, y1, x2, y2 = box
            if min(x2 - x1, y2 - y1) < min_face:
                report.skipped_small += 1
                continue
            report.samples.append(Sample(scene.image_path, label, source, box))
    return report


def is_voc_root(path: Path) -> bool:
    return (Path(path) / "annotations").is_dir() and (Path(path) / "images").is_dir()


def index_source(
    path: Path, source: str | None = None, *, min_face: int = DEFAULT_MIN_FACE, skip: Sequence[Path] = ()
) -> IndexReport:
    """Index a folder, recognising VOC scene trees (images/ + annotations/) automatically; ``skip``: see
    :func:`index_class_folders` (a VOC tree reads only its annotated images)."""
    if is_voc_root(path):
        return index_voc_scenes(path, source, min_face=min_face)
    return index_class_folders(path, source, skip)


def index_sources(paths: list[Path], *, min_face: int = DEFAULT_MIN_FACE) -> IndexReport:
    """Combine several sources into one index; each sample remembers its source name."""
    report = IndexReport()
    for path in paths:
        part = index_source(Path(path), min_face=min_face)
        log.info("%s: %s", path, part.summary())
        report.extend(part)
    return report
