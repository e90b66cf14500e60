"""Load annotated scenes and run (or read) predictions for :mod:`maskwatch.runtime.scene_eval`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.labels import UnknownLabelError, canonical_label
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


def pooled_ground_truth(roots: list[Path], manifest: Path, split: str) -> GroundTruth:
    """'k:stem' -> (image path, faces) over several scene folders (images/ + annotations/), only the photos of
    ``split`` ("all": every photo), so that the benchmarks can choose one setting on one pooled figure."""
    pooled: GroundTruth = {}
    for k, root in enumerate(roots):
        truth, _ = load_ground_truth(root / "images", root / "annotations")
        if split != "all":
            truth = keep_split(truth, manifest, split)
        pooled.update({f"{k}:{stem}": item for stem, item in truth.items()})
    return pooled


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


def read_predictions(path: Path, truth: GroundTruth) -> tuple[dict[str, list[dict]], list[str]]:
    """Read `maskwatch detect --json` lines (or a peer's in the same shape), keyed by image stem.

    Returns the faces and one message per line or face that was skipped (cut-off line, not JSON, no ``source``, a
    face without a usable ``label``, ``score`` or ``box``). ``face_score`` is optional: single-stage peers give one
    confidence, and are ranked by ``score``. Raises OSError when the file cannot be read.
    """
    found: dict[str, list[dict]] = {stem: [] for stem in truth}
    problems: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: skipped, not a JSON line ({error.msg}; cut off?)")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("source"), str):
                problems.append(f"{path}:{number}: skipped, a record without a 'source' string")
                continue
            stem = Path(record["source"]).stem
            faces = record.get("faces") or []
            if not isinstance(faces, list):
                problems.append(f"{path}:{number}: skipped, 'faces' is not a list")
                continue
            for k, face in enumerate(faces):
                try:
                    checked = check_face_record(face)
                except ValueError as error:
                    problems.append(f"{path}:{number}: face {k} skipped, {error}")
                    continue
                if stem in found:
                    found[stem].append(checked)
    return found, problems


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"{what} is not a finite number ({value!r})")
    return float(value)


def check_face_record(face: object) -> dict:
    """A face record with a canonical label, a finite 4-number box and a score in [0, 1] (raises ValueError)."""
    if not isinstance(face, dict):
        raise ValueError("not an object")
    if "label" not in face:
        raise ValueError("no 'label'")
    try:
        label = canonical_label(str(face["label"]))
    except UnknownLabelError as error:
        raise ValueError(str(error)) from None
    box = face.get("box")
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise ValueError(f"'box' must be [x1, y1, x2, y2], got {box!r}"[:160])
    box = [_number(v, "a box value") for v in box]
    if "score" not in face:
        raise ValueError("no 'score'")
    score = _number(face["score"], "'score'")
    if not 0 <= score <= 1:
        raise ValueError(f"'score' {score} is outside [0, 1]")
    checked: dict = {"box": box, "label": label, "score": score}
    if face.get("face_score") is not None:
        checked["face_score"] = _number(face["face_score"], "'face_score'")
    probs = face.get("probs")
    if isinstance(probs, dict):
        try:
            checked["probs"] = {canonical_label(str(k)): _number(v, "a probability") for k, v in probs.items()}
        except (UnknownLabelError, ValueError) as error:
            raise ValueError(f"'probs': {error}") from None
    return checked
