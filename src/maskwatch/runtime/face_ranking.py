"""How likely a detection of the photo default is a face people would annotate, from everything its passes saw.

CenterFace's score ranks one pass's faces. The photo default runs three passes (960 px, mirrored, 640 px) and keeps
each fused face's best score, which ignores whether the other passes saw it too, how large it is in the photo and
next to the photo's other faces, and where its landmarks sit in the box. On the scenes-ilc val photos, ranking the same
detections perfectly would lift face AP from 0.829 to 0.911: detections nobody annotated, mostly small faces in the
background of photos with larger ones, rank among annotated faces. A logistic regression over those features, fitted
on the train-split photos of both scene sets (``benchmarks/face_rescoring.py``), gives the probability photos are
ranked by and report as ``face_score``; the detector's own score still decides ``--min-face-score``. The same fit on
the photo default at 640 px (mirrored pass) serves ``--detector-size 640``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskwatch.runtime.boxes import FUSION_IOU, LANDMARK_FEATURES, MIRRORED_LANDMARKS, iou_matrix, landmark_features
from maskwatch.runtime.detectors import Detections

#: Names of :func:`ranking_features`, in order.
RANKING_FEATURES = (
    "best score (logit)",
    "passes that saw it",
    "mean score over passes",
    "log side (px)",
    "log side squared",
    "log side / image short side",
    *(f"landmark {part} {axis}" for axis in "xy" for part in ("eye l", "eye r", "nose", "mouth l", "mouth r")),
    "log aspect ratio",
    "log side / largest sure face's side",
    "log count of sure faces",
)

#: Faces at least this sure, and at least :data:`SURE_SIDE` pixels across, set the image's scale for the relative-size
#: feature.
SURE_SCORE, SURE_SIDE = 0.5, 6.0

#: Sightings under this detector score do not count as a pass seeing a face: the fit saw passes made at the default
#: ``--min-face-score`` (0.2), and a lower floor must not change the features of the faces above it.
SIGHTING_FLOOR = 0.2

#: Landmark features (box units) are clipped to this: a degenerate box puts its landmarks millions of widths away.
MAX_LANDMARK_FEATURE = 2.0


def pass_scores(boxes: np.ndarray, passes: list[Detections], iou: float = FUSION_IOU) -> np.ndarray:
    """(N, passes): per fused box, the score of the sighting of each pass that overlaps it most at ``iou`` (the fusion's
    own threshold) or more, 0 where none does. Re-matched after fusion, so a member the averaged box moved away from
    may not count: an approximation the fit saw too."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), len(passes)))
    for j, found in enumerate(passes):
        counted = np.asarray(found.scores, np.float64) >= SIGHTING_FLOOR
        if len(boxes) and counted.any():
            overlap = np.nan_to_num(iou_matrix(boxes, np.asarray(found.boxes, np.float64)[counted]), nan=-1.0)
            best = overlap.argmax(1)
            seen = overlap[np.arange(len(boxes)), best] >= iou
            out[seen, j] = np.asarray(found.scores, np.float64)[counted][best[seen]]
    return out


def mirror_averaged(features: np.ndarray) -> np.ndarray:
    """:func:`~maskwatch.runtime.boxes.landmark_features` averaged with those of the mirror image, so that a face
    and its mirror image rank the same (what turns left or right cancels; what is symmetric stays)."""
    x, y, aspect = features[:, :5], features[:, 5:10], features[:, 10:]
    mirrored = np.column_stack([-x[:, MIRRORED_LANDMARKS], y[:, MIRRORED_LANDMARKS], aspect])
    return (features + mirrored) / 2


def ranking_features(fused: Detections, passes: list[Detections], shape: tuple[int, int]) -> np.ndarray:
    """(N, len(RANKING_FEATURES)) features of the fused detections of one image of ``shape`` (height, width)."""
    boxes = np.asarray(fused.boxes, np.float64).reshape(-1, 4)
    raw = np.asarray(fused.scores, np.float64)
    finite = np.isfinite(boxes).all(1) & np.isfinite(raw)  # other rows get finite features here, the detector's score
    boxes, raw = np.where(finite[:, None], boxes, 0.0), np.where(finite, raw, 0.0)  # from FaceRanking.score
    best = np.clip(raw, 1e-4, 1 - 1e-4)
    seen = pass_scores(boxes, passes)
    side = np.maximum(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), 1.0)
    marks = np.zeros((len(boxes), LANDMARK_FEATURES))
    if fused.landmarks is not None and len(boxes):
        marks = np.nan_to_num(mirror_averaged(landmark_features(boxes, fused.landmarks)), nan=0.0)
        marks = marks.clip(-MAX_LANDMARK_FEATURE, MAX_LANDMARK_FEATURE)
    log_side = np.log(side)
    sure = finite & (best >= SURE_SCORE) & (side >= SURE_SIDE)
    largest = side[sure].max() if sure.any() else (side[finite].max() if finite.any() else 1.0)
    return np.column_stack(
        [
            np.log(best / (1 - best)),
            (seen > 0).mean(1),
            seen.mean(1),
            log_side,
            log_side**2,
            log_side - np.log(max(min(shape), 1)),
            marks,
            log_side - np.log(largest),
            np.full(len(boxes), np.log1p(sure.sum())),
        ]
    ).reshape(-1, len(RANKING_FEATURES))


