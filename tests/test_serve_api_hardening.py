"""Auth and login hardening found in review: bounded login bodies, failed-guess limits that a client cannot dodge,
the login page under a reverse-proxy path prefix with a safe ``next=``, and what the page can ask about auth."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402
from tests import serve_support  # noqa: E402
from tests.api_support import TOKEN, build_app  # noqa: E402

from maskwatch.serve.store import Store  # noqa: E402


def guarded_app(tmp_path: Path, **http):
    """The real app with a token, on an empty SQLite store of its own."""
    return build_app(Store(f"sqlite:///{tmp_path / 'e.db'}").open(), token=TOKEN, **http)


@pytest.fixture
def guarded(tmp_path: Path) -> TestClient:
    return TestClient(guarded_app(tmp_path))


def test_the_public_login_never_reads_a_big_body_whole(guarded: TestClient):
    big = b'{"token": "' + b"x" * 200_000 + b'"}'
    declared = guarded.post("/api/login", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "limit" in declared.json()["detail"]

    def chunks():  # no Content-Length: the count must cut it while it streams
        yield b'{"token": "'
        for _ in range(100):
            yield b"x" * 10_000
        yield b'"}'

    streamed = guarded.post("/api/login", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert guarded.post("/api/login", json={"token": TOKEN}).status_code == 200  # a normal login still works


def test_behind_a_proxy_the_client_is_the_address_the_proxy_appended(tmp_path: Path):
    """nginx's ``$proxy_add_x_forwarded_for`` appends the real peer to whatever the client sent: only the last entry
    is the proxy's word, so a client that varies the first cannot dodge the failed-login count."""
    proxied = TestClient(guarded_app(tmp_path, trust_proxy=True))
    for n in range(10):
        proxied.post("/api/login", json={"token": "nope-nope"}, headers={"x-forwarded-for": f"10.9.9.{n}, 203.0.113.7"})
    limited = proxied.post("/api/login", json={"token": TOKEN}, headers={"x-forwarded-for": "10.9.9.99, 203.0.113.7"})
    assert limited.status_code == 429
    other = proxied.post("/api/login", json={"token": TOKEN}, headers={"x-forwarded-for": "10.9.9.0, 203.0.113.8"})
    assert other.status_code == 200


