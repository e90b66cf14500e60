"""A light IoU tracker: keeps an id per person and smooths the label over recent frames.

Per-frame classification flickers on small, moving faces; averaging each track's probabilities
with an exponential moving average keeps the label steady while still following real changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from maskwatch.labels import is_compliant
from maskwatch.results import Face
from maskwatch.runtime.boxes import iou_matrix


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    probs: np.ndarray
    missed: int = 0
    hits: int = 1


@dataclass
class Tracker:
    labels: tuple[str, ...]
    iou_threshold: float = 0.3
    smoothing: float = 0.6  # weight of the past in the moving average
    max_missed: int = 10
    uncertain_below: float = 0.5  # the smoothed top probability under which a face is flagged uncertain
    min_hits: int = 3  # a track counts as a person in ``people_seen`` once matched in this many frames
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1
    last_compliant: dict[int, bool] = field(default_factory=dict)  # track id -> latest smoothed state

    def update(self, faces: list[Face]) -> list[Face]:
        """Match faces to tracks (greedy by IoU); return faces with ids and smoothed labels."""
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        ious = iou_matrix(boxes, np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4))
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for flat in np.argsort(-ious, axis=None):
            i, j = np.unravel_index(flat, ious.shape)
            if ious[i, j] < self.iou_threshold:
                break
            if i in assigned or j in used:
                continue
            assigned[int(i)] = self.tracks[j]
            used.add(int(j))
        out = []
        new: list[Track] = []
        for i, face in enumerate(faces):
            probs = np.array([face.probs[label] for label in self.labels])
            track = assigned.get(i)
            if track is None:
                track = Track(self.next_id, face.box, probs)
                self.next_id += 1
                new.append(track)
            else:
                track.probs = self.smoothing * track.probs + (1 - self.smoothing) * probs
                track.box, track.missed, track.hits = face.box, 0, track.hits + 1
            best = int(track.probs.argmax())
            label = self.labels[best]
            if track.hits >= self.min_hits:  # a one-frame false positive is not a person
                self.last_compliant[track.track_id] = is_compliant(label)
            out.append(
                replace(
                    face,
                    label=label,
                    score=float(track.probs[best]),
                    uncertain=bool(track.probs[best] < self.uncertain_below),  # from the smoothed probabilities
                    track_id=track.track_id,
                    probs={k: float(v) for k, v in zip(self.labels, track.probs)},
                )
            )
        for j, track in enumerate(self.tracks):  # existing tracks only: a track born this frame has missed nothing
            if j not in used:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed] + new
        return out

    def counts(self) -> dict[str, int]:
        """People seen so far in this stream, and how many were last seen (non-)compliant."""
        compliant = sum(self.last_compliant.values())
        return {
            "people_seen": len(self.last_compliant),
            "compliant": compliant,
            "non_compliant": len(self.last_compliant) - compliant,
        }
