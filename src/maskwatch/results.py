"""Typed results shared by the runtime, the drawing code and the JSON writer (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskwatch.labels import is_compliant


@dataclass(frozen=True)
class Face:
    """One detected face: box in original-image pixels, class, calibrated probabilities."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    label: str
    score: float  # calibrated probability of ``label``
    probs: dict[str, float]
    face_score: float  # how sure the pipeline is that this is a face (photo default: see runtime.face_ranking)
    landmarks: np.ndarray | None = None  # (5, 2): eyes, nose, mouth corners, when the detector gives them
    uncertain: bool = False
    track_id: int | None = None
    detector_score: float | None = None  # the detector's own score, when face_score is another (photos)

    def __post_init__(self) -> None:
        if np.shape(self.box) != (4,):
            raise ValueError(f"box must have 4 numbers, got shape {np.shape(self.box)}")
        if self.landmarks is not None and np.shape(self.landmarks) != (5, 2):
            raise ValueError(f"landmarks must be (5, 2), got {np.shape(self.landmarks)}")

    @property
    def compliant(self) -> bool:
        return is_compliant(self.label)

    def to_json(self) -> dict:
        record = {
            "box": [round(float(v), 1) for v in self.box],
            "label": self.label,
            "score": round(self.score, 4),
            "face_score": round(self.face_score, 4),
            "probs": {k: round(v, 4) for k, v in self.probs.items()},
        }
        if self.detector_score is not None:
            record["detector_score"] = round(self.detector_score, 4)
        if self.uncertain:
            record["uncertain"] = True
        if self.track_id is not None:
            record["track_id"] = self.track_id
        if self.landmarks is not None:
            record["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
        return record


@dataclass
class FrameResult:
    """Everything found in one image or video frame, or the reason it could not be read."""

    source: str
    frame: int
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None  # (width, height)
    timings_ms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] | None = None

    def to_json(self) -> dict:
        record: dict = {"source": self.source, "frame": self.frame, "faces": [f.to_json() for f in self.faces]}
        if self.error is not None:
            record["error"] = self.error
        if self.size is not None:
            record["width"], record["height"] = self.size
        if self.counts is not None:
            record["counts"] = self.counts
        return record
