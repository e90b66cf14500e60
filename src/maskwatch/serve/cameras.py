"""One reader thread per camera that keeps only the newest frame.

A slow consumer never builds a backlog: each read overwrites the previous frame. Live sources reconnect
with exponential back-off; a camera without frames for ``offline_after_s`` is marked offline with the
reason; a finite file ends with status ``offline``, reason ``end of file`` (and the other cameras go on).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from maskwatch.serve.config import ResolvedCamera
from maskwatch.sources import describe_source

log = logging.getLogger(__name__)

# RTSP over TCP: no lost UDP packets smearing frames; users may override it in the environment.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

StatusCallback = Callable[[str, str, "str | None"], None]


@dataclass(frozen=True)
class CapturedFrame:
    seq: int  # increases by one per frame read (gaps = frames the consumer never took)
    time: float  # wall clock when read (epoch seconds)
    image: np.ndarray  # RGB uint8


@dataclass
class CameraState:
    status: str = "starting"  # starting | online | offline
    reason: str | None = None
    fps: float = 0.0  # frames read per second (moving average)
    last_frame_time: float | None = None
    frames_read: int = 0
    bad_frames: int = 0


class CameraReader:
    """Reads ``camera.source`` in a thread; :meth:`take` returns the newest frame not yet taken."""

    def __init__(
        self,
        camera: ResolvedCamera,
        *,
        on_status: StatusCallback | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        pace_files: bool = True,
    ):
        self.camera, self.name = camera, camera.name
        self.on_status, self.backoff_s, self.max_backoff_s, self.pace_files = on_status, backoff_s, max_backoff_s, pace_files
        self.state = CameraState()
        self.kind = describe_source(camera.source)
        self._latest: CapturedFrame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera.name}", daemon=True)

    def start(self) -> CameraReader:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    @property
    def finished(self) -> bool:
        """True when the thread has ended (a finite file played out, or stopped)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def take(self, after_seq: int) -> CapturedFrame | None:
        with self._lock:
            frame = self._latest
        return frame if frame is not None and frame.seq > after_seq else None

    def _set_status(self, status: str, reason: str | None) -> None:
        if (status, reason) == (self.state.status, self.state.reason):
            return
        self.state.status, self.state.reason = status, reason
        (log.info if status == "online" else log.warning)("camera %s: %s%s", self.name, status, f" ({reason})" if reason else "")
        if self.on_status is not None:
            self.on_status(self.name, status, reason)

    def watchdog(self, now: float | None = None) -> None:
        """Mark the camera offline when no frame came for ``offline_after_s`` (a read can hang on a dead stream)."""
        now = time.time() if now is None else now
        last = self.state.last_frame_time
        if self.state.status == "online" and last is not None and now - last > self.camera.offline_after_s:
            self._set_status("offline", f"no frames for {self.camera.offline_after_s:g} s")

    def _open(self) -> cv2.VideoCapture | None:
        target: str | int = int(self.camera.source) if self.kind == "webcam" else self.camera.source
        timeout_ms = int(max(1.0, self.camera.offline_after_s) * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        try:
            capture = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        except cv2.error:
            capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            return None
        return capture

    def _run(self) -> None:
        failures = 0
        finite = self.kind in ("video", "image")
        while not self._stop.is_set():
            capture = self._open()
            if capture is None:
                reason = "cannot open the file" if finite else "cannot connect"
                if finite:
                    self._set_status("offline", reason)
                    return
                failures += 1
                self._set_status("offline", reason)
            else:
                read_any = self._read_loop(capture, finite)
                capture.release()
                if finite or self._stop.is_set():
                    self._set_status("offline", "stopped" if self._stop.is_set() else "end of file")
                    return
                failures = 0 if read_any else failures + 1
                self._set_status("offline", "stream ended" if read_any else "connected but no frames")
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** max(0, failures - 1))
            log.debug("camera %s: reconnecting in %.1f s", self.name, delay)
            self._stop.wait(delay)
        self._set_status("offline", "stopped")

    def _read_loop(self, capture: cv2.VideoCapture, finite: bool) -> bool:
        """Read until the source ends or fails; True if at least one good frame came."""
        file_fps = capture.get(cv2.CAP_PROP_FPS) if finite else 0.0
        period = 1.0 / file_fps if finite and self.pace_files and 0 < file_fps <= 240 else 0.0
        next_due, read_any, bad_run = time.monotonic(), False, 0
        while not self._stop.is_set():
            ok, bgr = capture.read()
            if not ok:
                return read_any
            if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
                self.state.bad_frames += 1
                bad_run += 1
                if bad_run >= 25:
                    self._set_status("offline", "undecodable frames")
                continue
            bad_run, read_any = 0, True
            self._publish(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if period:
                next_due += period
                self._stop.wait(max(0.0, next_due - time.monotonic()))
        return read_any

    def _publish(self, image: np.ndarray) -> None:
        now = time.time()
        state = self.state
        if state.last_frame_time is not None:
            instant = 1.0 / max(now - state.last_frame_time, 1e-3)
            state.fps = instant if state.fps == 0 else 0.9 * state.fps + 0.1 * instant
        state.last_frame_time, state.frames_read = now, state.frames_read + 1
        with self._lock:
            self._latest = CapturedFrame(state.frames_read, now, image)
        self._set_status("online", None)
