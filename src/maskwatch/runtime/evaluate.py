"""``maskwatch evaluate``: score a classifier on a class-folder tree of face crops (no torch for ONNX)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from maskwatch.data.index import index_class_folders
from maskwatch.fileio import write_json
from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.metrics import classification_report, plot_confusion_matrix
from maskwatch.runtime.classifier import OnnxMaskClassifier

log = logging.getLogger(__name__)


def evaluate_folder(data_dir: Path, classifier: OnnxMaskClassifier, *, batch_size: int = 64) -> tuple[dict, list[str]]:
    """Classify every image under ``data_dir/<label>/`` and report; unreadable files are listed."""
    report = index_class_folders(Path(data_dir))
    problems = list(report.problems)
    labels = list(classifier.labels)
    unknown = sorted({s.label for s in report.samples} - set(labels))
    if unknown:
        problems.append(f"{data_dir}: classes {unknown} are not among the model's labels {labels}; skipped")
    samples = [s for s in report.samples if s.label in labels]
    y_true, y_pred = [], []
    for start in range(0, len(samples), batch_size):
        crops, truths = [], []
        for sample in samples[start : start + batch_size]:
            try:
                crops.append(load_rgb(sample.path))
                truths.append(labels.index(sample.label))
            except ImageLoadError as error:
                problems.append(str(error))
        if crops:
            y_pred.extend(classifier.predict_proba(crops).argmax(1).tolist())
            y_true.extend(truths)
    result = classification_report(np.array(y_true), np.array(y_pred), labels)
    result["skipped"] = len(problems)
    return result, problems


def write_evaluation(result: dict, json_path: Path | None, picture_dir: Path) -> list[Path]:
    """Write the JSON report and the confusion-matrix PNG; return the files written."""
    written = []
    if json_path is not None:
        written.append(write_json(json_path, result))
    png = picture_dir / "confusion_matrix.png"
    plot_confusion_matrix(
        result["confusion_matrix"], result["labels"], str(png), f"n={result['n']}  accuracy {result['accuracy']:.4f}"
    )
    written.append(png)
    return written
