"""The store and its single writer on real SQLite and PostgreSQL: rows, filters, counts, recovery, outages, snapshots, retention."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402
from tests import serve_support  # noqa: E402
from tests.serve_support import wait_for  # noqa: E402

from maskwatch.serve.config import RetentionConfig, SnapshotsConfig  # noqa: E402
from maskwatch.serve.events import CountDelta, Event, EventMessage  # noqa: E402
from maskwatch.serve.retention import apply_retention  # noqa: E402
from maskwatch.serve.store import SCHEMA_VERSION, Store, StoreError, parse_since, schema_version  # noqa: E402
from maskwatch.serve.writer import StoreWriter  # noqa: E402

postgres_url = serve_support.postgres_url  # fixture

T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("postgres_url")


def make_event(n: int, camera: str = "door", label: str = "without_mask", node: str = "node-a", **kw) -> Event:
    values = dict(score=0.9, start_time=T0 + n, box=[10.0, 20.0, 90.0, 120.0], last_seen=T0 + n)
    values.update(kw)
    return Event(f"{camera}-{n:04d}", camera, node, n, label, **values)


def write_all(store: Store, messages, deltas=(), tmp_path: Path | None = None, **kw) -> StoreWriter:
    snapshots = SnapshotsConfig(dir=(tmp_path or Path("/nonexistent")) / "snaps")
    writer = StoreWriter(store, node="node-a", snapshots=snapshots, **kw).start()
    writer.submit(list(messages), list(deltas))
    writer.close()
    return writer


def test_events_round_trip_with_filters_and_iso_times(store_url):
    store = Store(store_url).open()
    first = make_event(1)
    messages = [
        EventMessage("new", first),
        EventMessage("seen", make_event(1, last_seen=T0 + 5)),
        EventMessage("end", make_event(1, end_time=T0 + 5, last_seen=T0 + 5)),
        EventMessage("new", make_event(2, camera="hall", label="mask_incorrect")),
        EventMessage("new", make_event(3)),
    ]
    writer = write_all(store, messages)
    assert writer.written == 5 and writer.dropped == 0
    rows = store.query_events()
    assert [r["id"] for r in rows] == ["door-0003", "hall-0002", "door-0001"]  # newest first
    assert rows[2] == {
        "id": "door-0001",
        "camera": "door",
        "track_id": 1,
        "label": "without_mask",
        "score": 0.9,
        "start_time": "2026-05-28T20:26:41.000Z",
        "end_time": "2026-05-28T20:26:45.000Z",
        "box": [10.0, 20.0, 90.0, 120.0],
        "snapshot": None,
        "node": "node-a",
    }
    assert [r["id"] for r in store.query_events(camera="hall")] == ["hall-0002"]
    assert [r["id"] for r in store.query_events(label="without_mask")] == ["door-0003", "door-0001"]
    assert [r["id"] for r in store.query_events(since=parse_since("2026-05-28T20:26:42Z"))] == ["door-0003", "hall-0002"]
    assert len(store.query_events(limit=1)) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalar() == SCHEMA_VERSION
    store.close()


def test_hourly_counts_add_up(store_url):
    store = Store(store_url).open()
    deltas = [
        CountDelta("door", "2026-05-28T20:00:00Z", 1, compliant=1),
        CountDelta("door", "2026-05-28T20:00:00Z", 1, non_compliant=1),
        CountDelta("door", "2026-05-28T20:00:00Z", 0, compliant=-1, non_compliant=1),
        CountDelta("hall", "2026-05-28T21:00:00Z", 1, compliant=1),
    ]
    write_all(store, [], deltas)
    rows = {(r["camera"], r["hour"]): r for r in store.hourly_counts()}
    assert (rows[("door", "2026-05-28T20:00:00Z")]["people_seen"], rows[("door", "2026-05-28T20:00:00Z")]["compliant"]) == (2, 0)
    assert rows[("door", "2026-05-28T20:00:00Z")]["non_compliant"] == 2
    assert rows[("hall", "2026-05-28T21:00:00Z")]["compliant"] == 1
    store.close()


def test_a_restart_ends_events_left_open_at_their_last_update(store_url):
    """What ``kill -9`` leaves: open rows. The next start of the same node ends them; other nodes' stay open."""
    store = Store(store_url).open()
    write_all(
        store,
        [
            EventMessage("new", make_event(1)),
            EventMessage("seen", make_event(1, last_seen=T0 + 7.5)),
            EventMessage("new", make_event(2, node="node-b")),
        ],
    )
    assert all(r["end_time"] is None for r in store.query_events())
    store.close()
    again = Store(store_url).open()
    assert again.end_dangling("node-a") == 1
    rows = {r["id"]: r for r in again.query_events()}
    assert rows["door-0001"]["end_time"] == "2026-05-28T20:26:47.500Z"
    assert rows["door-0002"]["end_time"] is None
    again.close()


def test_unreachable_store_at_start_is_one_clear_error():
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        Store("postgresql://postgres@127.0.0.1:1/nothing", connect_timeout_s=2).open()
    assert "cannot open" in str(caught.value) and "\n" not in str(caught.value)
    assert time.monotonic() - started < 10
    with pytest.raises(StoreError, match="unusable URL"):
        Store("nosuchdb://x")


