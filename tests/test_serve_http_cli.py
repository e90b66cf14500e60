"""The HTTP routes (TestClient on the real app and a real store), the serve/events commands and the config checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from tests.test_serve_store import make_event, write_all  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from maskwatch.cli import app as cli_app  # noqa: E402
from maskwatch.serve.config import ConfigError, load_config, parse_config  # noqa: E402
from maskwatch.serve.events import EventMessage  # noqa: E402
from maskwatch.serve.http import create_app  # noqa: E402
from maskwatch.serve.store import Store  # noqa: E402

runner = CliRunner()
CAMERAS = [
    {
        "name": "door",
        "status": "online",
        "reason": None,
        "fps": 9.8,
        "last_frame_time": "2026-11-30T05:00:00.000Z",
        "counts": {"people_seen": 3, "compliant": 2, "non_compliant": 1},
    },
    {"name": "hall", "status": "offline", "reason": "end of file", "fps": 0.0, "last_frame_time": None, "counts": {
        "people_seen": 0, "compliant": 0, "non_compliant": 0}},
]  # fmt: skip


@pytest.fixture
def stored(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'e.db'}").open()
    image = np.full((120, 160, 3), 200, np.uint8)
    write_all(
        store,
        [
            EventMessage("new", make_event(1), image, None),
            EventMessage("new", make_event(2, camera="hall", label="mask_incorrect")),
            EventMessage("new", make_event(3, node="node-b"), image, None),
        ],
        tmp_path=tmp_path,
    )
    return store


@pytest.fixture
def client(stored: Store) -> TestClient:
    return TestClient(create_app(stored, lambda: CAMERAS, node="node-a"))


def test_healthz_and_cameras(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok", "node": "node-a"}
    assert client.get("/api/cameras").json() == CAMERAS


def test_events_route_filters_newest_first(client: TestClient):
    body = client.get("/api/events").json()
    assert [e["id"] for e in body] == ["door-0003", "hall-0002", "door-0001"]
    assert set(body[0]) == {"id", "camera", "track_id", "label", "score", "start_time", "end_time", "box", "snapshot", "node"}
    assert [e["id"] for e in client.get("/api/events", params={"camera": "hall"}).json()] == ["hall-0002"]
    assert [e["id"] for e in client.get("/api/events", params={"label": "mask_incorrect"}).json()] == ["hall-0002"]
    assert [e["id"] for e in client.get("/api/events", params={"since": "2026-05-28T20:26:42Z"}).json()] == [
        "door-0003",
        "hall-0002",
    ]
    assert len(client.get("/api/events", params={"limit": 1}).json()) == 1
    assert client.get("/api/events", params={"limit": 0}).status_code == 422
    assert client.get("/api/events", params={"since": "yesterday"}).status_code == 422


def test_snapshot_route_serves_this_nodes_files_and_names_the_other_node(client: TestClient):
    response = client.get("/api/events/door-0001/snapshot.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    assert client.get("/api/events/hall-0002/snapshot.jpg").status_code == 404  # stored without a snapshot
    other = client.get("/api/events/door-0003/snapshot.jpg")
    assert other.status_code == 404 and "node-b" in other.json()["detail"]
    assert client.get("/api/events/nope/snapshot.jpg").status_code == 404


def test_events_command_lists_json_lines_and_filters(stored: Store):
    result = runner.invoke(cli_app, ["events", "--store", stored.url, "--json", "--camera", "door"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["door-0003", "door-0001"] and rows[1]["snapshot"].endswith("door-0001.jpg")
    result = runner.invoke(cli_app, ["events", "--store", stored.url, "--label", "incorrect", "--since", "2026-05-28"])
    assert result.exit_code == 0 and "hall-0002" in result.stdout and "door-0001" not in result.stdout
    bad = runner.invoke(cli_app, ["events", "--store", stored.url, "--since", "soon"])
    assert bad.exit_code == 2
    missing = runner.invoke(cli_app, ["events", "--store", "sqlite:////nonexistent/x.db"])
    assert missing.exit_code == 2


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


def test_config_defaults_are_overridden_per_camera(tmp_path: Path):
    config = load_config(
        _config(
            tmp_path,
            "defaults: {detect_every: 2, max_fps: 5}\ncameras:\n  a: {source: a.mp4}\n  b: {source: b.mp4, max_fps: 12}\n",
        )
    )
    a, b = config.resolved_cameras()
    assert (a.detect_every, a.max_fps, b.detect_every, b.max_fps) == (2, 5, 2, 12)
    assert config.store == "sqlite:///maskwatch.db" and config.snapshots.blur == "others" and config.mqtt is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cameras: {a: {source: x, detct_every: 2}}", "cameras.a.detct_every: unknown key (did you mean 'detect_every'?)"),
        ("cameras: {a: {source: x, max_fps: 0}}", "cameras.a.max_fps: Input should be greater than 0 (got 0)"),
        ("cameras: {a: {source: x}}\nsnapshots: {blur: faces}", "snapshots.blur: Input should be 'others', 'all' or 'none'"),
        ("cameras: {a: {source: x}}\nmqtt: {hots: h}", "mqtt.hots: unknown key (did you mean 'host'?)"),
        ("cameras: {a: {source: x}}\nwebhooks: [{url: ftp://x}]", "webhooks.0.url: must start with http:// or https://"),
        (
            "cameras: {a: {source: x}}\nwebhooks: [{url: 'http://x', retires: 2}]",
            "webhooks.0.retires: unknown key (did you mean 'retries'?)",
        ),
        ("cameras: {a: {source: x}}\nevents: {labels: [bogus]}", "unknown label 'bogus'"),
        ("cameras: {}", "cameras: needs at least one camera"),
        ("cameras: {a/b: {source: x}}", "may not contain '/'"),
        ("camras: {a: {source: x}}", "camras: unknown key (did you mean 'cameras'?)"),
        ("cameras: [", "not valid YAML at line"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(tmp_path: Path, text: str, expected: str):
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, text))
    message = str(caught.value)
    assert expected in message and "\n" not in message and message.startswith(str(tmp_path))


def test_serve_check_validates_and_exits(tmp_path: Path):
    good = _config(tmp_path, "cameras: {a: {source: a.mp4}}\n")
    result = runner.invoke(cli_app, ["serve", "--config", str(good), "--check"])
    assert result.exit_code == 0 and "ok (1 camera(s): a" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: {a: {source: a.mp4, detect_every: -1}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "maskwatch.cli", "serve", "--config", str(bad), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2  # 2: nothing could run
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"ERROR {bad}: cameras.a.detect_every: Input should be greater than or equal to 1 (got -1)"
    ]


def test_unreachable_store_at_start_is_one_error_line(tmp_path: Path):
    config = _config(tmp_path, "cameras: {a: {source: a.mp4}}\nstore: postgresql://postgres@127.0.0.1:1/x\nhttp: {port: 0}\n")
    result = subprocess.run(
        [sys.executable, "-m", "maskwatch.cli", "serve", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2  # 2: nothing could run
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "cannot open" in errors[0] and "127.0.0.1:1" in errors[0]


def test_http_port_in_use_is_one_error_line(tmp_path: Path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        config = _config(
            tmp_path, f"cameras: {{a: {{source: a.mp4}}}}\nstore: sqlite:///{tmp_path / 'e.db'}\nhttp: {{port: {port}}}\n"
        )
        result = subprocess.run(
            [sys.executable, "-m", "maskwatch.cli", "serve", "--config", str(config)], capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 2  # 2: nothing could run
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "rror" in line]
    assert errors == [f"ERROR http: cannot listen on 127.0.0.1:{port} (Address already in use)"], result.stderr


BLOCK_SERVE_DEPS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'fastapi', 'sqlalchemy', 'paho', 'uvicorn'}:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in {'fastapi', 'sqlalchemy', 'paho', 'uvicorn'} else _find(n, *a)
from maskwatch.cli import app
sys.argv = ['maskwatch'] + sys.argv[1:]
app()
"""


def test_without_the_serve_extra_serve_names_the_install_command(tmp_path: Path):
    config = _config(tmp_path, "cameras: {a: {source: a.mp4}}\n")
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_SERVE_DEPS, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'pip install "maskwatch[serve]"' in lines[0] and "fastapi" in lines[0]


def test_the_runtime_and_detect_never_import_the_service():
    code = (
        "import sys, maskwatch.cli, maskwatch.runtime.pipeline, maskwatch.runtime.stream\n"
        "bad = [m for m in ('maskwatch.serve', 'fastapi', 'sqlalchemy', 'paho', 'uvicorn', 'starlette') if m in sys.modules]\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_parse_config_rejects_a_non_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["cameras"])


def test_the_readme_config_example_is_valid():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Monitor cameras", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    import yaml

    config = parse_config(yaml.safe_load(block), "README")
    assert [c.name for c in config.resolved_cameras()] == ["door", "hall", "test"]
    assert config.resolved_cameras()[1].detect_every == 2 and config.mqtt.topic_prefix == "maskwatch/shop-1"
