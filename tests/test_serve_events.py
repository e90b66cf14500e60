"""Event logic through the real worker loop, with injected detections (no models, no cameras)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pydantic")

from maskwatch.results import Face  # noqa: E402
from maskwatch.runtime.tracking import Tracker  # noqa: E402
from maskwatch.serve.cameras import CapturedFrame  # noqa: E402
from maskwatch.serve.config import EventsConfig, ResolvedCamera  # noqa: E402
from maskwatch.serve.events import EventEngine  # noqa: E402
from maskwatch.serve.worker import CameraWork, run_worker, step  # noqa: E402

LABELS = ("with_mask", "without_mask", "mask_incorrect")
FPS = 10.0


def face(x: float, label: str, p: float = 0.95) -> Face:
    rest = (1 - p) / 2
    probs = {k: (p if k == label else rest) for k in LABELS}
    return Face(box=np.array([x, 100, x + 80, 180], np.float32), label=label, score=p, probs=probs, face_score=0.9)


class ScriptedSource:
    """A camera whose frame ``i`` is timestamped ``i / FPS``; ``script[i]`` are the faces 'seen' in it."""

    name = "cam"

    def __init__(self, script: list[list[Face]]):
        self.script, self.i = script, 0

    def take(self, after_seq: int) -> CapturedFrame | None:
        if self.i >= len(self.script):
            return None
        self.i += 1
        return CapturedFrame(self.i, 1000.0 + self.i / FPS, np.zeros((240, 320, 3), np.uint8))


def run_script(script: list[list[Face]], *, detect_every: int = 1, **events) -> tuple[list, CameraWork, list[int]]:
    """Run the worker over the script; return (messages, work, frame indices that ran inference)."""
    source = ScriptedSource(script)
    camera = ResolvedCamera(
        name="cam", source="x", detector_size=320, detect_every=detect_every, max_fps=1000, min_face_px=1, offline_after_s=5
    )
    config = EventsConfig(**{"min_frames": 3, "min_score": 0.6, "cooldown_s": 2.0, **events})
    work = CameraWork(camera, source, Tracker(LABELS, max_missed=5), EventEngine("cam", config, "node-a"))
    messages, inferred = [], []

    def infer(items):
        inferred.append(source.i - 1)
        return [script[source.i - 1] for _ in items]

    def sink(batch, _deltas):
        messages.extend(batch)

    for _ in script:
        step([work], infer, sink, now=1e9 + source.i)
    # the run ends: ``finish`` ends what is still open, as on shutdown
    sink(work.engine.finish(2e9), [])
    return [m for m in messages if m.type != "seen"], work, inferred


def kinds(messages) -> list[str]:
    return [m.type for m in messages]


def test_one_person_without_mask_gives_one_event_that_ends_at_its_last_sighting():
    script = [[]] * 3 + [[face(100, "without_mask")]] * 20 + [[]] * 40
    messages, work, _ = run_script(script)
    assert kinds(messages) == ["new", "end"]
    new, end = messages
    assert new.event.id == end.event.id and new.event.label == "without_mask"
    assert new.image is not None and new.boxes.shape == (1, 4)
    assert new.event.start_time == pytest.approx(1000.0 + 6 / FPS)  # frame 6: third frame of the streak
    assert end.event.end_time == pytest.approx(1000.0 + 23 / FPS)  # the last frame the face was seen
    assert work.engine.counts == {"people_seen": 1, "compliant": 0, "non_compliant": 1}


def test_compliant_people_raise_no_event_but_are_counted():
    script = [[face(100, "with_mask"), face(300, "with_mask")]] * 15 + [[]] * 30
    messages, work, _ = run_script(script)
    assert messages == []
    assert work.engine.counts == {"people_seen": 2, "compliant": 2, "non_compliant": 0}
    assert work.tracker.last_compliant == {}  # nothing kept per person once gone: flat memory over days


def test_a_flicker_shorter_than_min_frames_raises_nothing():
    script = [[face(100, "with_mask")]] * 5 + [[face(100, "without_mask", 0.99)]] * 2 + [[face(100, "with_mask")]] * 10
    messages, _, _ = run_script(script, min_frames=3)
    assert messages == []


def test_min_score_applies_to_the_smoothed_probability():
    script = [[face(100, "without_mask", 0.55)]] * 20
    assert run_script(script, min_score=0.6)[0] == []
    assert kinds(run_script(script, min_score=0.5)[0]) == ["new", "end"]


def test_a_person_lost_for_a_moment_continues_the_same_event():
    """Lost past the tracker's patience (a new track id), back at the same place within cooldown_s: one event."""
    person = [[face(100, "without_mask")]] * 10
    script = person + [[]] * 12 + [[face(104, "without_mask", 0.99)]] * 10 + [[]] * 40
    messages, _, _ = run_script(script, cooldown_s=2.0)
    assert kinds(messages).count("new") == 1 and kinds(messages).count("end") == 1
    assert len({m.event.id for m in messages}) == 1
    assert messages[-1].event.track_id != messages[0].event.track_id  # it was a new track...
    assert messages[-1].event.end_time == pytest.approx(1000.0 + 32 / FPS)  # ...and the event covers both


