"""The HTTP API's routes through the real app (TestClient) on real SQLite: events, stats, live view, probes, metrics,
pages, and every auth refusal (no token, wrong token, cookie without the CSRF header, after logout)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402
from tests.api_support import (  # noqa: E402
    BYSTANDER_BOX,
    CAMERAS,
    EVENT_BOX,
    TOKEN,
    FakeLive,
    FakePipeline,
    build_app,
    static_with_index,
    stats_metrics,
)
from tests.test_serve_store import T0, make_event, write_all  # noqa: E402

from maskwatch.serve.api import ServiceHooks  # noqa: E402
from maskwatch.serve.events import CountDelta, EventMessage  # noqa: E402
from maskwatch.serve.store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'e.db'}").open()
    image = np.full((120, 160, 3), 200, np.uint8)
    messages = [
        EventMessage("new", make_event(1), image, None),
        EventMessage("new", make_event(2, camera="hall", label="mask_incorrect")),
        EventMessage("new", make_event(3)),
    ]
    deltas = [
        CountDelta("door", "2026-05-28T20:00:00Z", 3, 2, 1),
        CountDelta("door", "2026-05-28T21:00:00Z", 1, 0, 1),
        CountDelta("hall", "2026-05-28T20:00:00Z", 2, 2, 0),
    ]
    write_all(store, messages, deltas, tmp_path=tmp_path)
    with store.engine.begin() as conn:  # a second node's counts for the same camera-hour are summed
        store.add_counts(conn, CountDelta("door", "2026-05-28T20:00:00Z", 1, 1, 0), "node-b")
    return store


@pytest.fixture
def client(store: Store) -> TestClient:
    return TestClient(build_app(store))


def test_event_by_id_and_the_until_filter(client: TestClient):
    assert client.get("/api/events/door-0001").json()["label"] == "without_mask"
    missing = client.get("/api/events/nope")
    assert missing.status_code == 404 and missing.json() == {"detail": "no event 'nope'"}
    until = client.get("/api/events", params={"until": T0 + 3}).json()  # exclusive: door-0003 started at T0 + 3
    assert [e["id"] for e in until] == ["hall-0002", "door-0001"]
    window = client.get("/api/events", params={"since": T0 + 2, "until": "2026-05-28T20:26:43Z", "camera": "hall"})
    assert [e["id"] for e in window.json()] == ["hall-0002"]
    assert [e["id"] for e in client.get("/api/events", params={"label": "incorrect"}).json()] == ["hall-0002"]  # alias


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"label": "hat"}, "label: 'hat' is not one of with_mask, without_mask, mask_incorrect"),
        ({"until": "tomorrow"}, "until: 'tomorrow' is not an ISO 8601 time"),
        ({"since": "1e300"}, "since: '1e300' is not an ISO 8601 time"),
        ({"since": "nan"}, "since: 'nan'"),
        ({"limit": "many"}, "limit:"),
        ({"limit": 0}, "limit:"),
    ],
)
def test_malformed_event_queries_are_422_naming_the_parameter(client: TestClient, params: dict, detail: str):
    response = client.get("/api/events", params=params)
    assert response.status_code == 422 and isinstance(response.json()["detail"], str)
    assert response.json()["detail"].startswith(detail), response.json()


def test_stats_sum_nodes_per_camera_hour_and_filter(client: TestClient):
    rows = client.get("/api/stats").json()
    assert rows == [
        {"camera": "door", "hour": "2026-05-28T20:00:00Z", "people_seen": 4, "compliant": 3, "non_compliant": 1},
        {"camera": "hall", "hour": "2026-05-28T20:00:00Z", "people_seen": 2, "compliant": 2, "non_compliant": 0},
        {"camera": "door", "hour": "2026-05-28T21:00:00Z", "people_seen": 1, "compliant": 0, "non_compliant": 1},
    ]
    later = client.get("/api/stats", params={"camera": "door", "since": "2026-05-28T21:30:00Z"}).json()
    assert [r["hour"] for r in later] == ["2026-05-28T21:00:00Z"]  # since takes the hour that holds it
    earlier = client.get("/api/stats", params={"until": "2026-05-28T20:30:00Z"}).json()
    assert {r["hour"] for r in earlier} == {"2026-05-28T20:00:00Z"}  # the 20:00 hour starts before 20:30
    assert client.get("/api/stats", params={"until": "2026-05-28T20:00:00Z"}).json() == []
    day = client.get("/api/stats", params={"bucket": "day", "camera": "door"}).json()
    assert day == [{"camera": "door", "hour": "2026-05-28T00:00:00Z", "people_seen": 5, "compliant": 3, "non_compliant": 2}]
    assert client.get("/api/stats", params={"bucket": "week"}).status_code == 422


def _texture(image: np.ndarray, box) -> float:
    """Spread of the pixels inside the middle of ``box``: high for the checker, near 0 once pixelated."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) // 4, (y2 - y1) // 4
    return float(image[y1 + dy : y2 - dy, x1 + dx : x2 - dx].std())


