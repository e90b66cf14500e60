"""Events and hourly counts in SQL (SQLAlchemy 2 Core): SQLite in WAL mode by default, PostgreSQL by URL.

Only the writer thread writes (one writer per node); readers (HTTP API, ``maskwatch events``) use their
own connections. Times are stored as epoch seconds (portable, sortable) and shown as ISO 8601 UTC.
A schema version table lets later releases migrate.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from maskwatch.serve.events import CountDelta, Event, hour_of, iso

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

metadata = sa.MetaData()
schema_version = sa.Table("maskwatch_schema", metadata, sa.Column("version", sa.Integer, nullable=False))
events = sa.Table(
    "maskwatch_events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("camera", sa.String(128), nullable=False, index=True),
    sa.Column("node", sa.String(128), nullable=False),
    sa.Column("track_id", sa.Integer, nullable=False),
    sa.Column("label", sa.String(32), nullable=False, index=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("start_time", sa.Float, nullable=False, index=True),
    sa.Column("end_time", sa.Float, nullable=True),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("box", sa.JSON, nullable=False),
    sa.Column("snapshot", sa.String(1024), nullable=True),
    # the dashboard's filtered lists, newest first, read from the index without sorting (100 000 events: ~20 ms -> ~2 ms)
    sa.Index("ix_maskwatch_events_camera_start", "camera", "start_time"),
    sa.Index("ix_maskwatch_events_label_start", "label", "start_time"),
)
hourly = sa.Table(
    "maskwatch_hourly_counts",
    metadata,
    sa.Column("camera", sa.String(128), primary_key=True),
    sa.Column("node", sa.String(128), primary_key=True),
    sa.Column("hour", sa.String(32), primary_key=True),  # "YYYY-MM-DDTHH:00:00Z"
    sa.Column("people_seen", sa.Integer, nullable=False, default=0),
    sa.Column("compliant", sa.Integer, nullable=False, default=0),
    sa.Column("non_compliant", sa.Integer, nullable=False, default=0),
)


class StoreError(RuntimeError):
    """The store cannot be used (unreachable, wrong URL, newer schema); the message is one line."""


def parse_since(text: str | None) -> float | None:
    """ISO 8601 (``2026-11-30``, ``...T10:00:00Z``) or epoch seconds -> epoch seconds (UTC when no zone)."""
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since: {text!r} is not an ISO 8601 time or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def ceil_hour(t: float) -> str:
    """The first hour that starts at or after ``t`` (UTC hours are whole multiples of 3600 s since the epoch)."""
    return hour_of(math.ceil(t / 3600) * 3600)


def redacted(url: str) -> str:
    """``url`` (or a message holding URLs) with each password as ``***``: what errors, logs and ``--check`` show."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def _normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver the extra installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _row_json(row: sa.Row) -> dict:
    return {
        "id": row.id,
        "camera": row.camera,
        "track_id": row.track_id,
        "label": row.label,
        "score": round(row.score, 4),
        "start_time": iso(row.start_time),
        "end_time": iso(row.end_time),
        "box": list(row.box),
        "snapshot": row.snapshot,
        "node": row.node,
    }


