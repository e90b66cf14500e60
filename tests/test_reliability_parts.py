"""Small parts that keep results honest: atomic writes with ordinary permissions, and the tracker's bookkeeping."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from maskwatch.fileio import OutputError, atomic_path, atomic_write, write_json
from maskwatch.results import Face
from maskwatch.runtime.tracking import Tracker

LABELS = ("with_mask", "without_mask", "mask_incorrect")


# --- the one atomic-write helper ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int):
    before = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"data")
    finally:
        os.umask(before)
    for name in ("a.json", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode  # not mkstemp's private 0600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "history.json"
    target.write_text('{"old": true}')
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write('{"new": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_json_is_strict_and_bad_targets_are_one_clear_error(tmp_path: Path):
    write_json(tmp_path / "h.json", [{"f1": float("nan"), "loss": float("inf"), "ok": 1.5}])
    assert json.loads((tmp_path / "h.json").read_text()) == [{"f1": None, "loss": None, "ok": 1.5}]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a file is in the way"):
        write_json(tmp_path / "file" / "out.json", {})
    with pytest.raises(OutputError, match="is a folder"):
        write_json(tmp_path, {})


# --- tracker -------------------------------------------------------------------------------------------------------------
def face(box, with_mask_p: float) -> Face:
    probs = {"with_mask": with_mask_p, "without_mask": 1 - with_mask_p, "mask_incorrect": 0.0}
    label = max(probs, key=probs.get)
    return Face(np.array(box, np.float32), label, probs[label], probs, 0.9, uncertain=probs[label] < 0.5)


def test_a_new_track_has_missed_nothing():
    tracker = Tracker(LABELS)
    tracker.update([face([0, 0, 10, 10], 0.9)])
    assert [t.missed for t in tracker.tracks] == [0]


def test_uncertain_follows_the_smoothed_probabilities():
    tracker = Tracker(LABELS, smoothing=0.9, uncertain_below=0.6)
    tracker.update([face([0, 0, 10, 10], 0.95)])
    (out,) = tracker.update([face([0, 0, 10, 10], 0.55)])  # alone: uncertain (0.55 < 0.6); smoothed: ~0.91
    assert out.label == "with_mask" and out.score > 0.9 and out.uncertain is False
    tracker = Tracker(LABELS, smoothing=0.5, uncertain_below=0.6)
    tracker.update([face([0, 0, 10, 10], 0.9)])
    (out,) = tracker.update([face([0, 0, 10, 10], 0.1)])  # each frame confident, the average is not
    assert out.score == pytest.approx(0.5) and out.uncertain is True


def test_a_one_frame_false_positive_is_not_a_person_seen():
    tracker = Tracker(LABELS, min_hits=3)
    for i in range(4):
        faces = [face([0, 0, 10, 10], 0.9)]
        if i == 1:
            faces.append(face([100, 100, 120, 120], 0.1))  # a flash of something face-like, once
        tracker.update(faces)
    assert tracker.counts() == {"people_seen": 1, "compliant": 1, "non_compliant": 0}


def test_a_damaged_record_of_annotated_copies_is_read_line_by_line_and_never_crashes(tmp_path: Path):
    """Whatever a record holds (a cut-off line, Infinity, nesting deep enough to exhaust the parser, wrong types,
    a path), only well-formed entries count, and nothing raises: a listing must never stop on it."""
    from maskwatch.annotated_copies import RECORD, read_record

    lines = [
        '{"name": "a.jpg", "size": 10, "mtime_ns": 20}',
        '{"name": "b.jpg", "size": Infinity, "mtime_ns": 1}',
        '{"name": "c.jpg", "size": 1e400, "mtime_ns": 1}',
        "[" * 100_000,
        '{"name": "d.jpg", "size": "10", "mtime_ns": 1}',
        '{"name": "../e.jpg", "size": 1, "mtime_ns": 1}',
        '{"name": "f.jpg", "size": 1, "mti',
    ]
    (tmp_path / RECORD).write_text("\n".join(lines))
    assert read_record(tmp_path) == {"a.jpg": (10, 20)}
    (tmp_path / RECORD).write_bytes(b"\xff\xfe\x00binary\n" * 10)
    assert read_record(tmp_path) == {}


def test_a_record_of_copies_replaced_run_after_run_is_compacted_to_the_copies_still_there(tmp_path: Path):
    from maskwatch.annotated_copies import COMPACT_AFTER, RECORD, compact_record, read_record, record_copy

    copy = tmp_path / "a.jpg"
    copy.write_bytes(b"copy")
    record: dict = {}
    for _ in range(COMPACT_AFTER + 10):  # the same copy recorded again on every run
        record_copy(copy, record)
    (tmp_path / "gone.jpg").write_bytes(b"x")
    record_copy(tmp_path / "gone.jpg", record)
    (tmp_path / "gone.jpg").unlink()
    compact_record(tmp_path, read_record(tmp_path))
    assert (tmp_path / RECORD).read_text().count("\n") == 1 and read_record(tmp_path) == {"a.jpg": record["a.jpg"]}
