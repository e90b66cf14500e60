"""``maskwatch serve`` end to end, as a user runs it: two 640x480 cameras (one RTSP, one file) with a known cast.

Real parts only: the shipped models, ffmpeg's RTSP stream, SQLite and PostgreSQL, Mosquitto, a local webhook
receiver, the service as a subprocess stopped with SIGTERM and killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from tests import serve_support  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402
from tests.rtsp_camera import RtspCamera  # noqa: E402
from tests.serve_clips import Appearance, ffmpeg_exe, load_people, render, write_clip  # noqa: E402
from tests.serve_support import MqttRecorder, WebhookReceiver, free_port, wait_for  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
postgres_url, mqtt_broker = serve_support.postgres_url, serve_support.mqtt_broker  # fixtures
mqtt_recorder, webhook_receiver = serve_support.mqtt_recorder, serve_support.webhook_receiver


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    """hall (file): A without mask and B with mask side by side, then C without mask; door (RTSP): D with, then E without."""
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg binary (Debian's ffmpeg or the imageio-ffmpeg wheel)")
    from maskwatch.serve.config import ResolvedCamera
    from maskwatch.serve.worker import BatchInference

    infer = BatchInference()
    camera = ResolvedCamera(
        name="x", source="x", detector_size=320, detect_every=1, max_fps=10, min_face_px=16, offline_after_s=5
    )

    def check(scene):
        faces = infer([(camera, scene)])[0]
        return len(faces), (faces[0].label if faces else None), (faces[0].score if faces else 0.0)

    root = SHARED_DATA / "chandrika"
    masked, unmasked = load_people(root, "with_mask", 2, check), load_people(root, "without_mask", 3, check)
    if len(masked) < 2 or len(unmasked) < 3:
        pytest.skip("too few clear faces found in ../shared/data/chandrika")
    folder = tmp_path_factory.mktemp("clips")
    hall = [Appearance(unmasked[0], 30, 2, 25), Appearance(masked[0], 400, 2, 25), Appearance(unmasked[1], 215, 37, 25)]
    door = [Appearance(masked[1], 60, 2, 25), Appearance(unmasked[2], 330, 37, 25)]
    return {
        "hall": write_clip(render(hall, 72), folder / "hall.mp4"),
        "door": write_clip(render(door, 72), folder / "door.mp4"),
        "hall_cast": hall,
        "door_cast": door,
    }


def write_config(folder: Path, *, store: str, cameras: dict, extra: str = "") -> tuple[Path, int]:
    port = free_port()
    lines = ["node: test-node", "cameras:"]
    lines += [f"  {name}: {{source: '{source}', offline_after_s: 4}}" for name, source in cameras.items()]
    lines += [
        "events: {min_frames: 3, min_score: 0.6, cooldown_s: 0.5}",
        f"store: '{store}'",
        f"snapshots: {{dir: '{folder / 'snapshots'}'}}",
        f"http: {{host: 127.0.0.1, port: {port}}}",
        extra,
    ]
    path = folder / "serve.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, port


def start_service(config: Path, log: Path) -> subprocess.Popen:
    handle = open(log, "a")
    return subprocess.Popen(
        [sys.executable, "-m", "maskwatch.cli", "serve", "--config", str(config)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def get_json(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def cameras_done(port: int, names: set[str]) -> bool:
    """Every camera has played its clip: offline after having been online."""
    state = get_json(port, "/api/cameras") or []
    return {c["name"] for c in state if c["status"] == "offline" and c["last_frame_time"]} == names


def stop(process: subprocess.Popen, log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log.read_text()[-3000:]


def assert_events_match_cast(events: list[dict], clips: dict) -> None:
    """Exactly one event per non-compliant person, at that person's place; none for people with masks."""
    for camera in ("hall", "door"):
        cast = [a for a in clips[f"{camera}_cast"] if a.person.label == "without_mask"]
        mine = sorted((e for e in events if e["camera"] == camera), key=lambda e: e["start_time"])
        assert len(mine) == len(cast), (camera, mine)
        for event, appearance in zip(mine, cast):
            x1, _, x2, _ = event["box"]
            assert appearance.x - 20 <= (x1 + x2) / 2 <= appearance.x + 260, (event, appearance.x)
            assert event["label"] == "without_mask" and event["end_time"] is not None


