"""The HTTP server: uvicorn in a thread of the service's process, serving the app of :mod:`maskwatch.serve.api`.

The routes, models and auth live in ``serve/api/`` (one module per resource); this module keeps the names the rest of
the service and older tests import.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from fastapi import FastAPI

from maskwatch.serve.api import ServiceHooks, create_app
from maskwatch.serve.api.models import CameraOut, Counts, EventOut, Health

log = logging.getLogger(__name__)

__all__ = ["CameraOut", "Counts", "EventOut", "Health", "HttpServer", "ServiceHooks", "create_app"]


class HttpServer:
    """uvicorn in a thread of this process (the service's signal handling stays in the main thread)."""

    def __init__(self, app: FastAPI, host: str, port: int):
        import uvicorn

        # proxy_headers off: X-Forwarded-* are read by the app itself, and only with http.trust_proxy
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", proxy_headers=False,
            timeout_graceful_shutdown=3,
        )  # fmt: skip
        self.app = app
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout_s: float = 10.0) -> HttpServer:
        try:  # say why in one line, before uvicorn logs its own traceback-like error
            socket.create_server((self.host, self.port)).close()
        except OSError as error:
            raise RuntimeError(
                f"http: cannot listen on {self.host}:{self.port} ({os.strerror(error.errno) if error.errno else error})"
            ) from None
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            if self.server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)
        if not self.server.started:
            raise RuntimeError(f"http: cannot listen on {self.host}:{self.port} (in use, or not allowed)")
        log.info("http: listening on http://%s:%d", self.host, self.port)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        streams = getattr(self.app.state, "streams", None)
        if streams is not None:
            streams.closing.set()  # MJPEG and SSE bodies end within a second, so uvicorn can finish
        self.server.should_exit = True
        self._thread.join(timeout=timeout_s)
