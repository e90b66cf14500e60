"""Scene-level scoring: Pascal VOC boxes, IoU 0.5, all-point interpolated AP.

Reports AP per class, 3-class mAP, class-agnostic face AP and recall, and the 2-class compliance
mAP (compliant = with_mask; non-compliant = without_mask + mask_incorrect). Detections are the
same records ``maskwatch detect --json`` writes, so this is the scorer of that JSON.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from maskwatch.fileio import save_figure
from maskwatch.labels import LABELS, is_compliant
from maskwatch.runtime.boxes import iou_matrix

COMPLIANCE = ("compliant", "non_compliant")


@dataclass(frozen=True)
class Detection:
    image: str
    box: np.ndarray
    confidence: float


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ 'all points')."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def average_precision(
    detections: Sequence[Detection], truths: dict[str, np.ndarray], iou_threshold: float = 0.5
) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of ``detections`` against ground-truth boxes per image; returns (ap, recall, precision)."""
    n_truth = sum(len(b) for b in truths.values())
    if n_truth == 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    order = sorted(range(len(detections)), key=lambda i: -detections[i].confidence)
    matched = {image: np.zeros(len(boxes), bool) for image, boxes in truths.items()}
    tp = np.zeros(len(order))
    for rank, i in enumerate(order):
        det = detections[i]
        gt = truths.get(det.image, np.zeros((0, 4)))
        if len(gt):
            ious = iou_matrix(det.box[None], gt)[0]
            best = int(ious.argmax())
            if ious[best] >= iou_threshold and not matched[det.image][best]:
                matched[det.image][best] = True
                tp[rank] = 1
    cum_tp = np.cumsum(tp)
    recall = cum_tp / n_truth
    precision = cum_tp / np.arange(1, len(order) + 1)
    return voc_ap(recall, precision), recall, precision


def score_scenes(
    ground_truth: dict[str, list[tuple[str, np.ndarray]]], predictions: dict[str, list[dict]], iou_threshold: float = 0.5
) -> dict:
    """``ground_truth``: image -> [(label, box)]; ``predictions``: image -> face records of the JSON."""
    groups: dict[str, Callable[[str], str]] = {
        "class": lambda label: label,
        "face": lambda label: "face",
        "compliance": lambda label: "compliant" if is_compliant(label) else "non_compliant",
    }
    report: dict = {"iou_threshold": iou_threshold, "images": len(ground_truth)}
    curves: dict = {}
    for group, key_of in groups.items():
        truths: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for image, objects in ground_truth.items():
            for label, box in objects:
                truths[key_of(label)][image].append(box)
        dets: dict[str, list[Detection]] = defaultdict(list)
        for image, faces in predictions.items():
            for face in faces:
                key = key_of(face["label"])
                # Single-stage peers give one confidence (``score``) and no face_score: rank by it alone.
                face_score = face.get("face_score")
                if group == "face":
                    confidence = face["score"] if face_score is None else face_score
                elif group == "compliance":
                    probs = face.get("probs") or {face["label"]: face["score"]}
                    share = sum(p for label, p in probs.items() if key_of(label) == key)
                    confidence = share if face_score is None else face_score * share
                else:
                    confidence = face["score"] if face_score is None else face_score * face["score"]
                dets[key].append(Detection(image, np.asarray(face["box"], np.float64), confidence))
        keys = {"class": LABELS, "face": ("face",), "compliance": COMPLIANCE}[group]
        results = {}
        for key in keys:
            per_image = {image: np.asarray(truths[key].get(image, []), np.float64).reshape(-1, 4) for image in ground_truth}
            ap, recall, precision = average_precision(dets[key], per_image, iou_threshold)
            results[key] = {
                "ap": ap,
                "recall": float(recall[-1]) if len(recall) else 0.0,
                "n_truth": int(sum(len(b) for b in per_image.values())),
                "n_detections": len(dets[key]),
            }
            curves[key] = (recall, precision)
        report[group] = results
    valid = [report["class"][k]["ap"] for k in LABELS if not np.isnan(report["class"][k]["ap"])]
    report["map_3class"] = float(np.mean(valid)) if valid else float("nan")
    report["map_compliance"] = float(np.nanmean([report["compliance"][k]["ap"] for k in COMPLIANCE]))
    report["face_ap"] = report["face"]["face"]["ap"]
    report["face_recall"] = report["face"]["face"]["recall"]
    report["_curves"] = curves
    return report


def plot_pr_curves(curves: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=110)
    for key, (recall, precision) in curves.items():
        if len(recall):
            ax.plot(recall, precision, label=key)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("precision-recall @ IoU 0.5")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
