"""Load annotated scenes and run (or read) predictions for :mod:`maskwatch.runtime.scene_eval`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.progress import track
from maskwatch.runtime.pipeline import MaskPipeline
from maskwatch.voc import read_voc_folder

log = logging.getLogger(__name__)

GroundTruth = dict[str, tuple[Path, list[tuple[str, np.ndarray]]]]


def load_ground_truth(images_dir: Path, annotations_dir: Path) -> tuple[GroundTruth, list[str]]:
    """image stem -> (image path, [(label, box)]); every annotated face counts, however small."""
    folder = read_voc_folder(images_dir, annotations_dir)
    truth: GroundTruth = {
        scene.image_path.stem: (scene.image_path, [(label, np.asarray(box, np.float64)) for label, box in scene.faces])
        for scene in folder.scenes
    }
    return truth, folder.problems


def keep_split(truth: GroundTruth, manifest: Path, split: str) -> GroundTruth:
    """Only the photos whose faces the manifest puts in ``split`` (all faces of a photo share one split)."""
    from maskwatch.data.splits import read_manifest

    in_split = {Path(row.sample.path).resolve() for row in read_manifest(manifest) if row.split == split and row.sample.box}
    kept = {stem: item for stem, item in truth.items() if Path(item[0]).resolve() in in_split}
    log.info("%d of %d annotated photos are in the %s split of %s", len(kept), len(truth), split, manifest)
    return kept


def predict_scenes(truth: GroundTruth, pipeline: MaskPipeline) -> dict[str, list[dict]]:
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
