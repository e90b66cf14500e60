"""Box post-processing for still images: a fitted box-shape correction, and fusing a mirrored pass with the plain one.

A detector and a data set can agree on where a face is and still disagree on its extent (forehead or chin in or
out); at IoU 0.5 that costs matches. :func:`fit_box_shape` measures the typical difference on matched training faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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


def best_matches(annotated: np.ndarray, detected: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(annotated, detected) index pairs: each annotated box with the detected box it overlaps most, if by ``min_iou``
    (the pairs the box-shape fits learn from)."""
    if len(annotated) == 0 or len(detected) == 0:
        return []
    iou = iou_matrix(np.asarray(annotated, np.float64), np.asarray(detected, np.float64))
    return [(g, int(d)) for g, d in enumerate(iou.argmax(1)) if iou[g, d] >= min_iou]


@dataclass(frozen=True)
class BoxShape:
    """Annotated box from detected box: centre shifted by (dx, dy) detected widths/heights, sides scaled."""

    width_scale: float = 1.0
    height_scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        return moved_boxes(boxes, self.dx, self.dy, self.width_scale, self.height_scale)

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
    dx, dy, log_w, log_h = box_shape_targets(annotated, detected).T
    return BoxShape(float(np.median(np.exp(log_w))), float(np.median(np.exp(log_h))), float(np.median(dx)), float(np.median(dy)))


def box_shape_targets(annotated: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(N, 4): the centre shift in detected widths / heights and the log side ratios that turn detected into annotated."""
    annotated, detected = np.asarray(annotated, np.float64), np.asarray(detected, np.float64)
    aw, ah = annotated[:, 2] - annotated[:, 0], annotated[:, 3] - annotated[:, 1]
    dw, dh = detected[:, 2] - detected[:, 0], detected[:, 3] - detected[:, 1]
    dx = ((annotated[:, 0] + annotated[:, 2]) - (detected[:, 0] + detected[:, 2])) / 2 / dw
    dy = ((annotated[:, 1] + annotated[:, 3]) - (detected[:, 1] + detected[:, 3])) / 2 / dh
    return np.column_stack([dx, dy, np.log(aw / dw), np.log(ah / dh)])


def moved_boxes(
    boxes: np.ndarray,
    dx: float | np.ndarray,
    dy: float | np.ndarray,
    width_scale: float | np.ndarray,
    height_scale: float | np.ndarray,
) -> np.ndarray:
    """``boxes`` with centres shifted by (dx, dy) of their width / height and sides scaled (scalars or one per box)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + dx * width
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + dy * height
    half_w, half_h = width * width_scale / 2, height * height_scale / 2
    return np.column_stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h]).astype(np.float32)


#: Boxes of different passes that overlap at least this much are one face (:func:`fuse_passes`).
FUSION_IOU = 0.55


