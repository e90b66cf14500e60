"""Long-lived responses (MJPEG, server-sent events): a cap on how many are open, and an end on shutdown."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable

from fastapi import HTTPException
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class StreamSlots:
    """At most ``limit`` streams at once (each holds a connection and some CPU); ``closing`` ends them all."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = {"mjpeg": 0, "sse": 0}
        self.closing = threading.Event()
        self._lock = threading.Lock()

    def take(self, kind: str) -> None:
        with self._lock:
            if self.closing.is_set():
                raise HTTPException(status_code=503, detail="the server is stopping")
            if sum(self.open.values()) >= self.limit:
                raise HTTPException(
                    status_code=503,
                    detail=f"too many open streams ({self.limit}, http.max_streams); try again later",
                    headers={"Retry-After": "5"},
                )
            self.open[kind] += 1

    def give(self, kind: str) -> None:
        with self._lock:
            self.open[kind] -= 1

    def response(self, kind: str, body: AsyncIterator[bytes], media_type: str) -> StreamingResponse:
        """A streaming response holding a slot taken with :meth:`take` until it ends, however it ends."""
        return HeldStream(body, media_type=media_type, headers=STREAM_HEADERS, release=lambda: self.give(kind))


#: No caching, and no buffering in nginx (``X-Accel-Buffering``), so frames and events reach the browser at once.
STREAM_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


class HeldStream(StreamingResponse):
    """Calls ``release`` when the response is over: finished, failed, or cancelled by the client going away."""

    def __init__(self, *args, release: Callable[[], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