def test_two_cameras_give_one_event_per_person_in_sqlite_mqtt_and_webhook(
    clips, tmp_path: Path, mqtt_recorder: MqttRecorder, webhook_receiver: WebhookReceiver
):
    rtsp = RtspCamera(ffmpeg_exe(), clips["door"])
    store = f"sqlite:///{tmp_path / 'events.db'}"
    extra = f"mqtt: {{topic_prefix: {mqtt_recorder.prefix}, stats_interval_s: 1}}\nwebhooks: [{{url: '{webhook_receiver.url}', retries: 2}}]"
    config, port = write_config(tmp_path, store=store, cameras={"door": rtsp.url, "hall": clips["hall"]}, extra=extra)
    log = tmp_path / "serve.log"
    service = start_service(config, log)
    try:
        assert wait_for(lambda: cameras_done(port, {"door", "hall"}), 90, 0.5), log.read_text()[-3000:]
        stop(service, log)
    finally:
        service.kill()
        rtsp.close()
    from maskwatch.serve.store import Store

    events = Store(store).open().query_events(limit=None)
    assert_events_match_cast(events, clips)
    ids = {e["id"] for e in events}
    assert all(Path(e["snapshot"]).is_file() for e in events)
    published = mqtt_recorder.events()
    assert {e["id"] for e in published if e["type"] == "new"} == ids
    assert {e["id"] for e in published if e["type"] == "end"} == ids
    assert mqtt_recorder.on("status")[-1] == "offline"
    stats = json.loads(mqtt_recorder.on("stats")[-1])
    assert set(stats["cameras"]) == {"door", "hall"} and stats["dropped"] == {"store": 0, "delivery": 0}
    assert {json.loads(p)["status"] for p in mqtt_recorder.on("hall/status")} == {"online", "offline"}
    hooks = webhook_receiver.received
    assert {e["id"] for e in hooks if e["type"] == "new"} == ids and {e["id"] for e in hooks if e["type"] == "end"} == ids
    assert "ERROR" not in log.read_text()


def test_postgresql_store_and_kill_9_loses_nothing_committed(clips, tmp_path: Path, postgres_url: str):
    import sqlalchemy as sa

    from maskwatch.serve.events import iso
    from maskwatch.serve.store import Store
    from maskwatch.serve.store import events as events_table

    config, port = write_config(tmp_path, store=postgres_url, cameras={"hall": clips["hall"]})
    log = tmp_path / "serve.log"
    store = Store(postgres_url).open()  # one engine for every poll (a new one per poll would pile up connections)
    service = start_service(config, log)
    try:
        assert wait_for(lambda: any(e["end_time"] is None for e in store.query_events()), 60)
        service.kill()  # SIGKILL, while a person is in view: no clean-up at all
        service.wait(timeout=10)
    finally:
        service.kill()
    before = {e["id"]: e for e in store.query_events(limit=None)}
    open_ids = {i for i, e in before.items() if e["end_time"] is None}
    assert open_ids, before
    with store.engine.connect() as conn:  # the last sighting each open event had written before the kill
        last_seen = dict(conn.execute(sa.select(events_table.c.id, events_table.c.last_seen)).all())
    restarted = time.time()
    service = start_service(config, log)
    try:
        assert wait_for(lambda: cameras_done(port, {"hall"}), 60, 0.5), log.read_text()[-3000:]
        stop(service, log)
    finally:
        service.kill()
    after = {e["id"]: e for e in store.query_events(limit=None)}
    assert set(before) <= set(after)  # nothing committed is lost
    for event_id in open_ids:  # ended by the restart, at the last sighting written before the kill
        assert after[event_id]["end_time"] == iso(last_seen[event_id])
        assert after[event_id]["start_time"] <= after[event_id]["end_time"]
    second_run = [e for e in after.values() if e["id"] not in before]
    assert_events_match_cast(second_run, {"hall_cast": clips["hall_cast"], "door_cast": []})
    assert all(e["start_time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restarted - 1)) for e in second_run)
    assert "left open by an earlier run" in log.read_text()
    store.close()
