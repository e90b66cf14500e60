"""MQTT delivery through the real Mosquitto broker and webhooks to a real local HTTP receiver."""

from __future__ import annotations

import json
import logging
import time

import pytest

pytest.importorskip("paho.mqtt")

from tests import serve_support  # noqa: E402
from tests.serve_support import MqttRecorder, WebhookReceiver, free_port, wait_for  # noqa: E402

from maskwatch.serve.config import MqttConfig, WebhookConfig  # noqa: E402
from maskwatch.serve.delivery import MqttDelivery, WebhookDelivery  # noqa: E402

mqtt_broker, mqtt_recorder = serve_support.mqtt_broker, serve_support.mqtt_recorder  # fixtures

EVENT = {"id": "door-abc", "camera": "door", "label": "without_mask", "score": 0.93, "end_time": None}


def test_mqtt_topics_status_events_stats_and_clean_offline(mqtt_recorder: MqttRecorder):
    prefix = mqtt_recorder.prefix
    mqtt = MqttDelivery(MqttConfig(topic_prefix=prefix), client_id=f"svc-{prefix}").start()
    assert mqtt.connected.wait(5)
    mqtt.camera_status("door", "online", None)
    mqtt.event("new", EVENT)
    mqtt.event("end", {**EVENT, "end_time": "2026-11-30T05:00:00.000Z"})
    mqtt.stats({"cameras": {"door": {"fps": 9.5}}})
    assert wait_for(lambda: len(mqtt_recorder.events()) == 2 and mqtt_recorder.on("stats"), 5)
    events = mqtt_recorder.events()
    assert [e["type"] for e in events] == ["new", "end"] and {e["id"] for e in events} == {"door-abc"}
    assert mqtt_recorder.on("status") == ["online"]
    status = json.loads(mqtt_recorder.on("door/status")[0])
    assert (status["camera"], status["status"], status["reason"]) == ("door", "online", None)
    assert json.loads(mqtt_recorder.on("stats")[0])["cameras"]["door"]["fps"] == 9.5
    mqtt.close()
    assert wait_for(lambda: mqtt_recorder.on("status")[-1:] == ["offline"], 5)
    # retained: a subscriber that comes later still sees the camera and service status
    late = MqttRecorder(prefix)
    try:
        assert wait_for(lambda: late.on("status") == ["offline"] and late.on("door/status"), 5)
        assert all(retain for _, _, retain in late.messages)
    finally:
        late.client.disconnect()
        late.client.loop_stop()


def test_mqtt_last_will_says_offline_when_the_service_dies(mqtt_recorder: MqttRecorder):
    prefix = mqtt_recorder.prefix
    mqtt = MqttDelivery(MqttConfig(topic_prefix=prefix), client_id=f"svc-{prefix}").start()
    assert wait_for(lambda: mqtt_recorder.on("status") == ["online"], 5)
    mqtt.client._sock_close()  # the connection dies without DISCONNECT, as when the process is killed  # noqa: SLF001
    mqtt.client.loop_stop()
    assert wait_for(lambda: mqtt_recorder.on("status")[-1:] == ["offline"], 10)


def test_broker_down_never_blocks_and_drops_are_counted(caplog):
    mqtt = MqttDelivery(MqttConfig(port=free_port(), queue_size=50), client_id="svc-nobroker").start()
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="maskwatch.serve.delivery"):
        for n in range(2000):
            mqtt.event("new", {**EVENT, "id": f"e{n}"})
    assert time.perf_counter() - started < 1.0
    assert mqtt.outbox.dropped >= 2000 - 51
    assert any("dropped" in r.message for r in caplog.records)
    mqtt.close(timeout_s=0.5)


def test_mqtt_reconnects_and_delivers_what_was_queued(mqtt_recorder: MqttRecorder):
    prefix = mqtt_recorder.prefix
    mqtt = MqttDelivery(MqttConfig(topic_prefix=prefix), client_id=f"svc-{prefix}").start()
    assert mqtt.connected.wait(5)
    mqtt.client.reconnect_delay_set(min_delay=1, max_delay=1)
    mqtt.client._sock_close()  # noqa: SLF001 - a dropped connection
    mqtt.event("new", EVENT)
    assert wait_for(lambda: len(mqtt_recorder.events()) == 1, 10)
    mqtt.close()


def test_webhook_posts_with_retries_and_label_filter():
    receiver = WebhookReceiver(fail_first=2)
    try:
        hooks = [
            WebhookConfig(url=receiver.url, retries=3),
            WebhookConfig(url=receiver.url, labels=["mask_incorrect"], retries=0),
        ]
        sender = WebhookDelivery(hooks, backoff_s=0.05).start()
        sender.event("new", EVENT)
        assert wait_for(lambda: len(receiver.received) == 1, 5)
        sender.close()
        assert receiver.attempts == 3 and receiver.received[0]["type"] == "new" and receiver.received[0]["id"] == "door-abc"
    finally:
        receiver.close()


def test_webhook_down_gives_up_after_retries_without_blocking(caplog):
    sender = WebhookDelivery([WebhookConfig(url=f"http://127.0.0.1:{free_port()}/x", retries=2, timeout_s=1)], backoff_s=0.05)
    sender.start()
    with caplog.at_level(logging.WARNING, logger="maskwatch.serve.delivery"):
        started = time.perf_counter()
        sender.event("new", EVENT)
        assert time.perf_counter() - started < 0.1
        assert wait_for(lambda: sender.failed == 1, 5)
    assert any("gave up after 3 tries" in r.message for r in caplog.records)
    sender.close()
