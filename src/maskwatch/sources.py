"""One ``source`` argument -> a stream of frames: image, folder, glob, video, webcam or URL.

Every input yields at least one item, so nothing silently disappears: a file that cannot be read
yields a :class:`Frame` whose ``error`` says why, and the caller records it and goes on.
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.annotated_copies import RECORD, is_annotated_copy, matches, read_record
from maskwatch.imaging import (
    VIDEO_SUFFIXES,
    ImageLoadError,
    is_image_path,
    is_left_out,
    is_os_file,
    is_system_folder,
    leaving_out,
    load_rgb,
)
from maskwatch.live import DEFAULT_TIMEOUT_S, LatestFrameReader, open_capture

log = logging.getLogger(__name__)

STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")
#: A video this many unreadable frames in a row is taken to have ended (its length may be unknown or wrong).
MAX_BAD_FRAMES_IN_A_ROW = 25
#: A reconnected stream counts as healthy again only after delivering frames for this long.
STABLE_AFTER_S = 10.0


@dataclass
class Frame:
    source: str
    index: int
    image: np.ndarray | None  # RGB uint8
    error: str | None = None
    is_video: bool = False
    fps: float | None = None


def describe_source(source: str) -> str:
    """'webcam', 'stream', 'video', 'image', 'folder' or 'glob'.

    An existing file or folder is taken as itself before any glob reading, so names with ``[``, ``*`` or ``?`` work.
    """
    if source.isdigit():
        return "webcam"
    if source.lower().startswith(STREAM_PREFIXES):
        return "stream"
    path = Path(source)
    if _probe(path.is_dir):
        return "folder"
    if not _probe(path.exists) and any(ch in source for ch in "*?["):
        return "glob"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "image"


def _probe(check) -> bool:
    """A filesystem test that is False, not an exception, for names the OS refuses (too long, invalid)."""
    try:
        return bool(check())
    except (OSError, ValueError):
        return False


def iter_frames(
    source: str,
    *,
    stride: int = 1,
    max_retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    skip: Sequence[Path] = (),
) -> Iterator[Frame]:
    """Frames of ``source`` in order; ``stride`` > 1 keeps every n-th video frame. Never empty: a source that gives
    nothing yields one Frame whose ``error`` says why. ``skip``: files and folders a folder or glob source leaves
    out (the run's own ``--json`` inside the folder being read); annotated copies are left out by their record."""
    if not source.strip():
        yield Frame(source, 0, None, "empty SOURCE: give an image, folder, glob, video, webcam index or URL")
        return
    kind = describe_source(source)
    try:
        yield from _frames_of(source, kind, stride, max_retries, backoff_s, timeout_s, skip)
    except OSError as error:  # a path the OS refuses (name too long, a folder vanishing mid-run): one record
        yield Frame(source, 0, None, f"cannot read ({error.strerror or error})")


ONLY_COPIES = (
    f"holds only annotated copies maskwatch wrote (listed in {RECORD}), which are not photos; "
    f"delete that file to read them anyway"
)


def _frames_of(
    source: str, kind: str, stride: int, max_retries: int, backoff_s: float, timeout_s: float, skip: Sequence[Path]
) -> Iterator[Frame]:
    """The frames of one source of a known kind (see :func:`iter_frames`)."""
    if kind == "folder":
        files, problems = list_folder(Path(source), skip)
        yield from (Frame(folder, 0, None, reason) for folder, reason in problems)
        if not files and not problems:
            copies = any(is_annotated_copy(path) for path in Path(source).rglob("*"))
            yield Frame(source, 0, None, ONLY_COPIES if copies else "folder has no files")
        yield from _iter_files(files, include_non_images=True)
    elif kind == "glob":
        left_out = leaving_out(skip)

        everything = expand_glob(source)
        copies = {p for p in everything if is_annotated_copy(p)}
        dropped = [p for p in everything if p in copies or is_left_out(p, left_out)]
        matched = [p for p in everything if p not in set(dropped)]
        _say_left_out([str(p) for p in dropped])
        files = [p for p in matched if is_image_path(p) or p.suffix.lower() in VIDEO_SUFFIXES]
        if not matched:
            only_copies = bool(copies) and len(copies) == len(everything)
            yield Frame(source, 0, None, ONLY_COPIES.replace("holds", "matched") if only_copies else "glob matched no files")
        elif not files:  # found by the fuzz harness: this used to give no line at all
            yield Frame(source, 0, None, f"glob matched {len(matched)} files, none an image or video")
        yield from _iter_files(files, include_non_images=False)
    elif kind == "image":
        yield from _iter_files([Path(source)], include_non_images=True)
    elif kind == "video":
        yield from _iter_video(source, stride)
    else:
        yield from _iter_live(source, kind, stride, max_retries, backoff_s, timeout_s)


def list_folder(root: Path, skip: Sequence[Path] = ()) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every file under ``root`` once, sorted, without following folder symlinks (no loops, no repeats), and
    (folder, reason) for each folder that could not be read. Left out, with one line per folder: ``skip`` (files and
    folders: this run's ``--json``) and the annotated copies ``detect --save`` recorded writing (never photos)."""
    problems: list[tuple[str, str]] = []
    left_out = leaving_out(skip)

    def unreadable(error: OSError) -> None:
        problems.append((str(error.filename or root), f"cannot read folder ({error.strerror or error})"))

    files: dict[str, Path] = {}
    dropped: list[str] = []
    for folder, subfolders, names in os.walk(root, onerror=unreadable, followlinks=False):
        kept = [name for name in subfolders if not is_system_folder(name)]
        if left_out.folders:
            dropped += [os.path.join(folder, name) for name in kept if is_left_out(os.path.join(folder, name), left_out)]
            kept = [name for name in kept if not is_left_out(os.path.join(folder, name), left_out)]
        subfolders[:] = kept
        record = read_record(Path(folder)) if RECORD in names else {}  # once per folder, not once per file
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                if is_left_out(path, left_out) or matches(record, path):
                    dropped.append(str(path))
                elif not is_os_file(path):
                    files.setdefault(os.path.realpath(path), path)
            elif path.is_symlink() and not path.exists():
                problems.append((str(path), "broken symbolic link"))
    _say_left_out(dropped)
    return sorted(files.values()), problems


def _say_left_out(dropped: list[str]) -> None:
    """One line per folder for what a listing left out as maskwatch's own output (``--json``, earlier annotated
    copies), so that nothing leaves the input without a word."""
    by_folder: dict[str, list[str]] = {}
    for path in dropped:
        by_folder.setdefault(os.path.dirname(path) or ".", []).append(os.path.basename(path))
    for folder, names in by_folder.items():
        what = names[0] if len(names) == 1 else f"{len(names)} files"
        log.info("%s: leaving out %s that maskwatch wrote (its --json or annotated copies), not input", folder, what)


def folder_read(source: str) -> Path | None:
    """The folder a folder or glob ``source`` reads files under (a glob's part before its first wildcard); None for
    a single file, a video, a webcam or a stream."""
    kind = describe_source(source)
    if kind == "folder":
        return Path(source)
    return _literal_prefix(source) if kind == "glob" else None


def _literal_prefix(pattern: str) -> Path:
    """The part of a glob pattern before its first wildcard component."""
    literal: list[str] = []
    for part in Path(pattern).parts:
        if globlib.has_magic(part):
            break
        literal.append(part)
    return Path(*literal) if literal else Path(".")


def expand_glob(pattern: str) -> list[Path]:
    """Files matching ``pattern`` once each: matches reached through a folder symlink below the pattern's literal
    prefix are dropped (Python's glob follows them, so a symlink loop repeats a file dozens of times), and ``**/**``
    repeats are merged by real path."""
    prefix = _literal_prefix(pattern)
    found: dict[str, Path] = {}
    for match in globlib.iglob(pattern, recursive=True):
        path = Path(match)
        if not path.is_file():
            continue
        parents = [p for p in path.parents if len(p.parts) > len(prefix.parts)]
        if any(p.is_symlink() for p in parents):
            continue
        found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


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


def _iter_video(path: str, stride: int) -> Iterator[Frame]:
    if not Path(path).is_file():
        yield Frame(path, 0, None, "no such video file", is_video=True)
        return
    if Path(path).stat().st_size == 0:
        yield Frame(path, 0, None, "empty video file (0 bytes)", is_video=True)
        return
    capture = open_capture(path)
    if capture is None:
        yield Frame(path, 0, None, "cannot open as video (unknown format or corrupt)", is_video=True)
        return
    yield from _read_finite(capture, path, stride)


def _read_finite(capture: cv2.VideoCapture, source: str, stride: int) -> Iterator[Frame]:
    """Every frame of a file-like capture. A frame that fails to decode is one error record and reading goes on:
    OpenCV's FFmpeg backend resumes at the next frame, so stopping there would lose the rest silently."""
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    index, produced, failed = 0, 0, []
    try:
        while len(failed) < MAX_BAD_FRAMES_IN_A_ROW and (length <= 0 or index < length):
            ok, bgr = capture.read()
            if not ok or bgr is None or bgr.ndim != 3:
                failed.append(index)
                index += 1
                continue
            for bad in failed:  # failures followed by a good frame were corrupt frames, not the end
                yield Frame(source, bad, None, "frame could not be decoded (corrupt data); skipped", True, fps)
            failed = []
            if index % stride == 0:
                yield Frame(source, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, True, fps)
            produced += 1
            index += 1
    finally:
        capture.release()
    if length > 0 and failed:  # the container said more frames were there: the tail is unreadable
        yield Frame(source, failed[0], None, f"frames {failed[0]}-{length - 1} could not be decoded", True, fps)
    elif produced == 0:
        yield Frame(source, 0, None, "video has no decodable frames", is_video=True)


def _is_finite_http(capture: cv2.VideoCapture, source: str) -> bool:
    """An http(s) URL serving a file with a known length (a clip, not a camera): read it once, like a local video."""
    return source.lower().startswith(("http://", "https://")) and (capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) > 0


def _iter_live(source: str, kind: str, stride: int, max_retries: int, backoff_s: float, timeout_s: float) -> Iterator[Frame]:
    """Webcam or network stream, read by a newest-frame-only thread; a dropped stream is reopened with
    exponential back-off, a finite http file is read once, a webcam that stops is one error record."""
    target: str | int = int(source) if kind == "webcam" else source
    index, failures = 0, 0
    while True:
        capture = open_capture(target, timeout_s=timeout_s)
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
        if _is_finite_http(capture, source):
            yield from _read_finite(capture, source, stride)
            return
        fps = capture.get(cv2.CAP_PROP_FPS) or None
        reader = LatestFrameReader(capture, start_index=index, timeout_s=timeout_s)
        connected = time.monotonic()
        try:
            while (live := reader.next()) is not None:
                if time.monotonic() - connected >= STABLE_AFTER_S:
                    failures = 0  # healthy for a while: later drops start the back-off afresh
                if live.index % stride == 0:
                    yield Frame(source, live.index, cv2.cvtColor(live.bgr, cv2.COLOR_BGR2RGB), None, True, fps)
        finally:
            reader.close()
        if reader.dropped:
            log.info("%s: %d frames dropped to stay live (processing slower than the source)", source, reader.dropped)
        index = reader.next_index
        if kind == "webcam":
            yield Frame(source, index, None, f"webcam stopped delivering frames ({reader.end_reason})", True)
            return
        failures += 1
        if failures > max_retries:
            yield Frame(
                source, index, None, f"stream dropped ({reader.end_reason}) and did not come back after {max_retries} tries", True
            )
            return
        delay = backoff_s * 2 ** (failures - 1)
        log.warning("%s: stream dropped at frame %d (%s); reconnecting in %.1f s", source, index, reader.end_reason, delay)
        time.sleep(delay)
