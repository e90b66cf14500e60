"""Fan-out of stored events to server-sent-event clients: the store writer's thread publishes, asyncio tasks read.

Each subscriber has a bounded queue on its own event loop; a client too slow to keep up loses the oldest
messages (counted in ``dropped``), never the writer's time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

#: Store writer message types -> SSE event names. ``update`` is sent only when an open event's best score (and so its
#: snapshot) improves by a margin, or a lost person comes back into it (see ``serve.events``): a few per event, never
#: per frame; the page refreshes the row and its thumbnail. ``seen`` (a ``last_seen`` refresh) is not sent.
SSE_NAMES = {"new": "start", "update": "update", "end": "end"}


class Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, size: int):
        self.loop, self.queue = loop, asyncio.Queue(maxsize=size)
        self.dropped = 0

    def offer(self, item: tuple[str, dict]) -> None:
        """Runs on the subscriber's loop."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class EventHub:
    """``publish`` from any thread; ``subscribe`` inside a request's task."""

    def __init__(self, queue_size: int = 256):
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._dropped_gone = 0
        self.published = 0

    def publish(self, kind: str, event: dict) -> None:
        """The store writer's ``on_stored``: ``new``, ``update`` and ``end`` go out (as ``start``, ``update``, ``end``)."""
        name = SSE_NAMES.get(kind)
        if name is None:
            return
        self.published += 1
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.offer, (name, event))
            except RuntimeError:  # its loop has closed
                self._discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped_gone + sum(s.dropped for s in self._subscribers)

    def _discard(self, subscriber: Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.discard(subscriber)
                self._dropped_gone += subscriber.dropped

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue]:
        subscriber = Subscriber(asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._subscribers.add(subscriber)
        try:
            yield subscriber.queue
        finally:
            self._discard(subscriber)
