"""``POST /api/detect`` through the real app: its result is a ``maskwatch detect --json`` line, and each limit holds
(413 by Content-Length and while streaming, 415 by the bytes, 422 undecodable or too many pixels, 429 at the cap)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402
from tests.api_support import FakePipeline, build_app, png_bytes  # noqa: E402
from tests.serve_support import free_port, wait_for  # noqa: E402

from maskwatch.serve.api import ServiceHooks  # noqa: E402
from maskwatch.serve.api.detect import DetectPool  # noqa: E402
from maskwatch.serve.store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'e.db'}").open()


@pytest.fixture
def client(store: Store) -> TestClient:
    return TestClient(build_app(store, max_upload_bytes=4096))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixels never follow: a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_an_upload_gives_the_detect_line_with_the_file_name_as_source(client: TestClient):
    response = client.post("/api/detect", files={"file": ("shop door.png", png_bytes(64, 48), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "source": "shop door.png", "frame": 0, "width": 64, "height": 48,
        "faces": [{"box": [16.0, 12.0, 32.0, 24.0], "label": "with_mask", "score": 0.9, "face_score": 0.8,
                   "probs": {"with_mask": 0.9, "without_mask": 0.05, "mask_incorrect": 0.05}}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("files", "status", "detail"),
    [
        ({"file": ("notes.txt", b"hello, not an image\n" * 4)}, 415, "notes.txt: not a JPEG, PNG, BMP, WebP or TIFF image"),
        ({"file": ("fake.png", b"GIF89a" + b"\0" * 64)}, 415, "fake.png: not a JPEG"),  # the name does not count
        ({"file": ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 600)}, 422, "broken.jpg: "),
        ({"file": ("bomb.png", png_header(10_000, 10_000))}, 422, "bomb.png: 10000x10000 is over the 50,000,000-pixel limit"),
        ({"file": ("empty.png", b"")}, 415, "empty.png: not a JPEG"),
        ({"image": ("a.png", png_bytes())}, 422, "missing the form field 'file'"),
        ({"file": (None, "just text")}, 422, "missing the form field 'file'"),
    ],
)
def test_uploads_refused_with_a_json_reason(client: TestClient, files: dict, status: int, detail: str):
    response = client.post("/api/detect", files=files)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json" and response.json()["detail"].startswith(detail)


def test_not_multipart_and_malformed_multipart(client: TestClient):
    as_json = client.post("/api/detect", json={"file": "x"})
    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["detail"]
    raw = client.post("/api/detect", content=png_bytes(), headers={"content-type": "image/png"})
    assert raw.status_code == 415
    no_boundary = client.post("/api/detect", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert no_boundary.status_code == 422 and no_boundary.json()["detail"].startswith("malformed multipart")
    cut = client.post(
        "/api/detect", content=b"--b\r\nContent-Disposition: form-da", headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert cut.status_code == 422


def test_too_big_by_content_length_and_while_streaming(client: TestClient):
    big = client.post("/api/detect", files={"file": ("big.png", png_bytes() + b"\0" * 5000)})
    assert big.status_code == 413 and "over the 4,096-byte limit" in big.json()["detail"]

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(10):
            yield b"\0" * 1024

    streamed = client.post("/api/detect", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert "content-length" not in streamed.request.headers  # chunked: only counting can stop it
    assert streamed.status_code == 413 and "http.max_upload_bytes" in streamed.json()["detail"]


def read_response(sock: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head.decode("latin-1"), body


def test_the_body_is_cut_off_while_it_streams_on_a_real_server(store: Store):
    """Over a socket: the 413 comes back after ~5 KB of a body that would be 1 MB, so the rest is never read."""
    from maskwatch.serve.http import HttpServer

    port = free_port()
    server = HttpServer(build_app(store, max_upload_bytes=4096), "127.0.0.1", port).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = (
                "POST /api/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            )
            sock.sendall(head.encode())
            # a well-formed start of a file part, so the multipart parser keeps reading what follows (garbage from
            # the first byte could be refused as malformed before the limit, depending on how the chunks arrive)
            part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            for _ in range(5):
                sock.sendall(b"400\r\n" + b"\xff" * 1024 + b"\r\n")
            head, body = read_response(sock)  # would time out if the server waited for the whole body
        assert head.startswith("HTTP/1.1 413"), head
        assert json.loads(body)["detail"].startswith("request body is over the 4,096-byte limit")
    finally:
        server.stop()


def test_a_stalled_upload_gets_408_and_frees_its_place(store: Store):
    """A body that stops arriving (slow client or slowloris) is cut off after http.upload_timeout_s, on a real server."""
    from maskwatch.serve.http import HttpServer

    port = free_port()
    app = build_app(store, upload_timeout_s=1)
    server = HttpServer(app, "127.0.0.1", port).start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            head = "POST /api/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n"
            sock.sendall(head.encode() + b"--b\r\n")  # ... and nothing more
            status, body = read_response(sock)
        assert status.startswith("HTTP/1.1 408") and json.loads(body)["detail"] == "the upload did not arrive within 1 s"
        receiving, detecting = app.state.detect_admission
        assert receiving.busy == 0 and detecting.busy == 0
    finally:
        server.stop()


def test_calls_past_the_cap_get_429_with_retry_after(store: Store):
    gate, entered = threading.Event(), threading.Event()
    hooks = ServiceHooks(pipeline=lambda: FakePipeline(gate, entered))
    app = build_app(store, hooks=hooks, max_concurrent_detect=1)
    first: dict = {}
    worker = threading.Thread(
        target=lambda: first.update(r=TestClient(app).post("/api/detect", files={"file": ("a.png", png_bytes())}))
    )
    worker.start()
    try:
        assert entered.wait(10)  # the first call is inside the pipeline, holding the only slot
        busy = TestClient(app).post("/api/detect", files={"file": ("b.png", png_bytes())})
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert "http.max_concurrent_detect" in busy.json()["detail"]
    finally:
        gate.set()
        worker.join(10)
    assert first["r"].status_code == 200
    assert TestClient(app).post("/api/detect", files={"file": ("c.png", png_bytes())}).status_code == 200  # slot free again


def test_a_pipeline_that_cannot_be_built_is_503_and_retried_next_call(store: Store):
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("model file missing")
        return FakePipeline()

    client = TestClient(build_app(store, hooks=ServiceHooks(pipeline=factory)))
    failed = client.post("/api/detect", files={"file": ("a.png", png_bytes())})
    assert failed.status_code == 503 and "model file missing" in failed.json()["detail"]
    assert client.post("/api/detect", files={"file": ("a.png", png_bytes())}).status_code == 200


def test_detect_pool_gives_each_concurrent_call_its_own_pipeline():
    """The service's worker never shares a pipeline with uploads, and two uploads never share one either."""
    import numpy as np

    users: dict[int, int] = {}
    overlap = []
    lock, both_in = threading.Lock(), threading.Barrier(2)

    class Recording(FakePipeline):
        def __call__(self, image, *, source="<array>", frame=0):
            with lock:
                users[id(self)] = users.get(id(self), 0) + 1
                overlap.append(users[id(self)] > 1)
            both_in.wait(5)
            with lock:
                users[id(self)] -= 1
            return super().__call__(image, source=source, frame=frame)

    pool = DetectPool(Recording, size=2)
    image = np.zeros((10, 10, 3), np.uint8)
    threads = [threading.Thread(target=pool, args=(image, f"{i}.png")) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert pool._made == 2 and overlap == [False, False]  # noqa: SLF001


@pytest.mark.slow
def test_the_real_pipeline_answers_exactly_as_detect_json_does(store: Store, tmp_path: Path):
    """The shipped sample through ``maskwatch detect --json`` and through the API: the same line but for ``source``."""
    from typer.testing import CliRunner

    from maskwatch.cli import app as cli_app
    from maskwatch.runtime.assets import SAMPLE_IMAGE, asset_path

    sample = asset_path(SAMPLE_IMAGE)
    out = tmp_path / "d.jsonl"
    result = CliRunner().invoke(cli_app, ["detect", str(sample), "--json", str(out)])
    assert result.exit_code == 0, result.output
    expected = json.loads(out.read_text().splitlines()[0])
    client = TestClient(build_app(store, hooks=ServiceHooks()))  # the default pipeline: detect's own
    response = client.post("/api/detect", files={"file": ("astronaut.jpg", sample.read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert response.json() == {**expected, "source": "astronaut.jpg"} and expected["faces"]


def test_a_client_that_goes_mid_upload_frees_its_place_without_an_error_log(store: Store, caplog):
    """A dropped upload is the client's doing, not a server error: its place is freed and no traceback is logged."""
    import logging

    from maskwatch.serve.http import HttpServer

    caplog.set_level(logging.WARNING)
    port = free_port()
    app = build_app(store)
    server = HttpServer(app, "127.0.0.1", port).start()
    receiving, _detecting = app.state.detect_admission
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = "POST /api/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n"
            sock.sendall(head.encode() + b"--b\r\n")
            assert wait_for(lambda: receiving.busy == 1, 5)
        assert wait_for(lambda: receiving.busy == 0, 5)
    finally:
        server.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