def fuse_passes(
    passes: list[tuple[np.ndarray, np.ndarray]], iou: float = FUSION_IOU
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


#: Landmark order of a face seen in a mirror: CenterFace gives the two eyes, the nose and the two mouth corners, left
#: and right as they appear in the image, so mirroring swaps each pair.
MIRRORED_LANDMARKS = [1, 0, 2, 4, 3]

#: Features of :func:`landmark_features`: five (x, y) landmarks and the log aspect ratio.
LANDMARK_FEATURES = 11

#: How far a landmark map may move a box: centre shifts in box widths / heights and log side ratios beyond these are
#: clipped (the fitted map stays well inside them on every detection of the shared photos: width ratios 0.80-1.23), so
#: a degenerate box or stray landmark cannot blow a box up to the whole image.
MAX_SHIFT, MAX_LOG_RATIO = 0.5, float(np.log(2.0))


def landmark_features(boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Per box: its five landmarks in box units (centre 0, sides +-0.5) and its log aspect ratio: where the eyes,
    nose and mouth sit inside the box says how the face is turned and tilted."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    width = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    marks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    x = (marks[:, :, 0] - cx[:, None]) / width[:, None]
    y = (marks[:, :, 1] - cy[:, None]) / height[:, None]
    return np.column_stack([x, y, np.log(width / height)])


@dataclass(frozen=True)
class LandmarkBoxShape:
    """Annotated box from detected box and landmarks: a linear map from :func:`landmark_features` to the centre shift
    (detected widths / heights) and the log side ratios, clipped to :data:`MAX_SHIFT` / :data:`MAX_LOG_RATIO`; boxes
    without landmarks, or whose landmarks or box give no finite answer, get ``fallback``."""

    coef: tuple[tuple[float, float, float, float], ...]  # one row per feature: dx, dy, log width, log height ratio
    intercept: tuple[float, float, float, float]
    fallback: BoxShape

    @classmethod
    def from_box_shape(cls, shape: BoxShape) -> LandmarkBoxShape:
        """The fixed correction as a map that ignores the landmarks (same boxes as ``shape.apply``)."""
        intercept = (shape.dx, shape.dy, float(np.log(shape.width_scale)), float(np.log(shape.height_scale)))
        return cls(((0.0, 0.0, 0.0, 0.0),) * LANDMARK_FEATURES, intercept, shape)

    @cached_property
    def _coef(self) -> np.ndarray:
        return np.array(self.coef, np.float64).reshape(LANDMARK_FEATURES, 4)

    @property
    def uses_landmarks(self) -> bool:
        return bool(np.any(self._coef))

    def apply(self, boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if landmarks is None or not self.uses_landmarks:
            return self.fallback.apply(boxes)
        with np.errstate(all="ignore"):  # a degenerate box or stray landmark: its row falls back below
            moves = landmark_features(boxes, landmarks) @ self._coef + np.array(self.intercept)
        limit = np.array([MAX_SHIFT, MAX_SHIFT, MAX_LOG_RATIO, MAX_LOG_RATIO])
        moves = np.clip(moves, -limit, limit)
        fallback = self.fallback
        fixed = [fallback.dx, fallback.dy, np.log(fallback.width_scale), np.log(fallback.height_scale)]
        moves[~np.isfinite(moves).all(1)] = fixed
        dx, dy, log_w, log_h = moves.T
        return moved_boxes(boxes, dx, dy, np.exp(log_w), np.exp(log_h))


#: CenterFace's boxes to the annotated face extent, read from its five landmarks (:func:`fit_landmark_box_shape`): fitted
#: on the 3588 train-split faces of both shared scene sets that the photo default (960 px, mirrored and 640 px passes
#: fused) found at IoU >= 0.3, and on their mirror images (``python benchmarks/landmark_boxes.py ../shared/data/scenes
#: ../shared/data/scenes-ilc --splits recipes/default_splits.csv.gz --print-constant``). The eye distance sets the
#: width, the eye and mouth heights the chin; val-split face AP rose from 0.882 to 0.903 (Kaggle scenes) and from 0.822
#: to 0.829 (scenes-ilc) against the fixed correction, which stays for detections without landmarks, faces cut by the
#: image edge and the classifier's crops (``pipeline.box_shape_for`` and ``pipeline.reshaped``).
CENTERFACE_TO_ANNOTATED_BY_LANDMARKS = LandmarkBoxShape(
    coef=(
        (0.15895, -0.43978, -1.95716, -1.40395),
        (0.15895, 0.43978, 1.95716, 1.40395),
        (-0.39173, 0.00000, 0.00000, 0.00000),
        (0.22358, 0.53776, 2.29677, 1.66234),
        (0.22358, -0.53776, -2.29677, -1.66234),
        (0.99469, 0.31354, -0.20094, 0.07229),
        (-0.99469, 0.31354, -0.20094, 0.07229),
        (0.00000, -0.86852, 0.08364, -0.46394),
        (-1.18383, 0.32636, 0.12469, 0.11597),
        (1.18383, 0.32636, 0.12469, 0.11597),
        (0.00000, 0.01137, -0.04556, 0.04344),
    ),
    intercept=(0.00000, 0.05571, -0.15198, -0.05811),
    fallback=CENTERFACE_TO_ANNOTATED,
)


def mirrored_x(boxes: np.ndarray) -> np.ndarray:
    """[x1, y1, x2, y2] boxes seen in a mirror at x = 0."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.column_stack([-boxes[:, 2], boxes[:, 1], -boxes[:, 0], boxes[:, 3]])


def mirrored_pairs(annotated: np.ndarray, detected: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, ...]:
    """The pairs as seen in a mirror at x = 0 (left and right landmarks swapped): the fit learns from both, so a
    mirrored face gets the mirrored correction."""
    marks = np.asarray(landmarks, np.float64)[:, MIRRORED_LANDMARKS].copy()
    marks[:, :, 0] *= -1
    return mirrored_x(annotated), mirrored_x(detected), marks


def fit_landmark_box_shape(
    annotated: np.ndarray, detected: np.ndarray, landmarks: np.ndarray, ridge: float = 1.0, rounds: int = 3
) -> LandmarkBoxShape:
    """Ridge regression of :func:`box_shape_targets` on standardised :func:`landmark_features` of the pairs and their
    mirror images: one plain fit, then ``rounds - 1`` refits with Huber weights from the previous fit's residuals, so
    that the odd wrong match (IoU 0.3 pairs include some) does not pull it; returned in raw feature units. Pairs with
    no finite features or targets are left out; with none left, the identity."""
    if rounds < 1:
        raise ValueError(f"rounds {rounds}: at least one fit is needed")
    annotated, detected = np.asarray(annotated, np.float64).reshape(-1, 4), np.asarray(detected, np.float64).reshape(-1, 4)
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    with np.errstate(all="ignore"):
        usable = np.isfinite(landmark_features(detected, landmarks)).all(1)
        usable &= np.isfinite(box_shape_targets(annotated, detected)).all(1)
    if not usable.any():
        return LandmarkBoxShape.from_box_shape(BoxShape())
    annotated, detected, landmarks = annotated[usable], detected[usable], landmarks[usable]
    fallback = fit_box_shape(annotated, detected)
    mirrored = mirrored_pairs(annotated, detected, landmarks)
    annotated, detected, landmarks = (np.concatenate([a, m]) for a, m in zip((annotated, detected, landmarks), mirrored))
    features = landmark_features(detected, landmarks)
    targets = box_shape_targets(annotated, detected)
    mean, scale = features.mean(0), features.std(0) + 1e-9
    z = np.column_stack([(features - mean) / scale, np.ones(len(features))])
    penalty = ridge * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    weights = np.ones(len(z))
    for _ in range(rounds):
        wz = z * weights[:, None]
        solution = np.linalg.solve(z.T @ wz + penalty, wz.T @ targets)
        residual = np.abs(targets - z @ solution)
        residual /= 1.4826 * np.median(residual, 0) + 1e-9
        weights = np.minimum(1.0, 1.345 / np.maximum(residual.max(1), 1e-9))
    coef = solution[:-1] / scale[:, None]
    intercept = solution[-1] - mean @ coef
    return LandmarkBoxShape(
        tuple(tuple(map(float, row)) for row in coef),  # type: ignore[misc]
        tuple(map(float, intercept)),  # type: ignore[arg-type]
        fallback,
    )