class Store:
    """SQL access; methods are short transactions so a reader never waits long on the writer."""

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0):
        self.url = url
        full = _normalise_url(url)
        try:
            if full.startswith("sqlite"):
                path = sa.engine.make_url(full).database
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.engine: Engine = sa.create_engine(full, connect_args={"timeout": 30, "check_same_thread": False})
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                args = {"connect_timeout": int(max(1, connect_timeout_s))} if full.startswith("postgresql") else {}
                self.engine = sa.create_engine(full, connect_args=args, pool_pre_ping=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
            raise StoreError(redacted(f"store {url!r}: unusable URL ({error})")) from None

    def open(self) -> Store:
        """Connect, create tables and check the schema version (one clear error when unreachable)."""
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:  # indexes added after a table was made (create_all skips those)
                for index in events.indexes:
                    index.create(conn, checkfirst=True)
            with self.engine.begin() as conn:
                found = conn.execute(sa.select(schema_version.c.version)).scalar()
                if found is None:
                    conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                elif found > SCHEMA_VERSION:
                    raise StoreError(
                        f"store {redacted(self.url)!r}: schema version {found} is newer than this maskwatch ({SCHEMA_VERSION})"
                    )
        except sa.exc.SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise StoreError(redacted(f"store {self.url!r}: cannot open ({reason})")) from None
        return self

    def close(self) -> None:
        self.engine.dispose()

    # -- writes (writer thread only) --
    def upsert_event(self, conn: sa.Connection, event: Event) -> None:
        values = {
            "camera": event.camera,
            "node": event.node,
            "track_id": event.track_id,
            "label": event.label,
            "score": float(event.score),
            "start_time": event.start_time,
            "end_time": event.end_time,
            "last_seen": event.last_seen,
            "box": [float(v) for v in event.box],
            "snapshot": event.snapshot,
        }
        if event.snapshot is None:
            values.pop("snapshot")  # an update whose snapshot failed keeps the earlier one
        done = conn.execute(events.update().where(events.c.id == event.id).values(**values))
        if done.rowcount == 0:
            conn.execute(events.insert().values(id=event.id, **{"snapshot": None, **values}))

    def touch(self, conn: sa.Connection, event_id: str, last_seen: float) -> None:
        conn.execute(events.update().where(events.c.id == event_id).values(last_seen=last_seen))

    def add_counts(self, conn: sa.Connection, delta: CountDelta, node: str) -> None:
        key = (hourly.c.camera == delta.camera) & (hourly.c.node == node) & (hourly.c.hour == delta.hour)
        done = conn.execute(
            hourly.update()
            .where(key)
            .values(
                people_seen=hourly.c.people_seen + delta.people_seen,
                compliant=hourly.c.compliant + delta.compliant,
                non_compliant=hourly.c.non_compliant + delta.non_compliant,
            )
        )
        if done.rowcount == 0:
            conn.execute(
                hourly.insert().values(
                    camera=delta.camera, node=node, hour=delta.hour, people_seen=delta.people_seen,
                    compliant=delta.compliant, non_compliant=delta.non_compliant,
                )
            )  # fmt: skip

    def end_dangling(self, node: str) -> int:
        """Events this node left open (``kill -9``, power cut) end at their last sighting."""
        with self.engine.begin() as conn:
            done = conn.execute(
                events.update().where((events.c.node == node) & events.c.end_time.is_(None)).values(end_time=events.c.last_seen)
            )
        return done.rowcount

    def delete_events(self, ids: list[str]) -> None:
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(events.delete().where(events.c.id.in_(ids[start : start + 500])))

    # -- reads --
    def query_events(
        self,
        *,
        camera: str | None = None,
        label: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        newest_first: bool = True,
    ) -> list[dict]:
        """``since`` inclusive, ``until`` exclusive (epoch seconds of the start time)."""
        query = sa.select(events)
        if camera:
            query = query.where(events.c.camera == camera)
        if label:
            query = query.where(events.c.label == label)
        if since is not None:
            query = query.where(events.c.start_time >= since)
        if until is not None:
            query = query.where(events.c.start_time < until)
        order = events.c.start_time.desc() if newest_first else events.c.start_time.asc()
        query = query.order_by(order, events.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row_json(row) for row in conn.execute(query)]

    def get_event(self, event_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
        return None if row is None else _row_json(row)

    def expired(self, before: float, node: str) -> list[tuple[str, str | None]]:
        """(id, snapshot) of this node's events that started before ``before``."""
        query = sa.select(events.c.id, events.c.snapshot).where((events.c.start_time < before) & (events.c.node == node))
        with self.engine.connect() as conn:
            return [(row.id, row.snapshot) for row in conn.execute(query)]

    def oldest_with_snapshot(self, node: str, n: int = 100) -> list[tuple[str, str]]:
        query = (
            sa.select(events.c.id, events.c.snapshot)
            .where(events.c.snapshot.is_not(None) & (events.c.node == node))
            .order_by(events.c.start_time.asc())
            .limit(n)
        )
        with self.engine.connect() as conn:
            return [(row.id, row.snapshot) for row in conn.execute(query)]

    def hourly_counts(self, camera: str | None = None) -> list[dict]:
        query = sa.select(hourly).order_by(hourly.c.hour, hourly.c.camera)
        if camera:
            query = query.where(hourly.c.camera == camera)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def counts_by_hour(self, *, camera: str | None = None, since: float | None = None, until: float | None = None) -> list[dict]:
        """Hourly counts summed over nodes: ``{camera, hour, people_seen, compliant, non_compliant}``, oldest first.

        ``since`` takes the hour that holds it; ``until`` is exclusive (hours that start before it).
        """
        totals = [sa.func.sum(getattr(hourly.c, k)).label(k) for k in ("people_seen", "compliant", "non_compliant")]
        query = sa.select(hourly.c.camera, hourly.c.hour, *totals).group_by(hourly.c.camera, hourly.c.hour)
        if camera:
            query = query.where(hourly.c.camera == camera)
        if since is not None:
            query = query.where(hourly.c.hour >= hour_of(since))  # the fixed-width text sorts as time
        if until is not None:
            query = query.where(hourly.c.hour < ceil_hour(until))
        query = query.order_by(hourly.c.hour, hourly.c.camera)
        with self.engine.connect() as conn:
            return [
                {k: (int(v) if k not in ("camera", "hour") else v) for k, v in row._mapping.items()}
                for row in conn.execute(query)
            ]

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL: readers and the single writer do not block each other; NORMAL sync is durable across process kills."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
