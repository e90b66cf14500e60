"""Focus-score reports over many faces: per class and per source, with a gallery of the lowest."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.data.index import Sample
from maskwatch.data.loading import load_samples
from maskwatch.explain.focus import focus_score, locate_lower_face, region_mask
from maskwatch.explain.gradcam import Explainer, overlay
from maskwatch.gallery import save_grid
from maskwatch.progress import track
from maskwatch.runtime.detectors import FaceDetector

log = logging.getLogger(__name__)

#: Label of faces found in a plain SOURCE (no ground truth): pictures show the prediction only.
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class FocusRecord:
    file: str
    source: str
    label: str
    predicted: str
    probability: float
    focus: float
    used_landmarks: bool


def focus_report(
    samples: Sequence[Sample],
    explainer: Explainer,
    meta: dict,
    *,
    detector: FaceDetector | None,
    target: str | None = None,
    batch_size: int = 32,
) -> tuple[list[FocusRecord], dict]:
    """Grad-CAM + focus for every sample; returns records and the pictures' raw material."""
    size, margin = meta["input_size"], meta["margin"]
    loaded = load_samples(samples, size=size, margin=margin, whole_image=meta.get("whole_image", "stretch"))
    for problem in loaded.problems:
        log.warning("%s", problem)
    records: list[FocusRecord] = []
    keep: dict = {"crops": [], "cams": [], "regions": []}
    starts = range(0, len(loaded.samples), batch_size)
    for start in track(starts, description="grad-cam", total=len(starts)):
        crops = loaded.crops[start : start + batch_size]
        cams, probs = explainer(list(crops), target)
        for offset, (crop, cam, prob) in enumerate(zip(crops, cams, probs)):
            sample = loaded.samples[start + offset]
            region, used_landmarks = locate_lower_face(detector, crop, margin=margin if sample.box is not None else None)
            predicted = int(prob.argmax())
            records.append(
                FocusRecord(
                    str(sample.path) + (f"#{','.join(str(int(v)) for v in sample.box)}" if sample.box else ""),
                    sample.source,
                    sample.label,
                    explainer.labels[predicted],
                    float(prob[predicted]),
                    focus_score(cam, region),
                    used_landmarks,
                )
            )
            keep["crops"].append(crop)
            keep["cams"].append(cam)
            keep["regions"].append(region)
    return records, keep


#: Fill for hidden regions: ImageNet's mean colour, a flat patch with no texture of its own.
OCCLUDER_RGB = (124, 116, 104)


def upper_face_region(lower: np.ndarray) -> np.ndarray:
    """The same-sized rectangle right above the lower face (eyes, brows): the control for the occlusion check."""
    x1, y1, x2, y2 = (float(v) for v in lower)
    return np.array([x1, max(0.0, 2 * y1 - y2), x2, y1], np.float32)


def hide(crop: np.ndarray, region: np.ndarray) -> np.ndarray:
    covered = crop.copy()
    covered[region_mask(region, crop.shape[0]).astype(bool)] = OCCLUDER_RGB
    return covered


