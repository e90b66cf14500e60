"""Turn folders of images into labelled samples: class-folder trees and Pascal VOC scenes.

A sample is a file plus, for scene photos, the face box to crop from it. Problems (unknown
labels, non-image files, empty folders, tiny boxes) are collected as one-line messages rather
than raised, so one bad file never stops an index of thousands.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from maskwatch.imaging import is_image_path
from maskwatch.labels import UnknownLabelError, canonical_label

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


def index_class_folders(root: Path, source: str | None = None) -> IndexReport:
    """Index ``root/<label>/**/<image>``; folder names may be any alias of a canonical label."""
    root = Path(root)
    source = source or root.name
    report = IndexReport()
    if not root.is_dir():
        report.problems.append(f"{root}: not a folder")
        return report
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            label = canonical_label(folder.name)
        except UnknownLabelError as error:
            report.problems.append(f"{folder}: skipped folder, {error}")
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        images = [p for p in files if is_image_path(p)]
        for path in files:
            if not is_image_path(path):
                report.problems.append(f"{path}: skipped, not an image file name")
        if not images:
            report.problems.append(f"{folder}: empty class folder (no images)")
        report.samples.extend(Sample(path, label, source) for path in images)
    if not report.samples and not report.problems:
        report.problems.append(f"{root}: no class folders found")
    return report


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]


def _image_size(root: ET.Element) -> tuple[float, float] | None:
    """(width, height) from <size>, when present and positive (many VOC files carry 0 or nothing)."""
    try:
        width, height = float(root.findtext("size/width") or 0), float(root.findtext("size/height") or 0)
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 and math.isfinite(width * height) else None


def box_problem(box: tuple[float, ...], size: tuple[float, float] | None) -> str | None:
    """Why a VOC box cannot be used (NaN/inf, negative, inverted or empty, outside the image), or None."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        return f"box {list(box)} has a missing, NaN or infinite value"
    if min(box) < 0:
        return f"box {list(box)} has a negative coordinate"
    if x2 <= x1 or y2 <= y1:
        return f"box {list(box)} is inverted or empty (needs xmin < xmax, ymin < ymax)"
    if size is not None and (x2 > size[0] + 1 or y2 > size[1] + 1):
        return f"box {list(box)} reaches outside the {size[0]:g}x{size[1]:g} image"
    return None


def parse_voc(xml_path: Path, problems: list[str] | None = None) -> tuple[str, list[VocObject]]:
    """Read a Pascal VOC file: the image file name and its usable boxed objects (raises ValueError for a bad file).

    Objects whose box is unusable (see :func:`box_problem`) are left out with one line each in ``problems`` (logged
    when no list is given): a silently accepted NaN or inverted box would poison crops and AP alike.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as error:
        raise ValueError(f"{xml_path}: not a readable VOC XML file ({error})") from None
    filename = (root.findtext("filename") or "").strip()
    size = _image_size(root)
    objects = []
    for node in root.iter("object"):
        name = (node.findtext("name") or "").strip()
        bndbox = node.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{xml_path}: object {name!r} has no <bndbox>")
        try:
            box = tuple(float(bndbox.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise ValueError(f"{xml_path}: object {name!r} has a non-numeric box") from None
        problem = box_problem(box, size)
        if problem is not None:
            message = f"{xml_path}: skipped object {name!r}, {problem}"
            log.warning("%s", message) if problems is None else problems.append(message)
            continue
        objects.append(VocObject(name, box))  # type: ignore[arg-type]
    return filename, objects


def find_scene_image(images_dir: Path, xml_path: Path, filename: str) -> Path | None:
    """The image an annotation belongs to: same stem as the XML, else its <filename> stem."""
    for stem in (xml_path.stem, Path(filename).stem):
        for candidate in sorted(images_dir.glob(f"{stem}.*")):
            if is_image_path(candidate):
                return candidate
    return None


def index_voc_scenes(root: Path, source: str | None = None, *, min_face: int = DEFAULT_MIN_FACE) -> IndexReport:
    """Index every annotated face of ``root/images`` + ``root/annotations`` as a box sample."""
    root = Path(root)
    source = source or root.name
    images_dir, annotations_dir = root / "images", root / "annotations"
    report = IndexReport()
    if not annotations_dir.is_dir():
        report.problems.append(f"{annotations_dir}: no annotations folder")
        return report
    for xml_path in sorted(annotations_dir.glob("*.xml")):
        try:
            filename, objects = parse_voc(xml_path, report.problems)
        except ValueError as error:
            report.problems.append(str(error))
            continue
        image_path = find_scene_image(images_dir, xml_path, filename)
        if image_path is None:
            report.problems.append(f"{xml_path}: no image named {xml_path.stem}.* in {images_dir}")
            continue
        for obj in objects:
            try:
                label = canonical_label(obj.name)
            except UnknownLabelError as error:
                report.problems.append(f"{xml_path}: skipped object, {error}")
                continue
            x1, y1, x2, y2 = obj.box
            if min(x2 - x1, y2 - y1) < min_face:
                report.skipped_small += 1
                continue
            report.samples.append(Sample(image_path, label, source, obj.box))
    return report


def is_voc_root(path: Path) -> bool:
    return (Path(path) / "annotations").is_dir() and (Path(path) / "images").is_dir()


def index_source(path: Path, source: str | None = None, *, min_face: int = DEFAULT_MIN_FACE) -> IndexReport:
    """Index a folder, recognising VOC scene trees (images/ + annotations/) automatically."""
    if is_voc_root(path):
        return index_voc_scenes(path, source, min_face=min_face)
    return index_class_folders(path, source)


def index_sources(paths: list[Path], *, min_face: int = DEFAULT_MIN_FACE) -> IndexReport:
    """Combine several sources into one index; each sample remembers its source name."""
    report = IndexReport()
    for path in paths:
        part = index_source(Path(path), min_face=min_face)
        log.info("%s: %s", path, part.summary())
        report.extend(part)
    return report
