"""Run the pipeline over a source: JSON Lines, annotated images/videos, a live window, counts.

Every input appears exactly once per frame in the JSON, errors included, and a bad file or frame
never stops the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2

from maskwatch.annotated_copies import RECORD, check_record, compact_record, matches, read_record, record_copy
from maskwatch.draw import annotate
from maskwatch.fileio import (
    OutputError,
    check_not_media,
    check_writable_folder,
    ensure_parent,
    write_image,
)
from maskwatch.imaging import outputs_inside
from maskwatch.prefetch import prefetch
from maskwatch.results import FrameResult
from maskwatch.runtime.pipeline import MaskDetector
from maskwatch.runtime.tracking import Tracker
from maskwatch.sources import Frame, describe_source, folder_read, iter_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputOptions:
    json_path: Path | None = None
    save_dir: Path | None = None
    show: bool = False
    blur_faces: bool = False
    detect_every: int = 1  # video: run the detector on every n-th frame, carry tracks between
    track: bool = True


@dataclass
class RunSummary:
    frames: int = 0
    errors: int = 0
    faces: int = 0
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """0: every input (image or frame) succeeded; 1: some failed; 2: all failed (or there was none)."""
        if self.frames == 0 or self.errors >= self.frames:
            return 2
        return 1 if self.errors else 0


class _VideoSinks:
    """One writer per video source, opened at its first frame under a name no other source uses.

    Each video is written to a hidden ``.partial.mp4`` name and renamed when it is complete, so a killed run leaves
    no truncated file under the final name (OpenCV's writer picks the container from the suffix, hence not ``.tmp``).
    """

    def __init__(self, names: SaveNames):
        self.names = names
        self.writers: dict[str, tuple[cv2.VideoWriter, Path, Path]] = {}

    def write(self, source: str, image, fps: float | None) -> None:
        entry = self.writers.get(source)
        if entry is None:
            final = self.names.name_for(source, suffix="_annotated.mp4", fallback="stream")
            partial = final.with_name(f".{final.stem}.partial.mp4")
            height, width = image.shape[:2]
            writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps or 25.0, (width, height))
            if not writer.isOpened():
                raise OutputError(f"{final}: OpenCV cannot open a video writer there")
            entry = self.writers[source] = (writer, partial, final)
        entry[0].write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        for writer, partial, final in self.writers.values():
            writer.release()
            if partial.is_file():
                os.replace(partial, final)
                self.names.done(final)


class SaveNames:
    """Names for annotated copies in the ``--save`` folder: ``<stem><suffix>``, numbered when another source of
    this run took it (same name, other folder; compared case-insensitively, as on the disks of Windows and macOS).
    A file already there is replaced only while it is a copy an earlier run wrote, unchanged since (see
    :mod:`maskwatch.annotated_copies`); any other file is the user's, maybe an input itself (``detect x.jpg --save
    .``, ``--save`` on the folder read), and the copy is named ``<stem>_annotated<suffix>`` instead."""

    def __init__(self, save_dir: Path):
        self.save_dir = save_dir
        self.record = read_record(save_dir)  # this run's view of the folder's record
        self.used: set[str] = set()
        self.unrecorded = False

    def _users(self, name: str, source: str) -> bool:
        path = self.save_dir / name
        if not path.exists():
            return False
        return not matches(self.record, path) or _same_file(path, source)

    def name_for(self, source: str, *, suffix: str = ".jpg", fallback: str = "image") -> Path:
        stem = Path(source).stem or fallback
        base = f"{stem}_annotated" if self._users(f"{stem}{suffix}", source) else stem
        candidate, n = base, 1
        while (candidate + suffix).casefold() in self.used or self._users(candidate + suffix, source):
            n += 1
            candidate = f"{base}_{n}"
        self.used.add((candidate + suffix).casefold())
        return self.save_dir / f"{candidate}{suffix}"

    def done(self, path: Path) -> None:
        """``path`` is complete: record it as maskwatch's, so that a later run may replace it and never reads it. A
        record that cannot be written is one warning, not a failed frame: the copy itself is there."""
        try:
            record_copy(path, self.record)
        except OSError as error:
            if not self.unrecorded:
                log.warning(
                    "--save %s: cannot add to %s (%s); copies not in it are taken for the user's files later",
                    self.save_dir,
                    RECORD,
                    error.strerror or error,
                )
            self.unrecorded = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            compact_record(self.save_dir, self.record)


def _same_file(a: Path, b: str) -> bool:
    """Whether ``a`` and ``b`` are one file: a copy must never be written over its own source."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(options: OutputOptions) -> None:
    """Fail before any work when ``--json`` or ``--save`` cannot be written (one :class:`OutputError` line)."""
    if options.json_path is not None:
        check_not_media(options.json_path, "--json")
        ensure_parent(options.json_path)
        try:
            with open(options.json_path, "a"):
                pass
        except OSError as error:
            raise OutputError(f"--json {options.json_path}: cannot write ({error.strerror or error})") from None
    if options.save_dir is not None:
        check_writable_folder(options.save_dir, "--save")
        check_record(options.save_dir)


