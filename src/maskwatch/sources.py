"""One ``source`` argument -> a stream of frames: image, folder, glob, video, webcam or URL.

Every input yields at least one item, so nothing silently disappears: a file that cannot be read
yields a :class:`Frame` whose ``error`` says why, and the caller records it and goes on.
"""

from __future__ import annotations

import glob as globlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.imaging import ImageLoadError, is_image_path, load_rgb

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass
class Frame:
    source: str
    index: int
    image: np.ndarray | None  # RGB uint8
    error: str | None = None
    is_video: bool = False
    fps: float | None = None


def describe_source(source: str) -> str:
    """'webcam', 'stream', 'video', 'image', 'folder' or 'glob' (raises for nothing usable)."""
    if source.isdigit():
        return "webcam"
    if source.lower().startswith(STREAM_PREFIXES):
        return "stream"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if any(ch in source for ch in "*?["):
        return "glob"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "image"


def iter_frames(source: str, *, stride: int = 1, max_retries: int = 5, backoff_s: float = 1.0) -> Iterator[Frame]:
    """Frames of ``source`` in order; ``stride`` > 1 keeps every n-th video frame."""
    kind = describe_source(source)
    if kind == "folder":
        files = sorted(p for p in Path(source).rglob("*") if p.is_file())
        yield from _iter_files(files, include_non_images=True)
    elif kind == "glob":
        files = sorted(Path(p) for p in globlib.glob(source, recursive=True) if Path(p).is_file())
        if not files:
            yield Frame(source, 0, None, "glob matched no files")
        yield from _iter_files(files, include_non_images=False)
    elif kind == "image":
        yield from _iter_files([Path(source)], include_non_images=True)
    elif kind == "video":
        yield from _iter_video(source, stride)
    else:
        yield from _iter_live(source, kind, stride, max_retries, backoff_s)


def _iter_files(files: list[Path], include_non_images: bool) -> Iterator[Frame]:
    for path in files:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            yield from _iter_video(str(path), 1)
            continue
        if not is_image_path(path) and not include_non_images:
            continue
        try:
            yield Frame(str(path), 0, load_rgb(path))
        except ImageLoadError as error:
            yield Frame(str(path), 0, None, str(error).removeprefix(f"{path}: "))


def _open_capture(target: str | int) -> cv2.VideoCapture | None:
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


def _iter_video(path: str, stride: int) -> Iterator[Frame]:
    if not Path(path).is_file():
        yield Frame(path, 0, None, "no such video file", is_video=True)
        return
    if Path(path).stat().st_size == 0:
        yield Frame(path, 0, None, "empty video file (0 bytes)", is_video=True)
        return
    capture = _open_capture(path)
    if capture is None:
        yield Frame(path, 0, None, "cannot open as video (unknown format or corrupt)", is_video=True)
        return
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    index, produced = 0, 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            if bgr is None or bgr.ndim != 3:
                yield Frame(path, index, None, "decoder returned an unusable frame", True, fps)
            elif index % stride == 0:
                yield Frame(path, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, True, fps)
            produced += 1
            index += 1
    finally:
        capture.release()
    if produced == 0:
        yield Frame(path, 0, None, "video has no decodable frames", is_video=True)


def _iter_live(source: str, kind: str, stride: int, max_retries: int, backoff_s: float) -> Iterator[Frame]:
    """Webcam or network stream; a dropped stream is reopened with exponential back-off."""
    target: str | int = int(source) if kind == "webcam" else source
    index, failures = 0, 0
    while True:
        capture = _open_capture(target)
        if capture is None:
            failures += 1
            reason = f"no webcam at index {source}" if kind == "webcam" else "cannot connect to stream"
            if failures > max_retries or kind == "webcam":
                yield Frame(source, index, None, f"{reason} (gave up after {failures} tries)", True)
                return
            delay = backoff_s * 2 ** (failures - 1)
            log.warning("%s: %s; retrying in %.1f s", source, reason, delay)
            time.sleep(delay)
            continue
        fps = capture.get(cv2.CAP_PROP_FPS) or None
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                failures = 0
                if index % stride == 0:
                    yield Frame(source, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, True, fps)
                index += 1
        finally:
            capture.release()
        if kind == "webcam":
            return
        failures += 1
        if failures > max_retries:
            yield Frame(source, index, None, f"stream dropped and did not come back after {max_retries} tries", True)
            return
        delay = backoff_s * 2 ** (failures - 1)
        log.warning("%s: stream dropped at frame %d; reconnecting in %.1f s", source, index, delay)
        time.sleep(delay)
