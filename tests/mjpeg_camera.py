"""A camera for tests that the test steers: an HTTP MJPEG stream (``multipart/x-mixed-replace``) of whatever scene
it was last shown, so a person can enter at the moment the test chooses instead of at a fixed time in a clip.

OpenCV's FFmpeg backend reads such a URL like an IP camera's MJPEG endpoint; no ffmpeg binary is needed.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = b"frame"


class MjpegCamera:
    """``http://127.0.0.1:PORT/cam.mjpg`` at ``fps``, showing the RGB scene last passed to :meth:`show`."""

    def __init__(self, scene: np.ndarray, fps: float = 10.0):
        self.period = 1.0 / fps
        self._jpeg = b""
        self._stop = threading.Event()
        self.show(scene)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                try:
                    while not outer._stop.is_set():
                        jpeg = outer._jpeg
                        head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (BOUNDARY, len(jpeg))
                        self.wfile.write(head + jpeg + b"\r\n")
                        self.wfile.flush()
                        outer._stop.wait(outer.period)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, name="mjpeg-camera", daemon=True)
        self._thread.start()

    def show(self, scene: np.ndarray) -> None:
        """From the next frame on, stream ``scene`` (RGB uint8)."""
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("cannot encode the scene as JPEG")
        self._jpeg = data.tobytes()
        self.shown_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