def display_problem() -> str | None:
    """Why ``--show`` cannot open a window here, or None. Checked in a child process: on a machine without a
    display, OpenCV's GUI aborts the whole process (exit 134), which no try/except can catch."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    probe = "import cv2; cv2.namedWindow('maskwatch-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "opening a test window did not finish in 20 s"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["OpenCV has no GUI support"])[-1]
        return f"OpenCV cannot open a window ({last[:160]})"
    return None


#: Frames detected at once. Two frames in flight keep both cores busy: one frame's small ONNX Runtime runs leave gaps
#: that the other fills (600-frame 640x480 clip, 2 cores: 36.4 -> 46.6 FPS whole-process, ``benchmarks/whole_process.py
#: --video-frames 600``; photos unchanged).
FRAMES_IN_FLIGHT = 2


def frames_in_flight(detector: MaskDetector) -> int:
    """Concurrent frames for ``detector``: only pipelines whose face detector is ONNX Runtime's (whose sessions may be
    run from several threads); OpenCV's Haar cascade and stand-ins given by callers run one frame at a time."""
    from maskwatch.runtime.detectors import CenterFaceDetector

    return FRAMES_IN_FLIGHT if isinstance(getattr(detector, "detector", None), CenterFaceDetector) else 1


def process_frames(frames: Iterator[Frame], detector: MaskDetector, options: OutputOptions) -> Iterator[FrameResult]:
    """Detect (or carry tracks on skipped frames), smooth per stream, and yield results in frame order.

    Up to :func:`frames_in_flight` frames are detected at once on worker threads; carrying, tracking and everything
    after it happen here, in order, so results are the same as one frame at a time.
    """
    trackers: dict[str, Tracker] = {}
    last: dict[str, FrameResult] = {}
    detected: set[str] = set()  # sources with a decoded frame so far (a later skipped frame carries its result)
    pending: deque[tuple[Frame, Future | None]] = deque()
    width = frames_in_flight(detector)
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="detect") as pool:
        for frame in frames:
            job = None
            if frame.image is not None:
                carry = frame.is_video and frame.source in detected and frame.index % max(1, options.detect_every) != 0
                detected.add(frame.source)
                if not carry:
                    job = pool.submit(detector, frame.image, source=frame.source, frame=frame.index)
            pending.append((frame, job))
            # finish from the head while more than `width` detections are pending, or the head needs none
            while pending and (sum(j is not None for _, j in pending) > width or pending[0][1] is None):
                yield _finish_frame(*pending.popleft(), detector, options, trackers, last)
        while pending:
            yield _finish_frame(*pending.popleft(), detector, options, trackers, last)


def _finish_frame(
    frame: Frame, job: Future | None, detector: MaskDetector, options: OutputOptions, trackers: dict, last: dict
) -> FrameResult:
    """The frame's result, in frame order: an error, the previous result carried, or the detection, tracked."""
    if frame.image is None:
        return FrameResult(frame.source, frame.index, error=frame.error)
    if job is None:
        return replace(last[frame.source], frame=frame.index, timings_ms={})
    result = job.result()
    if frame.is_video and options.track:
        tracker = trackers.setdefault(
            frame.source, Tracker(detector.classifier.labels, uncertain_below=detector.config.uncertain_below)
        )
        result.faces = tracker.update(result.faces)
        result.counts = tracker.counts()
    last[frame.source] = result
    return result


