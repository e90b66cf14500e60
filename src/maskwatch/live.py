"""Live sources (webcams, network streams): timeouts on open and read, and a reader that keeps only the newest frame.

Reading in the caller's loop makes latency grow without bound when processing is slower than the camera: frames
queue up in the driver or socket and the output falls further and further behind. A reader thread that keeps only
the latest frame drops the backlog instead, so each processed frame is at most one processing time old.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

#: Default limit for opening a network stream and for waiting on one frame of it.
DEFAULT_TIMEOUT_S = 10.0


def open_capture(target: str | int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> cv2.VideoCapture | None:
    """An opened capture, or None. Network URLs go through FFmpeg with open and read timeouts: without them a
    server that accepts and never answers holds the open for minutes."""
    if isinstance(target, str) and "://" in target:
        ms = int(timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    else:
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


@dataclass
class LiveFrame:
    index: int  # position in the stream, counting frames the reader dropped
    bgr: np.ndarray


class LatestFrameReader:
    """Reads ``capture`` in a daemon thread; :meth:`next` returns the newest frame not yet returned.

    ``dropped`` counts frames that were replaced before anyone asked for them. ``end_reason`` says why the stream
    ended ('end of stream' or 'no frame for N s'), for the one error line the caller writes.
    """

    def __init__(self, capture: cv2.VideoCapture, *, start_index: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S):
        self._capture, self._timeout_s = capture, timeout_s
        self._condition = threading.Condition()
        self._latest: LiveFrame | None = None
        self._next_index, self._finished, self._stop = start_index, False, False
        self.dropped, self.delivered, self.end_reason = 0, 0, ""
        self._thread = threading.Thread(target=self._run, name="maskwatch-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop:
                ok, bgr = self._capture.read()
                if not ok or bgr is None or getattr(bgr, "ndim", 0) != 3:
                    break
                with self._condition:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = LiveFrame(self._next_index, bgr)
                    self._next_index += 1
                    self._condition.notify_all()
        except cv2.error as error:  # a backend error mid-stream is a drop, not a crash of the thread
            log.debug("reader stopped: %s", error)
        finally:
            with self._condition:
                self._finished = True
                self._condition.notify_all()

    @property
    def next_index(self) -> int:
        """The index the next frame read from the stream will get."""
        with self._condition:
            return self._next_index

    def next(self) -> LiveFrame | None:
        """The newest unread frame; None when the stream ended or no frame came within the timeout."""
        deadline = time.monotonic() + self._timeout_s
        with self._condition:
            while self._latest is None and not self._finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.end_reason = f"no frame for {self._timeout_s:g} s"
                    return None
                self._condition.wait(left)
            if self._latest is None:
                self.end_reason = "end of stream"
                return None
            frame, self._latest = self._latest, None
            self.delivered += 1
            return frame

    def close(self) -> None:
        """Stop reading and release the capture (left to the thread if it is stuck inside a read)."""
        self._stop = True
        self._thread.join(timeout=min(self._timeout_s, 2.0))
        if not self._thread.is_alive():
            self._capture.release()