@pytest.mark.parametrize(
    ("blur", "event_face", "bystander"), [("others", True, False), ("all", False, False), ("none", True, True)]
)
def test_latest_jpg_pixelates_faces_as_snapshots_blur_says(store: Store, blur: str, event_face: bool, bystander: bool):
    from maskwatch.serve.api import create_app
    from maskwatch.serve.config import HttpConfig

    app = create_app(
        store, lambda: CAMERAS, node="n", http=HttpConfig(jpeg_quality=95), blur=blur, hooks=ServiceHooks(live=FakeLive())
    )
    response = TestClient(app).get("/api/cameras/door/latest.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (240, 320)
    assert (_texture(image, EVENT_BOX) > 40) == event_face
    assert (_texture(image, BYSTANDER_BOX) > 40) == bystander


def test_latest_jpg_unknown_camera_and_no_frame_yet(client: TestClient):
    unknown = client.get("/api/cameras/garage/latest.jpg")
    assert unknown.status_code == 404 and "cameras: door, hall" in unknown.json()["detail"]
    waiting = client.get("/api/cameras/hall/latest.jpg")  # known, but FakeLive has no frame for it
    assert waiting.status_code == 503 and waiting.headers["retry-after"] == "2"
    assert client.get("/api/cameras/garage/stream").status_code == 404


def test_readyz_says_why_not_ready(store: Store, tmp_path: Path):
    assert TestClient(build_app(store, cameras=CAMERAS)).get("/readyz").json()["status"] == "ready"
    offline = [dict(CAMERAS[1]), {**CAMERAS[0], "status": "starting"}]
    response = TestClient(build_app(store, cameras=offline)).get("/readyz")
    assert response.status_code == 503
    assert response.json()["reasons"] == ["no camera online (hall: offline (end of file), door: starting)"]
    dead = ServiceHooks(live=FakeLive(), worker_alive=lambda: False)
    assert TestClient(build_app(store, hooks=dead)).get("/readyz").json()["reasons"] == ["worker not running"]
    unreachable = Store("postgresql://postgres@127.0.0.1:1/x", connect_timeout_s=1)
    body = TestClient(build_app(unreachable)).get("/readyz").json()
    assert body["status"] == "not ready" and "store unreachable" in body["reasons"]
    assert TestClient(build_app(unreachable)).get("/healthz").status_code == 200  # alive, just not ready


def test_metrics_are_prometheus_text_with_an_own_registry_per_app(store: Store):
    first = TestClient(build_app(store, hooks=ServiceHooks(metrics=stats_metrics(7), pipeline=FakePipeline)))
    second = TestClient(build_app(store, hooks=ServiceHooks(metrics=stats_metrics(9))))  # no "Duplicated timeseries"
    text = first.get("/metrics").text
    assert first.get("/metrics").headers["content-type"].startswith("text/plain")
    for line in (
        'maskwatch_frames_total{camera="door"} 7.0',
        'maskwatch_frames_skipped_total{camera="door"} 2.0',
        'maskwatch_fps{camera="door"} 9.5',
        'maskwatch_faces_total{camera="door",label="without_mask"} 4.0',
        'maskwatch_events_total{type="new"} 2.0',
        'maskwatch_dropped_total{queue="delivery"} 3.0',
        'maskwatch_dropped_total{queue="sse"} 0.0',
    ):
        assert line in text, line
    assert 'maskwatch_frames_total{camera="door"} 9.0' in second.get("/metrics").text
    from tests.api_support import png_bytes

    assert first.post("/api/detect", files={"file": ("a.png", png_bytes())}).status_code == 200
    assert 'maskwatch_inference_seconds_count{path="detect"} 1.0' in first.get("/metrics").text


def test_pages_index_placeholder_static_and_security_headers(store: Store, tmp_path: Path):
    bare = TestClient(build_app(store, hooks=ServiceHooks(static_dir=tmp_path / "empty")))
    placeholder = bare.get("/")
    assert placeholder.status_code == 404 and "index.html" in placeholder.text and "/docs" in placeholder.text
    folder = static_with_index(tmp_path / "static")
    client = TestClient(build_app(store, hooks=ServiceHooks(static_dir=folder)))
    page = client.get("/")
    assert page.status_code == 200 and "dashboard" in page.text and page.headers["content-type"].startswith("text/html")
    assert client.get("/static/app.js").text == "console.log('dash');"
    assert client.get("/static/../serve.yaml").status_code == 404
    assert (
        page.headers["x-content-type-options"] == "nosniff"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert client.get("/login", follow_redirects=False).headers["location"] == "./"  # no token: nothing to log in to
    assert client.post("/api/login", json={"token": "x" * 10}).status_code == 400


def test_openapi_document_lists_every_route(client: TestClient):
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {
        "/healthz", "/readyz", "/metrics", "/api/cameras", "/api/cameras/{name}/latest.jpg", "/api/cameras/{name}/stream",
        "/api/events", "/api/events/stream", "/api/events/{event_id}", "/api/events/{event_id}/snapshot.jpg",
        "/api/stats", "/api/detect", "/api/login", "/api/logout",
    } <= paths  # fmt: skip


def test_an_unexpected_error_is_json_without_a_traceback(store: Store):
    def broken() -> list[dict]:
        raise KeyError("boom")

    from maskwatch.serve.api import create_app

    client = TestClient(create_app(store, broken, node="n"), raise_server_exceptions=False)
    response = client.get("/api/cameras")
    assert response.status_code == 500 and response.json() == {"detail": "internal error (KeyError)"}


# -- auth --


@pytest.fixture
def guarded(store: Store, tmp_path: Path) -> TestClient:
    hooks = ServiceHooks(live=FakeLive(), pipeline=FakePipeline, static_dir=static_with_index(tmp_path / "static"))
    return TestClient(build_app(store, token=TOKEN, hooks=hooks))


def test_with_a_token_only_probes_and_the_login_page_are_open(guarded: TestClient):
    for path in ("/healthz", "/readyz", "/login", "/static/login.css"):
        assert guarded.get(path).status_code == 200, path
    for path in ("/api/cameras", "/api/events", "/api/events/door-0001", "/api/stats", "/metrics", "/openapi.json", "/docs",
                 "/static/app.js", "/api/cameras/door/latest.jpg", "/nonexistent"):  # fmt: skip
        response = guarded.get(path)
        assert response.status_code == 401, path
        assert response.json()["detail"].startswith("not logged in") and response.headers["www-authenticate"].startswith("Bearer")
    page = guarded.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "login"  # relative: a proxy's prefix stays
    login = guarded.get("/login")
    assert '<form method="post" action="api/login">' in login.text and 'name="token"' in login.text


def test_bearer_token_right_and_wrong(guarded: TestClient):
    assert guarded.get("/api/events", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    for value in (f"Bearer {TOKEN}x", "Bearer ", f"bearer {TOKEN[:-1]}"):
        response = guarded.get("/api/events", headers={"authorization": value})
        assert response.status_code == 401 and response.json()["detail"].startswith("wrong token"), value
    for value in (f"Basic {TOKEN}", TOKEN):  # not a Bearer token: as if absent (the message says what to send)
        response = guarded.get("/api/events", headers={"authorization": value})
        assert response.status_code == 401 and "Authorization: Bearer TOKEN" in response.json()["detail"], value
    # a Bearer call is no browser's ambient credential: state-changing requests need no CSRF header
    from tests.api_support import png_bytes

    ok = guarded.post("/api/detect", files={"file": ("a.png", png_bytes())}, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_login_cookies_csrf_and_logout(guarded: TestClient):
    assert guarded.post("/api/login", json={"token": "wrong-token"}).status_code == 401
    response = guarded.post("/api/login", json={"token": TOKEN})
    assert response.status_code == 200 and response.json()["ok"] is True
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    session, csrf = cookies["maskwatch_session"], cookies["maskwatch_csrf"]
    assert "HttpOnly" in session and "SameSite=strict" in session and "Secure" not in session  # plain http here
    assert "HttpOnly" not in csrf and "SameSite=strict" in csrf
    assert TOKEN not in session + csrf
    token = response.json()["csrf"]
    assert guarded.cookies["maskwatch_csrf"] == token
    assert guarded.get("/api/events").status_code == 200  # the cookie is enough for reads
    assert guarded.get("/", headers={"accept": "text/html"}).status_code == 200
    from tests.api_support import png_bytes

    files = {"file": ("a.png", png_bytes())}
    refused = guarded.post("/api/detect", files=files)
    assert refused.status_code == 403 and "x-csrf-token" in refused.json()["detail"]
    assert guarded.post("/api/detect", files=files, headers={"x-csrf-token": "forged"}).status_code == 403
    assert guarded.post("/api/detect", files=files, headers={"x-csrf-token": token}).status_code == 200
    assert guarded.post("/api/logout").status_code == 403  # logout is state-changing too
    out = guarded.post("/api/logout", headers={"x-csrf-token": token})
    assert out.status_code == 204 and all("Max-Age=0" in c for c in out.headers.get_list("set-cookie"))
    guarded.cookies.set("maskwatch_session", session.split(";")[0].split("=", 1)[1])  # replaying the old session
    assert guarded.get("/api/events").status_code == 401


def test_form_login_redirects_and_a_wrong_token_shows_the_form_again(guarded: TestClient):
    wrong = guarded.post("/api/login", data={"token": "not-the-token"})
    assert wrong.status_code == 401 and "Wrong token." in wrong.text and "<form" in wrong.text
    right = guarded.post("/api/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "../"  # from api/login to the page
    assert guarded.get("/api/cameras").status_code == 200
    assert guarded.post("/api/login", content=b"token=x", headers={"content-type": "text/plain"}).status_code == 415
    assert guarded.post("/api/login", json={"nope": 1}).status_code == 422
    assert guarded.post("/api/login", content=b"{", headers={"content-type": "application/json"}).status_code == 422


def test_secure_cookies_over_https_and_behind_a_trusted_proxy_only(store: Store):
    def session_cookie(client: TestClient, **headers) -> str:
        response = client.post("/api/login", json={"token": TOKEN}, headers=headers)
        return next(c for c in response.headers.get_list("set-cookie") if c.startswith("maskwatch_session="))

    assert "Secure" in session_cookie(TestClient(build_app(store, token=TOKEN), base_url="https://testserver"))
    direct = TestClient(build_app(store, token=TOKEN))
    assert "Secure" not in session_cookie(direct, **{"x-forwarded-proto": "https"})  # a client cannot claim TLS
    proxied = TestClient(build_app(store, token=TOKEN, trust_proxy=True))
    assert "Secure" in session_cookie(proxied, **{"x-forwarded-proto": "https"})
    assert "Secure" not in session_cookie(proxied, **{"x-forwarded-proto": "http"})


def test_failed_logins_are_limited_and_the_token_is_never_logged(guarded: TestClient, caplog):
    caplog.set_level(logging.DEBUG)
    for _ in range(10):
        assert guarded.post("/api/login", json={"token": "guess-" + TOKEN}).status_code == 401
    limited = guarded.post("/api/login", json={"token": TOKEN})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    guarded.get("/api/events", headers={"authorization": f"Bearer {TOKEN}"})
    assert TOKEN not in caplog.text and "failed login" in caplog.text


def test_docs_page_works_without_the_csp_and_the_api_keeps_it(client: TestClient):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers  # its script is inline, from a CDN
    assert docs.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in client.get("/api/events").headers["content-security-policy"]


def test_failed_logins_are_counted_per_forwarded_client_only_behind_a_trusted_proxy(store: Store):
    proxied = TestClient(build_app(store, token=TOKEN, trust_proxy=True))
    for _ in range(10):
        proxied.post("/api/login", json={"token": "nope-nope"}, headers={"x-forwarded-for": "10.0.0.7"})
    assert proxied.post("/api/login", json={"token": TOKEN}, headers={"x-forwarded-for": "10.0.0.7"}).status_code == 429
    assert proxied.post("/api/login", json={"token": TOKEN}, headers={"x-forwarded-for": "10.0.0.8"}).status_code == 200
    direct = TestClient(build_app(store, token=TOKEN))  # untrusted: a client cannot dodge the count with the header
    for n in range(10):
        direct.post("/api/login", json={"token": "nope-nope"}, headers={"x-forwarded-for": f"10.0.1.{n}"})
    assert direct.post("/api/login", json={"token": TOKEN}, headers={"x-forwarded-for": "10.0.2.1"}).status_code == 429
