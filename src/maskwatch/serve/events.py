"""Per-person events from tracked faces: ``new``, ``update``, ``end`` (a Frigate-style event model).

One person, one event per appearance: an event opens when a non-compliant label (smoothed by the
tracker) holds for ``min_frames`` frames, is updated when its best score improves, and ends when the
track is lost. The end waits ``cooldown_s``: a track that appears where the event was seen last
continues it, so a person lost for a moment is not a new person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import numpy as np

from maskwatch.labels import is_compliant
from maskwatch.results import Face
from maskwatch.runtime.boxes import iou_matrix
from maskwatch.serve.config import EventsConfig

#: How often an open event's ``last_seen`` is written to the store (bounds what ``kill -9`` loses).
TOUCH_EVERY_S = 1.0
#: A score must beat the event's best by this much to send an ``update`` (avoids a message per frame).
MIN_IMPROVEMENT = 0.02


def iso(t: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds (the form every store row and message uses)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Event:
    """One person's appearance, as stored and delivered."""

    id: str
    camera: str
    node: str
    track_id: int
    label: str
    score: float
    start_time: float
    box: list[float]
    last_seen: float
    end_time: float | None = None
    snapshot: str | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "camera": self.camera,
            "track_id": self.track_id,
            "label": self.label,
            "score": round(self.score, 4),
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "box": [round(float(v), 1) for v in self.box],
            "snapshot": self.snapshot,
            "node": self.node,
        }


@dataclass
class EventMessage:
    """What the engine tells the store and deliverers. ``seen`` only refreshes ``last_seen`` in the store."""

    type: str  # new | update | end | seen
    event: Event
    image: np.ndarray | None = None  # the frame for the snapshot (new/update only)
    boxes: np.ndarray | None = None  # every face box in that frame (for the privacy blur)


@dataclass
class CountDelta:
    """People counted in one camera-hour (added to the hourly counts)."""

    camera: str
    hour: str
    people_seen: int = 0
    compliant: int = 0
    non_compliant: int = 0


@dataclass
class _TrackState:
    streak: int = 0
    hits: int = 0
    counted: str | None = None  # None | "compliant" | "non_compliant"
    counted_hour: str = ""
    event: Event | None = None
    last_touch: float = 0.0
    box: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))


