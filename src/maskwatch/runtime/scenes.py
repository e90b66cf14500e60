"""Load annotated scenes and run (or read) predictions for :mod:`maskwatch.runtime.scene_eval`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from maskwatch.data.index import find_scene_image, parse_voc
from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.labels import UnknownLabelError, canonical_label
from maskwatch.progress import track
from maskwatch.runtime.pipeline import MaskDetector

log = logging.getLogger(__name__)

GroundTruth = dict[str, tuple[Path, list[tuple[str, np.ndarray]]]]


def load_ground_truth(images_dir: Path, annotations_dir: Path) -> tuple[GroundTruth, list[str]]:
    """image stem -> (image path, [(label, box)]); every annotated face counts, however small."""
    truth: GroundTruth = {}
    problems: list[str] = []
    for xml_path in sorted(Path(annotations_dir).glob("*.xml")):
        try:
            filename, objects = parse_voc(xml_path)
        except ValueError as error:
            problems.append(str(error))
            continue
        image = find_scene_image(Path(images_dir), xml_path, filename)
        if image is None:
            problems.append(f"{xml_path}: no matching image in {images_dir}")
            continue
        boxes = []
        for obj in objects:
            try:
                boxes.append((canonical_label(obj.name), np.asarray(obj.box, np.float64)))
            except UnknownLabelError as error:
                problems.append(f"{xml_path}: {error}")
        truth[image.stem] = (image, boxes)
    return truth, problems


def keep_split(truth: GroundTruth, manifest: Path, split: str) -> GroundTruth:
    """Only the photos whose faces the manifest puts in ``split`` (all faces of a photo share one split)."""
    from maskwatch.data.splits import read_manifest

    in_split = {Path(row.sample.path).resolve() for row in read_manifest(manifest) if row.split == split and row.sample.box}
    kept = {stem: item for stem, item in truth.items() if Path(item[0]).resolve() in in_split}
    log.info("%d of %d annotated photos are in the %s split of %s", len(kept), len(truth), split, manifest)
    return kept


def predict_scenes(truth: GroundTruth, pipeline: MaskDetector) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for stem, (path, _) in track(truth.items(), description="scenes", total=len(truth)):
        try:
            result = pipeline(load_rgb(path), source=str(path))
        except ImageLoadError as error:
            log.error("%s", error)
            found[stem] = []
            continue
        found[stem] = [face.to_json() for face in result.faces]
    return found


def read_predictions(path: Path, truth: GroundTruth) -> dict[str, list[dict]]:
    """Read `maskwatch detect --json` lines, keyed by image stem to match the annotations."""
    found: dict[str, list[dict]] = {stem: [] for stem in truth}
    with open(path) as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                stem = Path(record["source"]).stem
                if stem in found:
                    found[stem].extend(record.get("faces", []))
    return found