def test_bearer_guesses_are_limited_like_logins_and_sessions_go_on(guarded: TestClient):
    """Without a limit on wrong ``Authorization: Bearer`` tokens the login's limit would be no limit at all."""
    assert guarded.post("/api/login", json={"token": TOKEN}).status_code == 200  # a browser of the same client
    for n in range(10):
        assert guarded.get("/api/events", headers={"authorization": f"Bearer guess-{n}"}).status_code == 401
    limited = guarded.get("/api/events", headers={"authorization": f"Bearer {TOKEN}"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert "too many" in limited.json()["detail"]
    assert guarded.post("/api/login", json={"token": TOKEN}).status_code == 429  # one count for both ways in
    assert guarded.get("/api/events").status_code == 200  # the session cookie is no guess: it goes on


# -- the login page under a reverse-proxy path prefix, with a safe next= --

ABSOLUTE = re.compile(r'(?:href|src|action)="/')


def test_the_login_page_uses_relative_urls_so_a_path_prefix_works(guarded: TestClient):
    """Served at PREFIX/login the page must load PREFIX/static/login.css and post to PREFIX/api/login; after a wrong
    token it is served at PREFIX/api/login, one level down."""
    page = guarded.get("/login").text
    assert not ABSOLUTE.search(page) and 'href="static/login.css"' in page and 'action="api/login"' in page
    wrong = guarded.post("/api/login", data={"token": "not-the-token"})
    assert wrong.status_code == 401 and "Wrong token." in wrong.text and not ABSOLUTE.search(wrong.text)
    assert 'href="../static/login.css"' in wrong.text and 'action="../api/login"' in wrong.text
    right = guarded.post("/api/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "../"  # PREFIX/api/login -> PREFIX/
    browser = TestClient(guarded.app)  # not logged in: a page navigation goes to the login page next to it
    assert browser.get("/", headers={"accept": "text/html"}, follow_redirects=False).headers["location"] == "login"
    docs = browser.get("/docs", headers={"accept": "text/html"}, follow_redirects=False)
    assert docs.status_code == 303 and docs.headers["location"] == "login?next=docs"


def test_next_is_honoured_when_it_is_a_relative_path_and_ignored_otherwise(guarded: TestClient):
    page = guarded.get("/login", params={"next": "docs"}).text
    assert '<input type="hidden" name="next" value="docs">' in page
    done = guarded.post("/api/login", data={"token": TOKEN, "next": "docs"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "../docs"
    for bad in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "\\\\evil.example", "javascript:alert(1)",
                "../../etc", "a/../../b", "/docs", "docs\r\nSet-Cookie: x=1", "%2f%2fevil.example", "x" * 600):  # fmt: skip
        assert 'name="next"' not in guarded.get("/login", params={"next": bad}).text, bad
        response = TestClient(guarded.app).post("/api/login", data={"token": TOKEN, "next": bad}, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "../", bad
    quoted = guarded.get("/login", params={"next": 'docs?"><script>'}).text
    assert "<script>" not in quoted


def test_the_page_can_ask_whether_auth_is_on_and_how_it_got_in(tmp_path: Path):
    open_app = TestClient(build_app(Store(f"sqlite:///{tmp_path / 'o.db'}").open()))
    assert open_app.get("/api/session").json() == {"auth": False, "via": "none"}
    assert open_app.get("/login", follow_redirects=False).headers["location"] == "./"  # nothing to log in to
    guarded = TestClient(guarded_app(tmp_path))
    assert guarded.get("/api/session").status_code == 401
    bearer = guarded.get("/api/session", headers={"authorization": f"Bearer {TOKEN}"})
    assert bearer.json() == {"auth": True, "via": "token"}
    guarded.post("/api/login", json={"token": TOKEN})
    assert guarded.get("/api/session").json() == {"auth": True, "via": "session"}


def test_a_websocket_route_added_later_cannot_forget_auth(tmp_path: Path):
    """The middleware guards every path; a websocket (its own ASGI scope type) must not slip past it."""
    app = guarded_app(tmp_path)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app.add_api_websocket_route("/api/live", echo)
    client = TestClient(app)
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/live") as socket:
        socket.receive_text()
    assert refused.value.code == 1008
    with client.websocket_connect("/api/live", headers={"authorization": f"Bearer {TOKEN}"}) as socket:
        assert socket.receive_text() == "hello"


# -- text parameters that SQLite takes and PostgreSQL refuses --

postgres_url = serve_support.postgres_url  # fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store(url).open()
    yield store
    store.close()


def test_a_nul_or_control_character_in_a_parameter_is_a_4xx_on_every_store(any_store: Store):
    """PostgreSQL refuses NUL in text (a DataError, so a 500): the API refuses it first, whatever the store."""
    client = TestClient(build_app(any_store), raise_server_exceptions=False)
    for path in ("/api/events?camera=%00", "/api/events?camera=a%00b&label=nomask", "/api/stats?camera=%00"):
        response = client.get(path)
        assert response.status_code == 422 and response.json()["detail"].startswith("camera:"), (path, response.text)
    for path in ("/api/events/%00", "/api/events/a%00b/snapshot.jpg", "/api/events/a%0Ab"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["detail"].startswith("no event"), (path, response.text)


def test_a_basic_auth_header_from_a_proxy_in_front_is_neither_a_guess_nor_a_csrf_pass(guarded: TestClient):
    """nginx with ``auth_basic`` in front passes the browser's ``Authorization: Basic`` on: it is not a token attempt
    (the session cookie decides, no lockout) and, being sent by the browser on its own, no exemption from CSRF."""
    basic = {"authorization": "Basic dXNlcjpwYXNz"}
    assert guarded.get("/api/events", headers=basic).status_code == 401  # no session yet
    login = guarded.post("/api/login", json={"token": TOKEN}, headers=basic)
    assert login.status_code == 200
    for _ in range(12):
        assert guarded.get("/api/events", headers=basic).status_code == 200
    assert guarded.get("/api/session", headers=basic).json() == {"auth": True, "via": "session"}
    refused = guarded.post("/api/logout", headers=basic)
    assert refused.status_code == 403 and "x-csrf-token" in refused.json()["detail"]
    assert guarded.post("/api/logout", headers={**basic, "x-csrf-token": login.json()["csrf"]}).status_code == 204


# -- privacy: a pixelated face stays unrecognisable however close it is to the camera --


def test_a_large_face_is_pixelated_into_a_few_blocks_not_size_over_8():
    """Blocks of a fixed 8 pixels leave a 480-pixel close-up face as a 60x60 picture of itself (recognisable):
    the live view and snapshots must cut every face to a few blocks across."""
    from maskwatch.draw import MAX_BLOCKS, blur_faces
    from maskwatch.serve.snapshots import privacy_image

    yy, xx = np.mgrid[0:600, 0:800]
    image = np.stack([(xx * 7 + yy * 3) % 256, (xx * 5) % 256, (yy * 11) % 256], axis=-1).astype(np.uint8)
    for box, hidden in (((100, 50, 580, 530), True), ((20, 20, 36, 40), True)):
        out = privacy_image(image, np.array([box], np.float32), (700, 500, 760, 560), "all")
        x1, y1, x2, y2 = box
        region = out[y1:y2, x1:x2]
        blocks_across = len(np.unique(region[region.shape[0] // 2, :, 0]))
        blocks_down = len(np.unique(region[:, region.shape[1] // 2, 0]))
        assert hidden and 1 <= blocks_across <= MAX_BLOCKS and 1 <= blocks_down <= MAX_BLOCKS, (box, blocks_across)
    tiny = blur_faces(image, [type("F", (), {"box": np.array([10, 10, 11, 11], np.float32)})()])
    assert np.array_equal(tiny, image)  # under 2 pixels: nothing to hide


def test_a_login_body_that_never_arrives_gets_408_on_a_real_server(tmp_path: Path):
    """The login is open to anyone: a body trickled (or never sent) must not hold a connection and a task for ever."""
    import json
    import socket

    from tests.test_serve_api_detect import read_response

    from maskwatch.serve.http import HttpServer

    port = serve_support.free_port()
    server = HttpServer(guarded_app(tmp_path, upload_timeout_s=1), "127.0.0.1", port).start()
    try:
        for kind in ("application/json", "application/x-www-form-urlencoded"):
            with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                sock.sendall(
                    f"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nContent-Type: {kind}\r\n\r\n".encode()
                )
                sock.sendall(b'{"tok' if kind.endswith("json") else b"tok")  # ... and nothing more
                status, body = read_response(sock)
            assert status.startswith("HTTP/1.1 408"), (kind, status)
            assert json.loads(body)["detail"] == "the login did not arrive within 1 s"
    finally:
        server.stop()
