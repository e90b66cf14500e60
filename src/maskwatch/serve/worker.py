"""The one inference worker: newest frame of each due camera -> faces (crops of all cameras classified
in one batch) -> per-camera tracker -> events.

The loop is a plain function over injected frame sources, an inference callable and a sink, so tests can
drive it with made-up detections and no models.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from maskwatch.crop import crop_face
from maskwatch.results import Face
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.runtime.detectors import FaceDetector, make_detector
from maskwatch.runtime.tracking import Tracker
from maskwatch.serve.cameras import CapturedFrame
from maskwatch.serve.config import ResolvedCamera
from maskwatch.serve.events import CountDelta, EventEngine, EventMessage

log = logging.getLogger(__name__)

#: Frames of several cameras in, one list of faces per frame out.
Infer = Callable[[Sequence[tuple[ResolvedCamera, np.ndarray]]], list[list[Face]]]
Sink = Callable[[list[EventMessage], list[CountDelta]], None]


class FrameSource(Protocol):
    name: str

    def take(self, after_seq: int) -> CapturedFrame | None: ...


@dataclass
class CameraWork:
    """What the worker keeps per camera between frames."""

    camera: ResolvedCamera
    source: FrameSource
    tracker: Tracker
    engine: EventEngine
    last_seq: int = 0
    last_taken: float = 0.0
    frames: int = 0
    detections: int = 0
    fps: float = 0.0  # processed frames per second (moving average)
    faces: list[Face] = field(default_factory=list)  # latest tracked faces (carried on skipped frames)
    latency_ms: float = 0.0  # capture -> processed, last frame
    faces_by_label: dict[str, int] = field(default_factory=dict)  # classified faces so far (for /metrics)
    view: LiveFrame | None = None  # the last processed frame and its faces (the live view reads it)


@dataclass(frozen=True)
class LiveFrame:
    """One processed frame as the live view shows it; replaced whole by the worker, so readers need no lock."""

    seq: int
    time: float
    image: np.ndarray  # RGB uint8 (the reader's array; nobody writes into it)
    faces: tuple[Face, ...]
    event_tracks: frozenset[int]  # track ids that belong to an open event (their faces are not pixelated by "others")


def _due(work: CameraWork, now: float) -> CapturedFrame | None:
    if now - work.last_taken < 1.0 / work.camera.max_fps:
        return None
    return work.source.take(work.last_seq)


def step(works: Sequence[CameraWork], infer: Infer, sink: Sink, now: float | None = None) -> int:
    """Process the newest frame of every camera that is due; return how many frames were processed."""
    now = time.time() if now is None else now
    taken = [(w, f) for w in works if (f := _due(w, now)) is not None]
    if not taken:
        return 0
    detect = [(w, f) for w, f in taken if w.frames % w.camera.detect_every == 0]
    found = infer([(w.camera, f.image) for w, f in detect]) if detect else []
    results = {id(w): faces for (w, _), faces in zip(detect, found)}
    for work, frame in taken:
        elapsed = now - work.last_taken if work.last_taken else 0.0
        work.last_seq, work.last_taken, work.frames = frame.seq, now, work.frames + 1
        if elapsed > 0:
            work.fps = 1.0 / elapsed if work.fps == 0 else 0.9 * work.fps + 0.1 / elapsed
        if id(work) not in results:
            continue  # detect_every > 1: this frame carries the tracks as they are
        work.detections += 1
        for face in results[id(work)]:
            work.faces_by_label[face.label] = work.faces_by_label.get(face.label, 0) + 1
        work.faces = work.tracker.update(results[id(work)])
        alive = {t.track_id for t in work.tracker.tracks}
        for gone in [k for k in work.tracker.last_compliant if k not in alive]:
            del work.tracker.last_compliant[gone]  # the engine counts people; this dict would grow for ever
        messages, deltas = work.engine.update(work.faces, alive, frame.time, frame.image)
        if messages or deltas:
            sink(messages, deltas)
        work.latency_ms = (time.time() - frame.time) * 1e3
        work.view = LiveFrame(frame.seq, frame.time, frame.image, tuple(work.faces), work.engine.event_tracks())
    return len(taken)


def run_worker(works: Sequence[CameraWork], infer: Infer, sink: Sink, stop: threading.Event, *, idle_s: float = 0.005) -> None:
    """Loop until ``stop`` is set, then end every open event (at its last sighting) through ``sink``."""
    try:
        while not stop.is_set():
            try:
                processed = step(works, infer, sink)
            except Exception:  # noqa: BLE001 - one bad frame must not end the service
                log.exception("worker: a frame failed; going on")
                processed = 0
            if not processed:
                stop.wait(idle_s)
    finally:
        now = time.time()
        for work in works:
            messages = work.engine.finish(now)
            if messages:
                sink(messages, [])


class BatchInference:
    """Real models: one face detector session per input size, one classifier for the crops of all cameras."""

    def __init__(
        self,
        *,
        model: str | None = None,
        detector: str = "centerface",
        min_face_score: float = 0.3,
        threads: int = 0,
        detector_int8: bool | None = None,
    ):
        self.classifier = OnnxMaskClassifier(model, threads=threads)
        self.detector_name, self.min_face_score, self.threads = detector, min_face_score, threads
        self.detector_int8 = detector_int8
        self._detectors: dict[int, FaceDetector] = {}

    def detector_for(self, size: int) -> FaceDetector:
        if size not in self._detectors:
            options: dict = {"threads": self.threads}
            if self.detector_name == "centerface":
                options.update(input_size=size, threshold=min(self.min_face_score, 0.35), int8=self.detector_int8)
            self._detectors[size] = make_detector(self.detector_name, **options)
        return self._detectors[size]

    def __call__(self, items: Sequence[tuple[ResolvedCamera, np.ndarray]]) -> list[list[Face]]:
        info = self.classifier.info
        kept, crops = [], []
        for camera, image in items:
            found = self.detector_for(camera.detector_size).detect(image)
            sides = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
            keep = np.nonzero((found.scores >= self.min_face_score) & (sides >= camera.min_face_px))[0]
            kept.append((found, keep))
            crops.extend(crop_face(image, found.boxes[i], margin=info.margin, size=info.input_size) for i in keep)
        probs = self.classifier.predict_proba(crops)
        out, row = [], 0
        for found, keep in kept:
            faces = []
            for i in keep:
                p = probs[row]
                row += 1
                best = int(p.argmax())
                faces.append(
                    Face(
                        box=found.boxes[i],
                        label=info.labels[best],
                        score=float(p[best]),
                        probs={k: float(v) for k, v in zip(info.labels, p)},
                        face_score=float(found.scores[i]),
                    )
                )
            out.append(faces)
        return out
