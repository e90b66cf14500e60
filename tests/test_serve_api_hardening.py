"""Auth and login hardening found in review: bounded login bodies, failed-guess limits that a client cannot dodge,
the login page under a reverse-proxy path prefix with a safe ``next=``, and what the page can ask about auth."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
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