@dataclass(frozen=True)
class FaceRanking:
    """A logistic regression over :func:`ranking_features`: one weight per feature, and an intercept."""

    weights: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        if len(self.weights) != len(RANKING_FEATURES):
            raise ValueError(f"{len(self.weights)} weights for {len(RANKING_FEATURES)} ranking features")

    def probability(self, features: np.ndarray) -> np.ndarray:
        logits = np.asarray(features, np.float64) @ np.asarray(self.weights) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))

    def score(self, fused: Detections, passes: list[Detections], shape: tuple[int, int]) -> np.ndarray:
        """Probability that an annotator would have drawn each of the fused detections of one image; the detector's
        score where box or score is not finite."""
        probability = self.probability(ranking_features(fused, passes, shape))
        scores = np.asarray(fused.scores, np.float64)
        usable = np.isfinite(np.asarray(fused.boxes, np.float64)).all(1) & np.isfinite(scores) & np.isfinite(probability)
        return np.where(usable, probability, scores).astype(np.float32)


def fit_face_ranking(features: np.ndarray, covered: np.ndarray, regularisation: float = 1.0) -> FaceRanking:
    """Logistic regression (L2 on standardised features, ``regularisation`` its inverse strength) from features to
    whether an annotated face covers the box; the standardisation is folded into the weights."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=regularisation, max_iter=2000).fit((x - mean) / scale, np.asarray(covered, bool))
    weights = model.coef_[0] / scale
    return FaceRanking(tuple(map(float, weights)), float(model.intercept_[0] - weights @ mean))


#: The ranking of the photo default at 960 px: fitted on its 7419 detections (fp32 CenterFace at 960 px, mirrored and
#: 640 px passes) in the train-split photos of both shared scene sets, 3441 of them covered by an annotated face at
#: IoU 0.5 once reshaped (``python benchmarks/face_rescoring.py ../shared/data/scenes ../shared/data/scenes-ilc
#: --splits recipes/default_splits.csv.gz --cache runs/face_passes.npz --print-constant``). Larger faces, faces as
#: large as the photo's largest sure one and faces every pass saw rank up; the landmarks weigh in too.
PHOTO_FACE_RANKING = FaceRanking(
    weights=(
        1.00429,  # best score (logit)
        0.7778,  # passes that saw it
        2.47028,  # mean score over passes
        -4.06708,  # log side (px)
        0.330876,  # log side squared
        1.39646,  # log side / image short side
        4.25224,  # landmark eye l x
        -4.25224,  # landmark eye r x
        0,  # landmark nose x
        -5.20849,  # landmark mouth l x
        5.20849,  # landmark mouth r x
        0.0223728,  # landmark eye l y
        0.0223728,  # landmark eye r y
        1.41278,  # landmark nose y
        -0.599898,  # landmark mouth l y
        -0.599898,  # landmark mouth r y
        0.537904,  # log aspect ratio
        1.69964,  # log side / largest sure face's side
        0.0107055,  # log count of sure faces
    ),
    intercept=12.0666,
)

#: The same fit for photos at ``--detector-size 640`` (fp32, mirrored pass; 6591 detections, 3341 covered; the
#: command above with ``--size 640 --cache runs/face_passes_640.npz``).
PHOTO_FACE_RANKING_640 = FaceRanking(
    weights=(
        0.66723,  # best score (logit)
        0.0759901,  # passes that saw it
        3.81205,  # mean score over passes
        -3.06418,  # log side (px)
        0.245017,  # log side squared
        0.904765,  # log side / image short side
        6.97965,  # landmark eye l x
        -6.97965,  # landmark eye r x
        0,  # landmark nose x
        -9.3201,  # landmark mouth l x
        9.3201,  # landmark mouth r x
        -3.17117,  # landmark eye l y
        -3.17117,  # landmark eye r y
        6.13419,  # landmark nose y
        -0.400039,  # landmark mouth l y
        -0.400039,  # landmark mouth r y
        0.472376,  # log aspect ratio
        1.72205,  # log side / largest sure face's side
        0.0736487,  # log count of sure faces
    ),
    intercept=7.09523,
)

#: Photo rankings by detector size, each for the photo default's passes at that size (``pipeline.ranking_for``). None at
#: 320 px: issue 9 asks that the speed path not slow down, and there a ranking costs 0.2-0.3 ms per photo for 0.01 of
#: val 3-class mAP (README, "Ranking photo faces").
PHOTO_FACE_RANKINGS = {960: PHOTO_FACE_RANKING, 640: PHOTO_FACE_RANKING_640}
