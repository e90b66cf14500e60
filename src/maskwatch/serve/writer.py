"""The single store writer: snapshots, then delivery, then SQL, in one thread fed by a bounded queue.

The worker only puts messages in the queue (never waits). When the store is unreachable the writer keeps
a bounded buffer and retries with back-off; what falls out of the buffer is counted and logged.
Delivery does not wait for the database, so MQTT and webhooks still hear about events during an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from maskwatch.serve.config import RetentionConfig, SnapshotsConfig
from maskwatch.serve.delivery import Deliverers, Outbox
from maskwatch.serve.events import CountDelta, EventMessage
from maskwatch.serve.retention import apply_retention
from maskwatch.serve.snapshots import write_snapshot
from maskwatch.serve.store import Store

log = logging.getLogger(__name__)

RETRYABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


class StoreWriter:
    """Owns every write to the store for one node."""

    def __init__(
        self,
        store: Store,
        *,
        node: str,
        snapshots: SnapshotsConfig,
        deliver: Deliverers | None = None,
        retention: RetentionConfig | None = None,
        queue_size: int = 10000,
        buffer_size: int = 10000,
        max_backoff_s: float = 10.0,
        on_stored: Callable[[str, dict], None] | None = None,
    ):
        self.store, self.node, self.snapshots, self.deliver, self.retention = store, node, snapshots, deliver, retention
        self.on_stored = on_stored  # (type, event JSON) once the row is committed (the dashboard's live list)
        self.events_by_type: dict[str, int] = {}  # new / update / end messages written (for /metrics)
        self._stored: deque[tuple[str, dict]] = deque(maxlen=buffer_size)  # told to on_stored after the next commit
        self.inbox = Outbox("store", queue_size)
        self.pending: deque[tuple[str, object]] = deque()
        self.buffer_size, self.max_backoff_s = buffer_size, max_backoff_s
        self.dropped = 0  # writes lost because the buffer overflowed during an outage
        self.written = 0
        self._snapshots: dict[str, str] = {}  # open event id -> its snapshot path (kept on later messages)
        self._stop = threading.Event()
        self._next_retention = time.monotonic() + 5.0
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)

    def start(self) -> StoreWriter:
        self._thread.start()
        return self

    def submit(self, messages: list[EventMessage], deltas: list[CountDelta]) -> None:
        """The worker's sink: never blocks."""
        for message in messages:
            self.inbox.put(("event", message))
        for delta in deltas:
            self.inbox.put(("counts", delta))

    def _prepare(self, kind: str, item: object) -> tuple[str, object]:
        """Snapshot and delivery happen here, before SQL, so a store outage delays neither."""
        if kind == "counts":
            return kind, item
        message: EventMessage = item  # type: ignore[assignment]
        event = message.event
        if message.image is not None:
            path = Path(self.snapshots.dir) / event.camera / f"{event.id}.jpg"
            if write_snapshot(
                path, message.image, message.boxes, event.box, blur=self.snapshots.blur, quality=self.snapshots.quality
            ):
                self._snapshots[event.id] = str(path)
        event = replace(event, snapshot=self._snapshots.get(event.id))
        if message.type == "end":
            self._snapshots.pop(event.id, None)
        if message.type != "seen":
            self.events_by_type[message.type] = self.events_by_type.get(message.type, 0) + 1
            if self.deliver is not None:
                self.deliver.event(message.type, event.to_json())
            if self.on_stored is not None:
                self._stored.append((message.type, event.to_json()))
        return ("touch" if message.type == "seen" else "event"), event

    def _buffer(self, op: tuple[str, object]) -> None:
        if len(self.pending) >= self.buffer_size:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error(
                    "store: buffer full (%d writes) while the store is down; %d write(s) lost", self.buffer_size, self.dropped
                )
        self.pending.append(op)

    def _flush(self) -> bool:
        ops = list(self.pending)
        with self.store.engine.begin() as conn:
            for kind, item in ops:
                if kind == "event":
                    self.store.upsert_event(conn, item)  # type: ignore[arg-type]
                elif kind == "touch":
                    self.store.touch(conn, item.id, item.last_seen)  # type: ignore[attr-defined]
                else:
                    self.store.add_counts(conn, item, self.node)  # type: ignore[arg-type]
        for _ in ops:
            self.pending.popleft()
        self.written += len(ops)
        while self._stored and self.on_stored is not None:
            self.on_stored(*self._stored.popleft())
        return True

    def _drain(self, wait_s: float) -> None:
        try:
            first = self.inbox.queue.get(timeout=wait_s)
        except Exception:  # noqa: BLE001 - queue.Empty
            return
        self._buffer(self._prepare(*first))
        while True:
            try:
                item = self.inbox.queue.get_nowait()
            except Exception:  # noqa: BLE001 - queue.Empty
                return
            self._buffer(self._prepare(*item))

    def _run(self) -> None:
        backoff, failing = 0.5, False
        while not (self._stop.is_set() and self.inbox.queue.empty() and (not self.pending or failing)):
            self._drain(0.2 if not self.pending else 0.0)
            if self.pending:
                try:
                    self._flush()
                    if failing:
                        log.info("store: reachable again; buffered writes stored")
                    backoff, failing = 0.5, False
                except RETRYABLE as error:
                    if not failing:
                        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
                        log.error("store: write failed (%s); keeping %d write(s) and retrying", reason, len(self.pending))
                    failing = True
                    self._stop.wait(backoff)
                    backoff = min(self.max_backoff_s, backoff * 2)
                except sa.exc.SQLAlchemyError:
                    log.exception("store: %d write(s) rejected by the database; dropped", len(self.pending))
                    self.dropped += len(self.pending)
                    self.pending.clear()
            self._maybe_retention()

    def _maybe_retention(self) -> None:
        if self.retention is None or time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + self.retention.interval_s
        try:
            apply_retention(self.store, self.node, self.retention, Path(self.snapshots.dir))
        except sa.exc.SQLAlchemyError as error:
            log.error("retention: skipped this round (%s)", str(error).splitlines()[0])

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (bounded in time); say how much could not be stored."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        left = len(self.pending) + self.inbox.queue.qsize()
        if left:
            log.error("store: %d write(s) could not be stored before shutdown", left)
