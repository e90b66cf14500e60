"""Run the pipeline over a source: JSON Lines, annotated images/videos, a live window, counts.

Every input appears exactly once per frame in the JSON, errors included, and a bad file or frame
never stops the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2

from maskwatch.draw import annotate
from maskwatch.results import FrameResult
from maskwatch.runtime.pipeline import MaskDetector
from maskwatch.runtime.tracking import Tracker
from maskwatch.sources import Frame, iter_frames

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


class _VideoSinks:
    """One writer per video source, opened at its first frame."""

    def __init__(self, save_dir: Path):
        self.save_dir, self.writers = save_dir, {}

    def write(self, source: str, image, fps: float | None) -> None:
        writer = self.writers.get(source)
        if writer is None:
            path = self.save_dir / f"{Path(source).stem or 'stream'}_annotated.mp4"
            height, width = image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps or 25.0, (width, height))
            self.writers[source] = writer
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.release()


def _save_name(save_dir: Path, source: str, used: set[str]) -> Path:
    name = Path(source).stem or "image"
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{name}_{n}"
    used.add(candidate)
    return save_dir / f"{candidate}.jpg"


def process_frames(frames: Iterator[Frame], detector: MaskDetector, options: OutputOptions) -> Iterator[FrameResult]:
    """Detect (or carry tracks on skipped frames), smooth per stream, and yield results."""
    trackers: dict[str, Tracker] = {}
    last: dict[str, FrameResult] = {}
    for frame in frames:
        if frame.image is None:
            yield FrameResult(frame.source, frame.index, error=frame.error)
            continue
        previous = last.get(frame.source)
        if frame.is_video and previous is not None and frame.index % max(1, options.detect_every) != 0:
            result = replace(previous, frame=frame.index, timings_ms={})
        else:
            result = detector(frame.image, source=frame.source, frame=frame.index)
            if frame.is_video and options.track:
                tracker = trackers.setdefault(frame.source, Tracker(detector.classifier.labels))
                result.faces = tracker.update(result.faces)
                result.counts = tracker.counts()
        last[frame.source] = result
        yield result


def run(source: str, detector: MaskDetector, options: OutputOptions, *, stride: int = 1) -> RunSummary:
    """Process ``source`` end to end with the outputs asked for; return totals."""
    summary = RunSummary()
    started = time.perf_counter()
    json_handle = None
    if options.json_path is not None:
        options.json_path.parent.mkdir(parents=True, exist_ok=True)
        json_handle = open(options.json_path, "w")
    if options.save_dir is not None:
        options.save_dir.mkdir(parents=True, exist_ok=True)
    videos = _VideoSinks(options.save_dir) if options.save_dir else None
    used_names: set[str] = set()
    frames = {}

    def remember(items: Iterator[Frame]) -> Iterator[Frame]:
        for item in items:
            frames[(item.source, item.index)] = item
            yield item

    fps_clock, fps = time.perf_counter(), None
    try:
        for result in process_frames(remember(iter_frames(source, stride=stride)), detector, options):
            frame = frames.pop((result.source, result.frame))
            summary.frames += 1
            if result.error:
                summary.errors += 1
                log.error("%s (frame %d): %s", result.source, result.frame, result.error)
            else:
                summary.faces += len(result.faces)
            if json_handle is not None:
                json_handle.write(json.dumps(result.to_json()) + "\n")
                json_handle.flush()
            if frame.image is None or not (options.save_dir or options.show):
                continue
            now = time.perf_counter()
            if frame.is_video:
                fps = 1.0 / max(now - fps_clock, 1e-6) if fps is None else 0.9 * fps + 0.1 / max(now - fps_clock, 1e-6)
            fps_clock = now
            picture = annotate(frame.image, result.faces, counts=result.counts, fps=fps, blur=options.blur_faces)
            if options.save_dir is not None:
                if frame.is_video:
                    videos.write(frame.source, picture, frame.fps)
                else:
                    cv2.imwrite(
                        str(_save_name(options.save_dir, frame.source, used_names)), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
                    )
            if options.show and not _show(picture):
                break
    finally:
        if json_handle is not None:
            json_handle.close()
        if videos is not None:
            videos.close()
        if options.show:
            _close_windows()
    summary.seconds = time.perf_counter() - started
    return summary


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