def test_a_person_back_after_the_cooldown_is_a_new_event():
    person = [[face(100, "without_mask")]] * 10
    script = person + [[]] * 35 + person + [[]] * 40
    messages, _, _ = run_script(script, cooldown_s=2.0)
    assert kinds(messages) == ["new", "end", "new", "end"]
    assert messages[0].event.id != messages[2].event.id


def test_someone_else_elsewhere_within_the_cooldown_is_a_new_event():
    script = [[face(50, "without_mask")]] * 10 + [[]] * 8 + [[face(500, "without_mask")]] * 10 + [[]] * 40
    messages, _, _ = run_script(script, cooldown_s=5.0)
    assert kinds(messages).count("new") == 2


def test_update_when_the_score_improves_and_label_follows_the_best():
    script = [[face(100, "without_mask", 0.7)]] * 6 + [[face(100, "without_mask", 0.99)]] * 10 + [[]] * 40
    messages, _, _ = run_script(script)
    assert kinds(messages)[0] == "new" and "update" in kinds(messages) and kinds(messages)[-1] == "end"
    updates = [m for m in messages if m.type == "update"]
    assert all(u.image is not None for u in updates)
    assert updates[-1].event.score > messages[0].event.score + 0.1
    assert len({m.event.id for m in messages}) == 1


def test_mixed_crowd_one_event_for_the_one_without_mask():
    script = [[face(50, "with_mask"), face(250, "mask_incorrect"), face(450, "with_mask")]] * 12 + [[]] * 40
    messages, work, _ = run_script(script)
    assert kinds(messages) == ["new", "end"] and messages[0].event.label == "mask_incorrect"
    assert work.engine.counts == {"people_seen": 3, "compliant": 2, "non_compliant": 1}


def test_labels_setting_limits_which_labels_raise_events():
    script = [[face(50, "mask_incorrect")]] * 12
    assert run_script(script, labels=["without_mask"])[0] == []


def test_finish_ends_open_events_at_their_last_sighting():
    script = [[face(100, "without_mask")]] * 10  # still in view when the run stops
    messages, _, _ = run_script(script)
    assert kinds(messages) == ["new", "end"]
    assert messages[-1].event.end_time == pytest.approx(1000.0 + 10 / FPS)


def test_detect_every_runs_inference_on_every_nth_frame_only():
    script = [[face(100, "without_mask")]] * 20
    _, work, inferred = run_script(script, detect_every=2)
    assert inferred == list(range(0, 20, 2))
    assert work.frames == 20 and work.detections == 10


def test_run_worker_survives_a_failing_frame_and_finishes_events_on_stop():
    source = ScriptedSource([[face(100, "without_mask")]] * 200)
    camera = ResolvedCamera(
        name="cam", source="x", detector_size=0, detect_every=1, max_fps=1000, min_face_px=1, offline_after_s=5
    )
    work = CameraWork(camera, source, Tracker(LABELS), EventEngine("cam", EventsConfig(min_frames=2), "n"))
    stop, seen = threading.Event(), []
    calls = {"n": 0}

    def infer(items):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("a broken frame")
        if calls["n"] >= 10:
            stop.set()
        return [[face(100, "without_mask")] for _ in items]

    run_worker([work], infer, lambda m, d: seen.extend(m), stop, idle_s=0.001)
    assert [m.type for m in seen if m.type != "seen"] == ["new", "end"]
