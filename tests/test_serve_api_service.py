"""The API of a whole running service (this process, a real camera file, injected detections, SQLite): the live
view, SSE from the real worker and writer, readiness and metrics with real counters; and ``serve``'s refusal to
expose an unguarded API (``--insecure``, ``--token``, ``MASKWATCH_TOKEN``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")

from tests.api_support import TOKEN  # noqa: E402
from tests.serve_clips import background, ffmpeg_exe, write_clip  # noqa: E402
from tests.serve_support import free_port, wait_for  # noqa: E402
from tests.test_serve_api_streams import sse_messages  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from maskwatch.cli import app as cli_app  # noqa: E402
from maskwatch.results import Face  # noqa: E402
from maskwatch.serve.config import parse_config  # noqa: E402
from maskwatch.serve.service import Service  # noqa: E402

WITHOUT = {"with_mask": 0.02, "without_mask": 0.96, "mask_incorrect": 0.02}
WITH = {"with_mask": 0.97, "without_mask": 0.02, "mask_incorrect": 0.01}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """20 s at 10 fps of a still scene (the faces come from the injected detections)."""
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg binary")
    return write_clip([background()] * 200, tmp_path_factory.mktemp("clip") / "long.mp4", fps=10)


#: The people step in only once this is set: a test listening to SSE first subscribes, then lets them in (else the
#: event could start, on a loaded machine, before the listener's connection is up, and the test would wait in vain).
PEOPLE_IN = threading.Event()


def infer(items):
    """Every frame: a person without a mask (raises an event) and one with a mask (a bystander)."""
    out = []
    for _camera, _image in items:
        if not PEOPLE_IN.is_set():
            out.append([])
            continue
        out.append([
            Face(box=np.array([100, 100, 180, 200], np.float32), label="without_mask", score=0.96, probs=WITHOUT, face_score=0.9),
            Face(box=np.array([400, 100, 480, 200], np.float32), label="with_mask", score=0.97, probs=WITH, face_score=0.9),
        ])  # fmt: skip
    return out


@pytest.fixture
def service(long_clip: Path, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    port = free_port()
    config = parse_config(
        {"node": "n1", "cameras": {"cam": {"source": str(long_clip)}}, "store": f"sqlite:///{tmp_path / 'e.db'}",
         "snapshots": {"dir": str(tmp_path / "snaps")}, "events": {"cooldown_s": 30},
         "http": {"port": port, "token": TOKEN}}
    )  # fmt: skip
    running = Service(config, infer=infer)
    PEOPLE_IN.clear()
    try:
        yield running, f"http://127.0.0.1:{port}"
    finally:
        PEOPLE_IN.set()
        running.shutdown()


def test_a_running_service_serves_live_view_events_readiness_and_metrics(service):
    running, url = service
    headers = {"authorization": f"Bearer {TOKEN}"}
    started: list[dict] = []

    def listen() -> None:
        with httpx.stream("GET", f"{url}/api/events/stream", headers=headers, timeout=30) as response:
            for message in sse_messages(response.iter_lines()):
                if message.get("event") == "start":
                    started.append(message["data"])
                    return

    running.start()
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert wait_for(lambda: running.hub.subscribers == 1, 20), "the SSE listener did not connect"
    PEOPLE_IN.set()
    assert wait_for(lambda: bool(started), 20), "no SSE start from the running service"
    event = started[0]
    assert event["camera"] == "cam" and event["label"] == "without_mask" and event["node"] == "n1"
    stored = httpx.get(f"{url}/api/events/{event['id']}", headers=headers).json()
    assert stored["id"] == event["id"]  # SSE says "start" once the row is stored
    latest = httpx.get(f"{url}/api/cameras/cam/latest.jpg", headers=headers)
    assert latest.status_code == 200 and latest.content[:3] == b"\xff\xd8\xff"
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = httpx.get(f"{url}/metrics", headers=headers).text
    assert 'maskwatch_camera_online{camera="cam"} 1.0' in metrics
    assert 'maskwatch_faces_total{camera="cam",label="with_mask"}' in metrics
    assert 'maskwatch_events_total{type="new"} 1.0' in metrics
    assert 'maskwatch_inference_seconds_count{path="worker"}' in metrics
    assert httpx.get(f"{url}/api/cameras", headers=headers).json()[0]["counts"]["people_seen"] == 2
    assert httpx.get(f"{url}/api/cameras").status_code == 401
    running.stop_event.set()
    running.shutdown()
    assert wait_for(lambda: not running._worker.is_alive(), 10)  # noqa: SLF001


runner = CliRunner()


def _config(tmp_path: Path, http: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(f"cameras: {{a: {{source: a.mp4}}}}\nstore: sqlite:///{tmp_path / 'e.db'}\nhttp: {http}\n")
    return path


def test_serve_refuses_a_network_address_without_a_token(tmp_path: Path):
    exposed = _config(tmp_path, "{host: 0.0.0.0, port: 5000}")
    result = runner.invoke(cli_app, ["serve", "--config", str(exposed), "--check"], env={"MASKWATCH_TOKEN": ""})
    assert result.exit_code == 2
    assert "http.host '0.0.0.0' without a token" in result.output and "--insecure" in result.output
    assert runner.invoke(cli_app, ["serve", "--config", str(exposed), "--check", "--insecure"]).exit_code == 0
    with_flag = runner.invoke(cli_app, ["serve", "--config", str(exposed), "--check", "--token", TOKEN])
    assert with_flag.exit_code == 0 and TOKEN not in with_flag.output
    from_env = runner.invoke(cli_app, ["serve", "--config", str(exposed), "--check"], env={"MASKWATCH_TOKEN": TOKEN})
    assert from_env.exit_code == 0 and TOKEN not in from_env.output
    short = runner.invoke(cli_app, ["serve", "--config", str(exposed), "--check", "--token", "abc"])
    assert short.exit_code == 2 and "--token: must be at least 8 characters" in short.output and "abc'" not in short.output
    assert runner.invoke(cli_app, ["serve", "--config", str(_config(tmp_path, "{host: 127.0.0.1}")), "--check"]).exit_code == 0
    in_file = _config(tmp_path, "{host: 0.0.0.0, token: tiny}")
    result = runner.invoke(cli_app, ["serve", "--config", str(in_file), "--check"])
    assert result.exit_code == 2 and "http.token: must be at least 8 characters" in result.output and "tiny" not in result.output


def test_the_service_itself_refuses_too(tmp_path: Path):
    """Not only the CLI: a Service built in code with an exposed, unguarded API does not start."""
    config = parse_config({"cameras": {"a": {"source": "a.mp4"}}, "store": f"sqlite:///{tmp_path / 'e.db'}",
                           "http": {"host": "0.0.0.0", "port": free_port()}})  # fmt: skip
    with pytest.raises(RuntimeError, match="without a token"):
        Service(config).start()
