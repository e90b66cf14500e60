"""The long-lived routes on a real uvicorn server over loopback: MJPEG frames, server-sent events from the store
writer, keep-alives, the cap on open streams, and that a stream ends when its client goes or the server stops."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")

from tests.api_support import TOKEN, FakeLive, build_app  # noqa: E402
from tests.serve_support import free_port, wait_for  # noqa: E402
from tests.test_serve_store import make_event  # noqa: E402

from maskwatch.serve.api import ServiceHooks  # noqa: E402
from maskwatch.serve.api.hub import EventHub  # noqa: E402
from maskwatch.serve.config import SnapshotsConfig  # noqa: E402
from maskwatch.serve.events import EventMessage  # noqa: E402
from maskwatch.serve.http import HttpServer  # noqa: E402
from maskwatch.serve.store import Store  # noqa: E402
from maskwatch.serve.writer import StoreWriter  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'e.db'}").open()


class Running:
    def __init__(self, store: Store, **http):
        self.hub = EventHub()
        hooks = ServiceHooks(live=FakeLive(), hub=self.hub, sse_keepalive_s=http.pop("keepalive", 15.0))
        self.app = build_app(store, hooks=hooks, **http)
        self.port = free_port()
        self.server = HttpServer(self.app, "127.0.0.1", self.port).start()
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def open_streams(self) -> dict:
        return self.app.state.streams.open


@pytest.fixture
def running(store: Store) -> Iterator[Running]:
    server = Running(store, keepalive=0.3, stream_fps=20)
    try:
        yield server
    finally:
        server.server.stop()


def sse_messages(lines: Iterator[str]) -> Iterator[dict]:
    """Parse server-sent events: yields {"event", "data"} for messages and {"comment"} for comment lines."""
    current: dict = {}
    for line in lines:
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line.startswith("event:"):
            current["event"] = line[6:].strip()
        elif line.startswith("data:"):
            current["data"] = json.loads(line[5:].strip())
        elif line == "" and current:
            yield current
            current = {}


def test_mjpeg_sends_jpeg_parts_and_ends_when_the_client_goes(running: Running):
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{running.url}/api/cameras/door/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "multipart/x-mixed-replace; boundary=maskwatch-frame"
        assert response.headers["x-accel-buffering"] == "no"
        data = b""
        chunks = response.iter_bytes()  # kept: a dropped iterator closes the connection (and the stream with it)
        for chunk in chunks:
            data += chunk
            if data.count(b"--maskwatch-frame\r\n") >= 3:
                break
        assert running.open_streams["mjpeg"] == 1
    parts = data.split(b"--maskwatch-frame\r\n")[1:3]
    for part in parts:
        head, jpeg = part.split(b"\r\n\r\n", 1)
        assert b"Content-Type: image/jpeg" in head and jpeg[:3] == b"\xff\xd8\xff"
    assert wait_for(lambda: running.open_streams["mjpeg"] == 0, 5), "the stream went on after the client left"


def test_sse_sends_start_update_and_end_of_stored_events_and_keepalives(running: Running, store: Store, tmp_path: Path):
    """Through the real store writer: each message comes after its row is committed (the page can fetch it at once)."""
    seen_in_store = []

    def publish(kind: str, event: dict) -> None:
        seen_in_store.append(store.get_event(event["id"]) is not None)
        running.hub.publish(kind, event)

    writer = StoreWriter(store, node="node-a", snapshots=SnapshotsConfig(dir=tmp_path / "s"), on_stored=publish).start()
    got: list[dict] = []
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{running.url}/api/events/stream") as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        messages = sse_messages(response.iter_lines())
        assert next(messages) == {"comment": "connected"}
        assert wait_for(lambda: running.hub.subscribers == 1, 5)
        writer.submit([EventMessage("new", make_event(1))], [])
        writer.submit([EventMessage("update", make_event(1, score=0.97))], [])  # a better score (and snapshot)
        writer.submit([EventMessage("seen", make_event(1, score=0.97))], [])  # a last_seen refresh: no message
        writer.submit([EventMessage("end", make_event(1, end_time=1_780_000_009.0))], [])
        for message in messages:
            got.append(message)
            if message.get("event") == "end":
                break
        assert next(m for m in messages if "comment" in m) == {"comment": "keep-alive"}  # quiet now: a keep-alive
    writer.close()
    events = [m for m in got if "event" in m]
    assert [m["event"] for m in events] == ["start", "update", "end"]
    assert events[0]["data"]["id"] == "door-0001" and events[2]["data"]["end_time"] == "2026-05-28T20:26:49.000Z"
    assert events[1]["data"]["score"] == 0.97 and events[1]["data"]["end_time"] is None
    assert set(events[0]["data"]) == {
        "id",
        "camera",
        "track_id",
        "label",
        "score",
        "start_time",
        "end_time",
        "box",
        "snapshot",
        "node",
    }
    assert seen_in_store == [True, True, True]  # new, update, end: each told after its commit (seen: never told)
    assert wait_for(lambda: running.hub.subscribers == 0 and running.open_streams["sse"] == 0, 5)


def test_streams_past_the_cap_get_503(store: Store):
    server = Running(store, max_streams=1)
    try:
        with httpx.Client(timeout=10) as client, client.stream("GET", f"{server.url}/api/events/stream") as first:
            lines = first.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)
            second = client.get(f"{server.url}/api/cameras/door/stream")
            assert second.status_code == 503 and second.headers["retry-after"] == "5"
            assert "http.max_streams" in second.json()["detail"]
        assert wait_for(lambda: server.open_streams["sse"] == 0, 5)
    finally:
        server.server.stop()


def test_stopping_the_server_ends_open_streams(store: Store):
    server = Running(store)
    lines: list[str] = []

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{server.url}/api/events/stream", timeout=30) as response:
                lines.extend(response.iter_lines())
        except httpx.HTTPError:
            pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert wait_for(lambda: server.hub.subscribers == 1, 5)
    started = time.monotonic()
    server.server.stop(timeout_s=10)
    listener.join(10)
    assert not listener.is_alive() and not server.server._thread.is_alive()  # noqa: SLF001
    assert time.monotonic() - started < 10  # bounded by the join timeouts above, not a speed claim


def test_streams_need_the_token_too(store: Store):
    server = Running(store, token=TOKEN)
    try:
        assert httpx.get(f"{server.url}/api/events/stream", timeout=5).status_code == 401
        assert httpx.get(f"{server.url}/api/cameras/door/stream", timeout=5).status_code == 401
        headers = {"authorization": f"Bearer {TOKEN}"}
        with httpx.stream("GET", f"{server.url}/api/events/stream", headers=headers, timeout=5) as response:
            assert response.status_code == 200 and next(response.iter_lines()).startswith("retry:")
    finally:
        server.server.stop()


def test_logging_out_ends_the_streams_of_that_session(store: Store):
    """A session that ends (logout, or expiry) must not keep watching: its open MJPEG and SSE streams end too."""
    server = Running(store, token=TOKEN, stream_fps=20)
    ended: dict[str, bool] = {}

    def watch(kind: str, path: str, cookies: dict) -> None:
        try:
            with httpx.stream("GET", f"{server.url}{path}", cookies=cookies, timeout=30) as response:
                assert response.status_code == 200
                for _ in response.iter_bytes():
                    pass
            ended[kind] = True
        except httpx.HTTPError:
            ended[kind] = True

    try:
        login = httpx.post(f"{server.url}/api/login", json={"token": TOKEN}, timeout=5)
        cookies = dict(login.cookies)
        watchers = [
            threading.Thread(target=watch, args=(kind, path, cookies), daemon=True)
            for kind, path in (("sse", "/api/events/stream"), ("mjpeg", "/api/cameras/door/stream"))
        ]
        for watcher in watchers:
            watcher.start()
        assert wait_for(lambda: server.open_streams == {"mjpeg": 1, "sse": 1}, 5)
        out = httpx.post(f"{server.url}/api/logout", cookies=cookies, headers={"x-csrf-token": login.json()["csrf"]}, timeout=5)
        assert out.status_code == 204
        for watcher in watchers:
            watcher.join(15)
        assert ended == {"sse": True, "mjpeg": True}
        assert wait_for(lambda: server.open_streams == {"mjpeg": 0, "sse": 0}, 5)
    finally:
        server.server.stop()
