"""The focus score: the share of a CAM's mass inside the lower face (nose, mouth, chin).

A mask classifier should decide from that region; a low score flags a model that learned
backgrounds, hair or a dataset's style instead. Pure numpy, so it is easy to test on maps with
known answers.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from maskwatch.crop import resize_square

#: Lower-face template as fractions of the face box (x1, y1, x2, y2) when no landmarks exist.
TEMPLATE = (0.12, 0.45, 0.88, 1.0)

#: Crops are upscaled to this side before looking for landmarks (CenterFace likes >= 64 px faces).
LANDMARK_SIZE = 256


class _Detector(Protocol):
    def detect(self, image: np.ndarray): ...


def face_box_in_crop(crop_size: int, margin: float) -> np.ndarray:
    """Where a face box sits inside a square crop made by :func:`maskwatch.crop.crop_face`."""
    lo = margin / (1.0 + 2.0 * margin) * crop_size
    return np.array([lo, lo, crop_size - lo, crop_size - lo], np.float32)


def lower_face_region(face_box: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """Rectangle (x1, y1, x2, y2) covering nose, mouth and chin.

    With landmarks (eyes, nose, mouth corners): from halfway between eyes and nose down to the
    face box's bottom (chin), and across the mouth corners widened by half the mouth-to-eye gap.
    Without: a fixed template of the face box.
    """
    x1, y1, x2, y2 = (float(v) for v in face_box)
    if landmarks is None:
        tx1, ty1, tx2, ty2 = TEMPLATE
        w, h = x2 - x1, y2 - y1
        return np.array([x1 + tx1 * w, y1 + ty1 * h, x1 + tx2 * w, y1 + ty2 * h], np.float32)
    eyes, nose, mouth = landmarks[:2], landmarks[2], landmarks[3:5]
    eye_y = float(eyes[:, 1].mean())
    top = (eye_y + float(nose[1])) / 2.0
    widen = max(abs(float(mouth[:, 1].mean()) - eye_y) * 0.5, 1.0)
    left = min(float(mouth[:, 0].min()), float(nose[0])) - widen
    right = max(float(mouth[:, 0].max()), float(nose[0])) + widen
    bottom = max(y2, float(mouth[:, 1].max()) + widen)
    return np.array([max(left, x1), top, min(right, x2), bottom], np.float32)


def focus_score(cam: np.ndarray, region: np.ndarray) -> float:
    """Share of the (non-negative) CAM mass inside ``region`` (pixel rectangle of the CAM)."""
    cam = np.clip(np.asarray(cam, np.float64), 0, None)
    total = cam.sum()
    if total <= 0:
        return 0.0
    height, width = cam.shape
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = xs + 0.5, ys + 0.5
    x1, y1, x2, y2 = region
    inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
    return float(cam[inside].sum() / total)


def find_face(detector: _Detector | None, crop: np.ndarray, expected_box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(box, landmarks) in crop pixels of the detected face nearest ``expected_box``; None if none is found."""
    if detector is None:
        return None
    scale = LANDMARK_SIZE / crop.shape[0]
    found = detector.detect(resize_square(crop, LANDMARK_SIZE))
    if found.landmarks is None or len(found.boxes) == 0:
        return None
    centre = (expected_box[:2] + expected_box[2:]) / 2 * scale
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    best = int(np.argmin(np.linalg.norm(centres - centre, axis=1)))
    return found.boxes[best] / scale, found.landmarks[best] / scale


def locate_lower_face(detector: _Detector | None, crop: np.ndarray, *, margin: float | None) -> tuple[np.ndarray, bool]:
    """(lower-face rectangle in crop pixels, whether landmarks placed it) for one square crop.

    ``margin`` is the crop's known margin around an annotated face box (scene faces); ``None`` means a dataset
    image without a box: many are tight face crops, but some are whole photos with small faces, so the detected
    face's own box is used there.
    """
    box = face_box_in_crop(crop.shape[0], margin if margin is not None else 0.0)
    face = find_face(detector, crop, box)
    if face is None:
        return lower_face_region(box), False
    return lower_face_region(box if margin is not None else face[0], face[1]), True


def region_mask(region: np.ndarray, size: int) -> np.ndarray:
    """A (size, size) uint8 mask of the pixels whose centres lie in ``region`` - as :func:`focus_score` counts them."""
    centres = np.arange(size) + 0.5
    x1, y1, x2, y2 = region
    rows = (centres >= y1) & (centres <= y2)
    cols = (centres >= x1) & (centres <= x2)
    return (rows[:, None] & cols[None, :]).astype(np.uint8)
