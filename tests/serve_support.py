"""Real services for the serve tests: a throw-away PostgreSQL database, the Mosquitto broker, a webhook receiver.

Each fixture skips with the reason when its service is absent (a laptop without them).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test"}
MQTT = ("127.0.0.1", 1883)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_admin():
    psycopg = pytest.importorskip("psycopg")
    if not port_open(PG["host"], PG["port"]):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    for user in ("postgres", "root"):
        try:
            return psycopg.connect(**PG, user=user, connect_timeout=3, autocommit=True), user
        except psycopg.OperationalError:
            continue
    pytest.skip("PostgreSQL on 127.0.0.1:5432 accepts neither user postgres nor root")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    admin, user = _pg_admin()
    name = f"maskwatch_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    pytest.importorskip("paho.mqtt")
    if not port_open(*MQTT):
        pytest.skip("Mosquitto is not running on 127.0.0.1:1883")
    return MQTT


class MqttRecorder:
    """A real subscriber: records (topic, payload, retain) under ``prefix/#``."""

    def __init__(self, prefix: str):
        import paho.mqtt.client as mqtt

        self.prefix, self.messages, self.ready = prefix, [], threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: (c.subscribe(f"{prefix}/#", qos=1), self.ready.set())
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.connect(*MQTT, keepalive=30)
        self.client.loop_start()
        assert self.ready.wait(5), "subscriber could not connect"
        time.sleep(0.3)  # the SUBACK

    def on(self, topic: str) -> list[str]:
        return [payload for t, payload, _ in self.messages if t == f"{self.prefix}/{topic}"]

    def events(self) -> list[dict]:
        return [json.loads(p) for p in self.on("events")]

    def close(self) -> None:
        # clear retained messages so the broker keeps nothing of the test
        for topic in {t for t, _, _ in self.messages}:
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_recorder(mqtt_broker) -> Iterator[MqttRecorder]:
    recorder = MqttRecorder(f"maskwatch-test-{uuid.uuid4().hex[:8]}")
    try:
        yield recorder
    finally:
        recorder.close()


class WebhookReceiver:
    """http.server on 127.0.0.1 that records POSTed JSON; ``fail_first`` answers 500 to the first n requests."""

    def __init__(self, fail_first: int = 0):
        self.received: list[dict] = []
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.attempts += 1
                if outer.attempts <= fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def wait_for(predicate, timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return bool(predicate())