def occlusion_check(explainer: Explainer, pictures: dict, records: Sequence[FocusRecord], batch_size: int = 64) -> dict:
    """How often the prediction changes when the lower face, or the same area above it, is hidden - a check that
    does not rely on Grad-CAM. A model that reads the mouth and nose changes its mind far more often for the first.
    """
    crops, regions = pictures["crops"], pictures["regions"]

    def predictions(images: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(
            [explainer.predict(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
        )

    clean = np.array([explainer.labels.index(r.predicted) for r in records])
    lower = predictions([hide(c, r) for c, r in zip(crops, regions)])
    upper = predictions([hide(c, upper_face_region(r)) for c, r in zip(crops, regions)])
    result: dict = {}
    for label in sorted({r.label for r in records}):
        keep = np.array([r.label == label for r in records])
        result[label] = {
            "n": int(keep.sum()),
            "changed_lower_hidden": float(np.mean(lower[keep] != clean[keep])),
            "changed_upper_hidden": float(np.mean(upper[keep] != clean[keep])),
        }
    return result


def summarise(records: Sequence[FocusRecord]) -> dict:
    """The JSON the maintainers read: per class, per source x class, and every face."""

    def stats(values: list[float]) -> dict:
        return {
            "n": len(values),
            "median_focus": float(np.median(values)) if values else None,
            "mean_focus": float(np.mean(values)) if values else None,
        }

    by_class, by_source = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for record in records:
        by_class[record.label].append(record.focus)
        by_source[record.source][record.label].append(record.focus)
    return {
        "per_class": {label: stats(v) for label, v in sorted(by_class.items())},
        "per_source": {s: {label: stats(v) for label, v in sorted(d.items())} for s, d in sorted(by_source.items())},
        "landmarks_found": float(np.mean([r.used_landmarks for r in records])) if records else 0.0,
        "faces": [
            {
                "file": r.file,
                "source": r.source,
                "label": r.label,
                "predicted": r.predicted,
                "probability": round(r.probability, 4),
                "focus": round(r.focus, 4),
            }
            for r in records
        ],
    }


def save_gallery(records: Sequence[FocusRecord], pictures: dict, path: Path, *, lowest: int = 32) -> None:
    order = np.argsort([r.focus for r in records])[:lowest]
    tiles = [overlay(pictures["crops"][i], pictures["cams"][i]) for i in order]
    captions = [f"{records[i].label[:12]}->{records[i].predicted[:12]}\nfocus {records[i].focus:.2f}" for i in order]
    save_grid(tiles, captions, str(path), regions=[pictures["regions"][i] for i in order])


def save_examples(records: Sequence[FocusRecord], pictures: dict, path: Path, *, per_kind: int = 16) -> None:
    """Grid of correct and wrong predictions (up to ``per_kind`` of each)."""
    right = [i for i, r in enumerate(records) if r.label in (r.predicted, UNLABELLED)][:per_kind]
    wrong = [i for i, r in enumerate(records) if r.label not in (r.predicted, UNLABELLED)][:per_kind]
    chosen = right + wrong
    tiles = [overlay(pictures["crops"][i], pictures["cams"][i]) for i in chosen]

    def verdict(record: FocusRecord) -> str:
        if record.label == UNLABELLED:
            return ""
        return "OK " if record.label == record.predicted else "WRONG "

    captions = [
        f"{verdict(records[i])}{records[i].predicted[:12]}\n{records[i].probability:.0%} focus {records[i].focus:.2f}"
        for i in chosen
    ]
    save_grid(tiles, captions, str(path), regions=[pictures["regions"][i] for i in chosen])


def training_gradcam_grid(explainer: Explainer, crops: np.ndarray, truth: np.ndarray, path: Path, per_kind: int = 16) -> None:
    """Grad-CAM grid of up to ``per_kind`` correct and ``per_kind`` wrong test predictions, for the training report."""
    if len(crops) == 0:
        return
    predicted = np.concatenate([explainer.predict(list(crops[i : i + 64])).argmax(1) for i in range(0, len(crops), 64)])
    right = np.nonzero(predicted == truth)[0][:per_kind]
    wrong = np.nonzero(predicted != truth)[0][:per_kind]
    chosen = np.concatenate([right, wrong]).astype(int)
    cams, probs = explainer(list(crops[chosen]))
    tiles = [overlay(crops[i], cam) for i, cam in zip(chosen, cams)]
    labels = explainer.labels
    captions = [
        f"{'OK' if predicted[i] == truth[i] else 'WRONG'} {labels[predicted[i]][:12]}\ntrue {labels[truth[i]][:12]} {p.max():.0%}"
        for i, p in zip(chosen, probs)
    ]
    save_grid(tiles, captions, str(path))
