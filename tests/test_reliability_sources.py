"""Sources under fault: names that look like globs, symlink loops, empty or unreadable folders, corrupt video
frames, webcams that stop, slow consumers of live streams, servers that never answer, finite http clips."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_face

import maskwatch.sources as sources
from maskwatch.live import LatestFrameReader
from maskwatch.sources import describe_source, iter_frames


def write_png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_face("with_mask", 48, seed=seed)).save(path)
    return path


def write_clip(path: Path, frames: int = 10, fourcc: str = "MJPG") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    for i in range(frames):
        image = np.full((48, 64, 3), 20 * i, np.uint8)
        cv2.putText(image, str(i), (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255))
        writer.write(image)
    writer.release()
    return path


# --- item 6: an existing file whose name has glob characters is that file -------------------------------------
@pytest.mark.parametrize("name", ["shot[1].png", "what?.png", "star*.png"])
def test_existing_file_with_glob_characters_is_read_as_itself(tmp_path: Path, name: str):
    path = write_png(tmp_path / name)
    assert describe_source(str(path)) == "image"
    (frame,) = list(iter_frames(str(path)))
    assert frame.error is None and frame.image.shape == (48, 48, 3)


@pytest.mark.parametrize("suffix", [".png", ".mp4", "/", "/*.png", "*.png"])
def test_a_name_longer_than_the_os_allows_is_one_error(suffix: str):
    """Found by the atheris harness: Path.is_dir() raised 'File name too long' out of describe_source."""
    source = "x" * 300 + suffix
    frames = list(iter_frames(source))
    assert len(frames) == 1 and frames[0].error and frames[0].image is None


# --- item 7: globs and folders list each file once, without following folder symlinks ---------------------------
def test_glob_lists_each_file_once_despite_a_symlink_loop_and_double_stars(tmp_path: Path):
    write_png(tmp_path / "data" / "a" / "face.png")
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "loop")  # a folder symlink pointing back up
    for pattern in ("data/**/*.png", "data/**/**/*.png", "data/*/*.png"):
        frames = list(iter_frames(str(tmp_path / pattern)))
        assert [(Path(f.source).name, f.error) for f in frames] == [("face.png", None)], pattern


def test_folder_lists_each_file_once_despite_a_symlink_loop(tmp_path: Path):
    write_png(tmp_path / "data" / "a" / "face.png")
    os.symlink(tmp_path / "data", tmp_path / "data" / "a" / "loop")
    os.symlink(tmp_path / "data" / "a" / "face.png", tmp_path / "data" / "same_face.png")  # a file link: same file
    frames = list(iter_frames(str(tmp_path / "data")))
    assert len(frames) == 1 and frames[0].error is None  # one file, reached three ways


# --- item 8: an empty folder, an unreadable folder and an empty SOURCE each give one error -------------------------
def test_empty_folder_and_empty_source_are_one_error_each(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (frame,) = list(iter_frames(str(tmp_path / "empty")))
    assert frame.error == "folder has no files"
    for blank in ("", "   "):
        (frame,) = list(iter_frames(blank))
        assert frame.error.startswith("empty SOURCE")


def test_unreadable_folder_is_an_error_record(tmp_path: Path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    write_png(folder / "face.png")
    real_scandir = os.scandir

    def refusing_scandir(path="."):  # root may read any folder, so the refusal is simulated where os.walk meets it
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    frames = list(iter_frames(str(folder)))
    assert len(frames) == 1 and frames[0].source == str(folder)
    assert frames[0].error == "cannot read folder (Permission denied)"


def test_a_glob_that_matches_only_other_files_is_one_error(tmp_path: Path):
    """Found by the atheris harness: '*' over a folder of text files gave no line at all."""
    (tmp_path / "notes.txt").write_text("x")
    (frame,) = list(iter_frames(str(tmp_path / "*")))
    assert frame.error == "glob matched 1 files, none an image or video"


# --- item 2: a corrupt frame in the middle of a video is one error; the frames after it are kept -----------------
def test_video_with_a_corrupt_middle_frame_keeps_the_rest(tmp_path: Path):
    clip = write_clip(tmp_path / "clip.avi", frames=10)
    data = bytearray(clip.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG frame starts
    assert len(starts) == 10
    data[starts[4] : starts[4] + 300] = bytes(300)  # wipe frame 4's JPEG header and first data
    clip.write_bytes(bytes(data))
    frames = list(iter_frames(str(clip)))
    assert [f.index for f in frames] == list(range(10))
    errors = {f.index: f.error for f in frames if f.error}
    assert list(errors) == [4] and "could not be decoded" in errors[4]


class ScriptedCapture:
    """A capture that yields ``frames`` numbered frames (every ``delay_s``), then ends; opens as told."""

    frames, delay_s, opened = 3, 0.0, True

    def __init__(self, *args):
        self.next = 0

    def isOpened(self):
        return ScriptedCapture.opened

    def read(self):
        if self.next >= ScriptedCapture.frames:
            return False, None
        time.sleep(ScriptedCapture.delay_s)
        image = np.full((8, 8, 3), self.next % 256, np.uint8)
        self.next += 1
        return True, image

    def get(self, prop):
        return 0.0  # a live source: no frame count

    def release(self):
        pass


# --- item 3: a webcam that stops mid-stream ends with an error record ---------------------------------------------
def test_webcam_that_stops_delivering_is_an_error_record(monkeypatch):
    ScriptedCapture.frames, ScriptedCapture.delay_s, ScriptedCapture.opened = 3, 0.01, True
    monkeypatch.setattr(sources.cv2, "VideoCapture", ScriptedCapture)
    frames = list(iter_frames("0", timeout_s=2))
    assert frames[-1].error and "webcam stopped delivering frames" in frames[-1].error
    assert all(f.error is None for f in frames[:-1]) and len(frames) >= 2


# --- item 4: a live source read by a newest-frame-only thread: latency stays bounded ------------------------------
def test_live_reader_drops_the_backlog_when_processing_is_slow():
    ScriptedCapture.frames, ScriptedCapture.delay_s, ScriptedCapture.opened = 200, 0.005, True
    reader = LatestFrameReader(ScriptedCapture(), timeout_s=2)
    got = []
    try:
        while (frame := reader.next()) is not None:
            behind = reader.next_index - 1 - frame.index  # frames the camera produced since this one
            got.append((frame.index, behind))
            time.sleep(0.05)  # processing 10x slower than the camera
    finally:
        reader.close()
    indices = [i for i, _ in got]
    assert indices == sorted(set(indices)) and indices[-1] == 199
    assert reader.dropped > 100 and len(got) < 60  # the backlog was dropped, not queued
    assert max(behind for _, behind in got) <= 2  # each frame handed out was (nearly) the newest


def test_a_slow_consumer_of_a_live_stream_gets_the_newest_frames_not_a_backlog(monkeypatch):
    ScriptedCapture.frames, ScriptedCapture.delay_s, ScriptedCapture.opened = 200, 0.005, True
    monkeypatch.setattr(sources.cv2, "VideoCapture", ScriptedCapture)
    indices = []
    started = time.monotonic()
    for frame in iter_frames("rtsp://127.0.0.1:9/cam", max_retries=0, backoff_s=0.01):
        if frame.error is None:
            indices.append(frame.index)
            time.sleep(0.05)  # processing 10x slower than the camera
    assert indices == sorted(set(indices)) and indices[-1] == 199
    assert len(indices) < 60 and time.monotonic() - started < 5  # reading all 200 in turn would take 10 s


def test_a_stream_that_stalls_mid_read_is_a_drop_after_the_read_timeout(monkeypatch):
    class Stalling(ScriptedCapture):
        def read(self):
            if self.next >= 2:
                time.sleep(30)  # the server stopped sending; FFmpeg's own read timeout may not fire
            return super().read()

    ScriptedCapture.frames, ScriptedCapture.delay_s, ScriptedCapture.opened = 100, 0.0, True
    monkeypatch.setattr(sources.cv2, "VideoCapture", Stalling)
    started = time.monotonic()
    frames = list(iter_frames("rtsp://127.0.0.1:9/cam", max_retries=0, backoff_s=0.01, timeout_s=0.5))
    assert time.monotonic() - started < 5
    assert frames[-1].error and "no frame for 0.5 s" in frames[-1].error


# --- item 5: open/read timeouts on network streams ------------------------------------------------------------------
@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_server_that_never_answers_gives_up_within_the_timeout(silent_server: int, scheme: str):
    started = time.monotonic()
    frames = list(iter_frames(f"{scheme}://127.0.0.1:{silent_server}/cam", max_retries=0, timeout_s=1.5))
    assert time.monotonic() - started < 15  # without timeouts FFmpeg waits for minutes
    assert len(frames) == 1 and "cannot connect to stream" in frames[0].error


# --- item 1: a finite file served over http is read once and ends ---------------------------------------------------
@pytest.fixture
def http_folder(tmp_path: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_finite_http_clip_is_read_once_and_ends(http_folder):
    folder, base = http_folder
    write_clip(folder / "clip.mp4", frames=12, fourcc="mp4v")
    started = time.monotonic()
    frames = list(iter_frames(f"{base}/clip.mp4", max_retries=3, backoff_s=0.01, timeout_s=5))
    assert time.monotonic() - started < 30
    assert [f.index for f in frames] == list(range(12)) and all(f.error is None for f in frames)


def test_an_http_text_file_is_one_error_and_ends(http_folder):
    folder, base = http_folder
    (folder / "notes.txt").write_text("not a video\n")
    frames = list(iter_frames(f"{base}/notes.txt", max_retries=1, backoff_s=0.01, timeout_s=5))
    assert len(frames) == 1 and "cannot connect" in frames[0].error