def test_a_store_password_never_reaches_an_error_or_the_log(tmp_path, caplog):
    """The store URL is shown in errors, at start and by ``serve --check``: always with its password masked."""
    from typer.testing import CliRunner

    from maskwatch.cli import app as cli_app

    with pytest.raises(StoreError) as caught:
        Store("postgresql://maskwatch:hunter2-secret@127.0.0.1:1/nothing", connect_timeout_s=1).open()
    assert "hunter2" not in str(caught.value) and "maskwatch:***@127.0.0.1:1" in str(caught.value)
    config = tmp_path / "serve.yaml"
    config.write_text("cameras: {a: {source: a.mp4}}\nstore: postgresql://maskwatch:hunter2-secret@127.0.0.1:1/x\n")
    checked = CliRunner().invoke(cli_app, ["serve", "--config", str(config), "--check"])
    assert checked.exit_code == 0 and "hunter2" not in checked.output and "maskwatch:***@" in checked.output
    started = CliRunner().invoke(cli_app, ["serve", "--config", str(config)])
    assert started.exit_code == 2 and "hunter2" not in started.output + caplog.text


def test_a_newer_schema_is_refused(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}").open()
    with store.engine.begin() as conn:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer"):
        Store(store.url).open()


def test_store_outage_during_the_run_is_buffered_then_written(postgres_url, caplog):
    """PostgreSQL refuses connections for a while: writes wait in the bounded buffer, the overflow is counted."""
    store = Store(postgres_url).open()
    name = postgres_url.rsplit("/", 1)[1]
    admin = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + "/test")
    writer = StoreWriter(store, node="node-a", snapshots=SnapshotsConfig(), buffer_size=6, max_backoff_s=0.5).start()
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        with caplog.at_level(logging.ERROR, logger="maskwatch.serve.writer"):
            writer.submit([EventMessage("new", make_event(n)) for n in range(10)], [])
            assert wait_for(lambda: writer.dropped == 4, 10)
        assert any("retrying" in r.message for r in caplog.records)
        assert any("write(s) lost" in r.message for r in caplog.records)
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    assert wait_for(lambda: len(store.query_events()) == 6, 15)
    writer.close()
    assert sorted(r["id"] for r in store.query_events()) == [f"door-{n:04d}" for n in range(4, 10)]
    store.close()
    admin.dispose()


def test_snapshots_are_written_and_a_refusing_disk_stores_the_event_without_one(tmp_path, caplog):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}").open()
    image = np.full((240, 320, 3), 128, np.uint8)
    boxes = np.array([[10, 20, 90, 120], [200, 20, 280, 120]], np.float32)
    write_all(store, [EventMessage("new", make_event(1), image, boxes)], tmp_path=tmp_path)
    row = store.get_event("door-0001")
    assert row["snapshot"] == str(tmp_path / "snaps" / "door" / "door-0001.jpg") and Path(row["snapshot"]).is_file()
    assert not list((tmp_path / "snaps" / "door").glob("*.tmp"))
    # a snapshot folder that cannot be created (a file is in the way: like a read-only or full disk)
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    writer = StoreWriter(store, node="node-a", snapshots=SnapshotsConfig(dir=blocked)).start()
    with caplog.at_level(logging.ERROR):
        writer.submit([EventMessage("new", make_event(2), image, boxes)], [])
        writer.close()
    assert store.get_event("door-0002")["snapshot"] is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "without a snapshot" in errors[0].getMessage()
    store.close()


def test_retention_deletes_old_events_then_oldest_over_the_size_limit(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}").open()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), np.uint8)  # noise: large JPEGs
    now = T0 + 40 * 86400
    messages = [EventMessage("new", make_event(n, start_time=T0 + n * 86400), image, None) for n in range(40)]
    write_all(store, messages, tmp_path=tmp_path)
    files = sorted((tmp_path / "snaps" / "door").glob("*.jpg"))
    assert len(files) == 40
    per_file_mb = files[0].stat().st_size / 1e6
    deleted = apply_retention(store, "node-a", RetentionConfig(days=30, max_mb=per_file_mb * 10.5), tmp_path / "snaps", now=now)
    left = [r["id"] for r in store.query_events(newest_first=False, limit=None)]
    assert left == [f"door-{n:04d}" for n in range(30, 40)]  # 10 days (and at most 10 snapshots), the newest
    assert deleted == 30 and len(list((tmp_path / "snaps" / "door").glob("*.jpg"))) == 10
    store.close()


@pytest.mark.parametrize(
    ("blur", "own_changed", "other_changed"), [("others", False, True), ("all", True, True), ("none", False, False)]
)
def test_snapshot_privacy_blur(blur: str, own_changed: bool, other_changed: bool):
    from maskwatch.serve.snapshots import privacy_image

    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)
    own, other = [10, 20, 90, 120], [200, 20, 280, 120]
    out = privacy_image(image, np.array([own, other], np.float32), own, blur)

    def changed(box):
        x1, y1, x2, y2 = box
        return not np.array_equal(out[y1:y2, x1:x2], image[y1:y2, x1:x2])

    assert (changed(own), changed(other)) == (own_changed, other_changed)
    assert np.array_equal(out[130:, :], image[130:, :])  # outside the faces nothing changes
