"""Pascal VOC annotations, read once for everyone: training's scene index and the runtime's scene scoring.

Torch-free and outside ``maskwatch.data`` (the training-only package), so ``evaluate-scenes`` needs no training
install. Problems (broken XML, a missing image, an unknown label) are collected as one-line messages, never raised
out of :func:`read_voc_folder`, so one bad file never stops a folder of hundreds.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from maskwatch.imaging import is_image_path
from maskwatch.labels import UnknownLabelError, canonical_label

Box = tuple[float, float, float, float]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocObject:
    name: str
    box: Box


@dataclass(frozen=True)
class VocScene:
    """One annotated image: its file and its faces as (canonical label, box) in image pixels."""

    xml_path: Path
    image_path: Path
    faces: tuple[tuple[str, Box], ...]


@dataclass
class VocFolder:
    scenes: list[VocScene] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


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


#: Image suffixes added later, tried last when one stem has several image files (x.jpg beside x.jfif), so that an
#: annotation keeps the image it had before they were read.
LATE_SUFFIXES = (".jfif", ".jpe")


def find_scene_image(images_dir: Path, xml_path: Path, filename: str) -> Path | None:
    """The image an annotation belongs to: same stem as the XML, else its <filename> stem."""
    for stem in (xml_path.stem, Path(filename).stem):
        found = sorted(images_dir.glob(f"{stem}.*"), key=lambda path: (path.suffix.lower() in LATE_SUFFIXES, path.name))
        for candidate in found:
            if is_image_path(candidate):
                return candidate
    return None


def read_voc_folder(images_dir: Path, annotations_dir: Path) -> VocFolder:
    """Every ``annotations_dir/*.xml`` with its image and canonical labels; what cannot be used is a problem line."""
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    folder = VocFolder()
    if not annotations_dir.is_dir():
        folder.problems.append(f"{annotations_dir}: no annotations folder")
        return folder
    for xml_path in sorted(annotations_dir.glob("*.xml")):
        try:
            filename, objects = parse_voc(xml_path, folder.problems)
        except ValueError as error:
            folder.problems.append(str(error))
            continue
        image_path = find_scene_image(images_dir, xml_path, filename)
        if image_path is None:
            folder.problems.append(f"{xml_path}: no image named {xml_path.stem}.* in {images_dir}")
            continue
        faces = []
        for obj in objects:
            try:
                faces.append((canonical_label(obj.name), obj.box))
            except UnknownLabelError as error:
                folder.problems.append(f"{xml_path}: skipped object, {error}")
        folder.scenes.append(VocScene(xml_path, image_path, tuple(faces)))
    return folder
