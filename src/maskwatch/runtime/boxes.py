"""Box post-processing for still images: a fitted box-shape correction, and fusing a mirrored pass with the plain one.

A detector and a data set can agree on where a face is and still disagree on its extent (forehead or chin in or
out); at IoU 0.5 that costs matches. :func:`fit_box_shape` measures the typical difference on matched training faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of [x1, y1, x2, y2] boxes; the tracker, the scene scorer
    and the flip fusion all match boxes with it, so it lives here rather than in any one of them."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass(frozen=True)
class BoxShape:
    """Annotated box from detected box: centre shifted by (dx, dy) detected widths/heights, sides scaled."""

    width_scale: float = 1.0
    height_scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 + self.dx * width
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 + self.dy * height
        half_w, half_h = width * self.width_scale / 2, height * self.height_scale / 2
        return np.column_stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h]).astype(np.float32)

    def __str__(self) -> str:
        return (
            f"width x{self.width_scale:.3f}, height x{self.height_scale:.3f}, "
            f"centre {self.dx:+.3f} widths, {self.dy:+.3f} heights"
        )


#: CenterFace's boxes to the extent people annotate faces, fitted (medians) on the 3532 faces of the train-split photos
#: of both shared scene sets (Kaggle scenes and scenes-ilc) that CenterFace at 960 px found at IoU >= 0.3
#: (``python benchmarks/detector_boxes.py ../shared/data/scenes ../shared/data/scenes-ilc --splits
#: recipes/default_splits.csv.gz``): a little wider, a little shorter, centred lower (more chin, less forehead). The
#: two sets' annotators differ (fitted alone, the Kaggle scenes want the centre 0.123 heights lower, scenes-ilc 0.045);
#: one correction fitted on both is what a photo of unknown origin gets.
CENTERFACE_TO_ANNOTATED = BoxShape(width_scale=1.032, height_scale=0.971, dx=0.011, dy=0.072)


def fit_box_shape(annotated: np.ndarray, detected: np.ndarray) -> BoxShape:
    """Median ratios and offsets over matched (annotated, detected) pairs: robust to the odd wrong match."""
    if len(annotated) == 0:
        return BoxShape()
    aw, ah = annotated[:, 2] - annotated[:, 0], annotated[:, 3] - annotated[:, 1]
    dw, dh = detected[:, 2] - detected[:, 0], detected[:, 3] - detected[:, 1]
    dx = ((annotated[:, 0] + annotated[:, 2]) - (detected[:, 0] + detected[:, 2])) / 2 / dw
    dy = ((annotated[:, 1] + annotated[:, 3]) - (detected[:, 1] + detected[:, 3])) / 2 / dh
    return BoxShape(float(np.median(aw / dw)), float(np.median(ah / dh)), float(np.median(dx)), float(np.median(dy)))


def fuse_passes(passes: list[tuple[np.ndarray, np.ndarray]], iou: float = 0.55) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted box fusion of several detector passes over one image ((boxes, scores) each, in image pixels): boxes
    that overlap by ``iou`` are averaged, weighted by score, a face taking at most as many boxes as there are passes
    (within a pass, non-maximum suppression already keeps overlapping boxes apart). A fused box
    scores as its best sighting, so ``--min-face-score`` means what it means for one pass (the mean over the passes
    ranks as well, but it scales down a face seen once, which then falls under that threshold). Also returns, per
    fused box, the index (into the passes' rows, in order) of that best-scored member, whose landmarks it keeps."""
    boxes = np.concatenate([p[0] for p in passes]).astype(np.float64).reshape(-1, 4)
    scores = np.concatenate([p[1] for p in passes]).astype(np.float64)
    most = len(passes)
    order = np.argsort(-scores, kind="stable")
    clusters: list[list[int]] = []
    fused: list[np.ndarray] = []
    for i in order:
        if fused:
            overlap = iou_matrix(boxes[i][None], np.array(fused))[0]
            overlap[[len(c) >= most for c in clusters]] = -1.0  # a face every pass has seen takes no more boxes
            best = int(overlap.argmax())
            if overlap[best] >= iou:
                clusters[best].append(i)
                weights = scores[clusters[best]]
                fused[best] = (boxes[clusters[best]] * weights[:, None]).sum(0) / weights.sum()
                continue
        clusters.append([i])
        fused.append(boxes[i])
    leaders = np.array([c[0] for c in clusters], np.int64)
    fused_scores = scores[leaders].astype(np.float32)
    return np.array(fused, np.float32).reshape(-1, 4), fused_scores, leaders