def run(source: str, detector: MaskDetector, options: OutputOptions, *, stride: int = 1) -> RunSummary:
    """Process ``source`` end to end with the outputs asked for; return totals.

    Raises :class:`OutputError` before any work when an output cannot be written. JSON Lines are written as they
    come (a live stream may never end) and flushed per line, so a kill loses at most the line being written.
    """
    check_outputs(options)
    if options.show and (problem := display_problem()):
        log.error("--show: %s; running without a window", problem)
        options = replace(options, show=False)
    summary = RunSummary()
    started = time.perf_counter()
    json_handle = open(options.json_path, "w") if options.json_path is not None else None
    names = SaveNames(options.save_dir) if options.save_dir else None
    skip = _own_outputs(source, options)
    videos = _VideoSinks(names) if names else None
    frames: dict[tuple[str, int], Frame] = {}

    def remember(items: Iterator[Frame]) -> Iterator[Frame]:
        for item in items:
            frames[(item.source, item.index)] = item
            yield item

    fps_clock, fps = time.perf_counter(), None
    try:
        for result in process_frames(remember(_read_ahead(source, stride, skip)), detector, options):
            frame = frames.pop((result.source, result.frame))
            keep_going = True
            if frame.image is not None and (options.save_dir or options.show):
                now = time.perf_counter()
                if frame.is_video:
                    rate = 1.0 / max(now - fps_clock, 1e-6)
                    fps = rate if fps is None else 0.9 * fps + 0.1 * rate
                fps_clock = now
                picture = annotate(frame.image, result.faces, counts=result.counts, fps=fps, blur=options.blur_faces)
                _save(picture, frame, result, names, videos)
                keep_going = not options.show or _show(picture)
            _record(result, summary, json_handle)
            if not keep_going:
                break
    finally:
        if json_handle is not None:
            with contextlib.suppress(OSError):  # already reported by _record; closing must not hide that line
                json_handle.close()
        if videos is not None:
            videos.close()
        if names is not None:
            names.close()
        if options.show:
            _close_windows()
    summary.seconds = time.perf_counter() - started
    return summary


def _own_outputs(source: str, options: OutputOptions) -> list[Path]:
    """This run's ``--json`` file where it lies inside the folder a folder or glob source reads: not input (the
    listing says so; annotated copies it leaves out by their folder's record, see :class:`SaveNames`)."""
    root = folder_read(source)
    if root is None or options.json_path is None:
        return []
    return [Path(path) for path in outputs_inside(root, [options.json_path])]


def _read_ahead(source: str, stride: int, skip: list[Path]) -> Iterator[Frame]:
    """Files and videos are decoded a frame or two ahead on a thread (overlapping inference); live sources already
    have their newest-frame reader, and buffering there would only add latency."""
    frames = iter_frames(source, stride=stride, skip=skip)
    return frames if describe_source(source) in ("webcam", "stream") else prefetch(frames, depth=2)


def _save(picture, frame: Frame, result: FrameResult, names: SaveNames | None, videos) -> None:
    """Write the annotated picture; a failed write becomes the result's error (faces are kept)."""
    if names is None:
        return
    try:
        if frame.is_video:
            videos.write(frame.source, picture, frame.fps)
        else:
            names.done(write_image(names.name_for(frame.source), picture))
    except OSError as error:
        result.error = f"annotated output not written: {error}"


def _record(result: FrameResult, summary: RunSummary, json_handle) -> None:
    """Count the result, log its error on one line, and write its JSON line."""
    summary.frames += 1
    if result.error:
        summary.errors += 1
        log.error("%s (frame %d): %s", result.source, result.frame, result.error)
    else:
        summary.faces += len(result.faces)
    if json_handle is not None:
        try:
            json_handle.write(json.dumps(result.to_json()) + "\n")
            json_handle.flush()
        except OSError as error:  # a full disk mid-run: stop with one line rather than lose results silently
            raise OutputError(f"--json {json_handle.name}: write failed ({error.strerror or error})") from None


def _show(picture) -> bool:
    """Show a frame; False when the user pressed q/Esc. Raises if this OpenCV has no GUI."""
    try:
        cv2.imshow("maskwatch", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)
    except cv2.error as error:
        raise RuntimeError(f"--show needs an OpenCV build with a GUI and a display ({str(error).strip()[:120]})") from None


def _close_windows() -> None:
    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