def hour_of(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:00:00Z")


class EventEngine:
    """Events of one camera; feed it each processed frame's tracked faces."""

    def __init__(self, camera: str, config: EventsConfig, node: str):
        self.camera, self.config, self.node = camera, config, node
        self.tracks: dict[int, _TrackState] = {}
        self.ending: list[Event] = []  # lost, waiting out cooldown_s before ``end``
        self.counts = {"people_seen": 0, "compliant": 0, "non_compliant": 0}

    def update(
        self, faces: list[Face], alive: set[int], t: float, image: np.ndarray | None = None
    ) -> tuple[list[EventMessage], list[CountDelta]]:
        """Faces carry ``track_id`` and smoothed ``label``/``score``; ``alive`` are the tracker's live ids."""
        messages: list[EventMessage] = []
        deltas: list[CountDelta] = []
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        for face in faces:
            if face.track_id is None:
                continue
            state = self.tracks.setdefault(face.track_id, _TrackState())
            state.box, state.hits = np.asarray(face.box, np.float32), state.hits + 1
            qualifies = face.label in self.config.labels and face.score >= self.config.min_score
            state.streak = state.streak + 1 if qualifies else 0
            message = self._advance(face, state, qualifies, t, image, boxes)
            if message is not None:
                messages.append(message)
            delta = self._count(state, face, t)
            if delta is not None:
                deltas.append(delta)
        for track_id in [k for k in self.tracks if k not in alive]:
            state = self.tracks.pop(track_id)
            if state.event is not None:
                self.ending.append(state.event)
        messages.extend(self._expire(t))
        return [replace(m, event=snapshot_event(m.event)) for m in messages], deltas

    def _advance(
        self, face: Face, state: _TrackState, qualifies: bool, t: float, image: np.ndarray | None, boxes: np.ndarray
    ) -> EventMessage | None:
        event = state.event
        if event is None:
            if state.streak < self.config.min_frames:
                return None
            event = self._continued(state.box)
            kind = "update" if event is not None else "new"
            if event is None:
                event = Event(
                    f"{self.camera}-{uuid.uuid4().hex[:12]}", self.camera, self.node, int(face.track_id), face.label,
                    face.score, t, [float(v) for v in face.box], t,
                )  # fmt: skip
            else:
                event.track_id = int(face.track_id)
            state.event, state.last_touch, event.last_seen = event, t, t
            if kind == "update" and face.score <= event.score:
                return EventMessage("seen", event)
            event.label, event.score, event.box = face.label, face.score, [float(v) for v in face.box]
            return EventMessage(kind, event, image, boxes)
        event.last_seen = t
        if qualifies and face.score >= event.score + MIN_IMPROVEMENT:
            event.label, event.score, event.box = face.label, face.score, [float(v) for v in face.box]
            state.last_touch = t
            return EventMessage("update", event, image, boxes)
        if t - state.last_touch >= TOUCH_EVERY_S:
            state.last_touch = t
            return EventMessage("seen", event)
        return None

    def _continued(self, box: np.ndarray) -> Event | None:
        """A recently lost event whose last box overlaps or is near ``box`` (same person back in view)."""
        if not self.ending:
            return None
        last = np.array([e.box for e in self.ending], np.float32)
        overlap = iou_matrix(box[None], last)[0]
        centre = (box[:2] + box[2:]) / 2
        distance = np.linalg.norm((last[:, :2] + last[:, 2:]) / 2 - centre, axis=1)
        near = (overlap > 0.1) | (distance <= max(box[2] - box[0], box[3] - box[1]))
        if not near.any():
            return None
        best = int(np.argmax(np.where(near, overlap - distance * 1e-6, -np.inf)))
        return self.ending.pop(best)

    def _expire(self, t: float) -> list[EventMessage]:
        out, keep = [], []
        for event in self.ending:
            if t - event.last_seen >= self.config.cooldown_s:
                event.end_time = event.last_seen
                out.append(EventMessage("end", event))
            else:
                keep.append(event)
        self.ending = keep
        return out

    def _count(self, state: _TrackState, face: Face, t: float) -> CountDelta | None:
        """Count a person once it has been seen for ``min_frames``; move it to non-compliant if it raises an event."""
        if state.counted is None and state.hits >= self.config.min_frames:
            kind = "non_compliant" if state.event is not None or not is_compliant(face.label) else "compliant"
            state.counted, state.counted_hour = kind, hour_of(t)
            self.counts["people_seen"] += 1
            self.counts[kind] += 1
            return CountDelta(self.camera, state.counted_hour, 1, **{kind: 1})
        if state.counted == "compliant" and state.event is not None:
            state.counted = "non_compliant"
            self.counts["compliant"] -= 1
            self.counts["non_compliant"] += 1
            return CountDelta(self.camera, state.counted_hour, 0, compliant=-1, non_compliant=1)
        return None

    def finish(self, t: float) -> list[EventMessage]:
        """End every open event now (shutdown): at its last sighting, not at the shutdown time."""
        for state in self.tracks.values():
            if state.event is not None:
                self.ending.append(state.event)
        self.tracks.clear()
        return [replace(m, event=snapshot_event(m.event)) for m in self._expire(float("inf"))]

    def event_tracks(self) -> frozenset[int]:
        """Track ids whose person has an open event (the live view leaves their faces unpixelated under "others")."""
        return frozenset(k for k, s in self.tracks.items() if s.event is not None)

    def open_events(self) -> list[Event]:
        return [s.event for s in self.tracks.values() if s.event is not None] + list(self.ending)


def snapshot_event(event: Event) -> Event:
    """A copy that later changes of the live event cannot alter (what goes into queues)."""
    return replace(event, box=list(event.box))
