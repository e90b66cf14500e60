"""Telling other systems: MQTT (paho-mqtt) and webhooks, each behind a bounded queue and its own thread.

Delivery never blocks inference: ``put`` never waits; when a queue is full the message is dropped,
counted and logged. Every message carries the event id so receivers can drop duplicates.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from maskwatch.serve.config import MqttConfig, WebhookConfig

log = logging.getLogger(__name__)


@dataclass
class Outbox:
    """A bounded queue that counts what it had to drop (and says so in the log, rate-limited)."""

    name: str
    size: int = 1000
    dropped: int = 0
    _last_log: float = 0.0

    def __post_init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=self.size)

    def put(self, item: object) -> bool:
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_log > 10:
                self._last_log = now
                log.warning("%s: queue full (%d); dropped %d message(s) so far", self.name, self.size, self.dropped)
            return False


class MqttDelivery:
    """Publishes to ``PREFIX/events``, ``PREFIX/CAMERA/status``, ``PREFIX/status`` and ``PREFIX/stats``.

    ``PREFIX/status`` is ``online`` while connected and ``offline`` as the connection's last will (retained),
    so subscribers see a crashed service too. paho reconnects on its own with back-off.
    """

    def __init__(self, config: MqttConfig, client_id: str):
        import paho.mqtt.client as mqtt

        self.config, self.prefix = config, config.topic_prefix.rstrip("/")
        self.outbox = Outbox("mqtt", config.queue_size)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._statuses: dict[str, str] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        if config.tls is not None:
            tls = config.tls
            self.client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
        self.client.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._thread = threading.Thread(target=self._run, name="mqtt-delivery", daemon=True)

    def start(self) -> MqttDelivery:
        self.client.connect_async(self.config.host, self.config.port, keepalive=30)
        self.client.loop_start()
        self._thread.start()
        return self

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt %s:%d refused the connection: %s", self.config.host, self.config.port, reason_code)
            return
        log.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            log.warning("mqtt: disconnected (%s); reconnecting", reason_code)
        self.connected.clear()

    def event(self, kind: str, event: dict) -> None:
        self.outbox.put((f"{self.prefix}/events", json.dumps({"type": kind, **event}), 1, False))

    def camera_status(self, camera: str, status: str, reason: str | None) -> None:
        payload = json.dumps({"camera": camera, "status": status, "reason": reason, "time": time.time()})
        self.outbox.put((f"{self.prefix}/{camera}/status", payload, 1, True))

    def stats(self, stats: dict) -> None:
        self.outbox.put((f"{self.prefix}/stats", json.dumps(stats), 0, False))

    def _run(self) -> None:
        while not self._stop.is_set() or not self.outbox.queue.empty():
            try:
                topic, payload, qos, retain = self.outbox.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            while not self.connected.wait(0.2):
                if self._stop.is_set():
                    return
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc != 0:
                self.outbox.dropped += 1
                log.warning("mqtt: publish to %s failed (rc %s); dropped", topic, info.rc)

    def close(self, timeout_s: float = 3.0) -> None:
        """Flush what is queued (bounded), say ``offline`` and disconnect."""
        deadline = time.monotonic() + timeout_s
        while not self.outbox.queue.empty() and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self.connected.is_set():
            info = self.client.publish(f"{self.prefix}/status", "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.2, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()


class WebhookDelivery:
    """HTTP POST of each event message (the MQTT JSON) to every matching URL, with retries and back-off."""

    def __init__(self, hooks: list[WebhookConfig], *, queue_size: int = 1000, backoff_s: float = 0.5):
        self.hooks, self.backoff_s = hooks, backoff_s
        self.outbox = Outbox("webhooks", queue_size)
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)

    def start(self) -> WebhookDelivery:
        self._thread.start()
        return self

    def event(self, kind: str, event: dict) -> None:
        body = json.dumps({"type": kind, **event}).encode()
        for hook in self.hooks:
            if hook.labels is None or event.get("label") in hook.labels:
                self.outbox.put((hook, body))

    def _run(self) -> None:
        while not self._stop.is_set() or not self.outbox.queue.empty():
            try:
                hook, body = self.outbox.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._post(hook, body)

    def _post(self, hook: WebhookConfig, body: bytes) -> bool:
        headers = {"Content-Type": "application/json", "User-Agent": "maskwatch-serve"}
        for attempt in range(hook.retries + 1):
            request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
                    if response.status < 300:
                        return True
                    reason = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                reason = str(getattr(error, "reason", error))
            if attempt == hook.retries or self._stop.wait(self.backoff_s * 2**attempt):
                break  # out of tries, or shutting down: no more waiting
        self.failed += 1
        log.warning("webhook %s: gave up after %d tries (%s)", hook.url, hook.retries + 1, reason)
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.outbox.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))


class Deliverers:
    """Fan-out to whichever deliverers the config turned on."""

    def __init__(self, mqtt: MqttDelivery | None = None, webhooks: WebhookDelivery | None = None):
        self.mqtt, self.webhooks = mqtt, webhooks

    def event(self, kind: str, event: dict) -> None:
        for sink in (self.mqtt, self.webhooks):
            if sink is not None:
                sink.event(kind, event)

    def camera_status(self, camera: str, status: str, reason: str | None) -> None:
        if self.mqtt is not None:
            self.mqtt.camera_status(camera, status, reason)

    def stats(self, stats: dict) -> None:
        if self.mqtt is not None:
            self.mqtt.stats(stats)

    def dropped(self) -> int:
        return sum(s.outbox.dropped for s in (self.mqtt, self.webhooks) if s is not None)

    def close(self) -> None:
        for sink in (self.mqtt, self.webhooks):
            if sink is not None:
                sink.close()
