"""Who may use the API: a Bearer token, or the session cookie that ``POST /api/login`` sets; CSRF by double submit.

Auth is one pure ASGI middleware in front of everything (routes, ``/static``, ``/docs``, ``/openapi.json``, unknown
paths) with a short allow-list, so a route added later cannot forget it. Sessions are random ids
(``secrets.token_urlsafe``) kept in memory with an expiry rather than an HMAC of the token: logout really ends a
session, the token never travels in a cookie, and rotating the token is not needed to sign someone out. The cost is
that a restart signs everyone out, which a dashboard shrugs off.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SESSION_COOKIE = "maskwatch_session"
CSRF_COOKIE = "maskwatch_csrf"
CSRF_HEADER = "x-csrf-token"
#: Reachable without credentials: probes, the login page and what it loads, and the login call itself.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/api/login", "/favicon.ico"})
PUBLIC_STATIC = frozenset({"login.html", "login.css", "login.js", "style.css", "favicon.ico", "favicon.svg"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_SESSIONS = 10_000
#: Failed logins per client allowed per minute (a token is not guessable, but a typo loop should not hammer us).
MAX_FAILED_LOGINS = 10
TOO_MANY = "too many failed logins or wrong tokens; wait a minute"


@dataclass(frozen=True)
class Session:
    csrf: str
    expires: float


class Sessions:
    """Login sessions in memory: id -> (CSRF value, expiry). Bounded; the oldest go first when full."""

    def __init__(self, lifetime_s: float):
        self.lifetime_s = lifetime_s
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self) -> tuple[str, Session]:
        sid, session = secrets.token_urlsafe(32), Session(secrets.token_urlsafe(24), time.time() + self.lifetime_s)
        with self._lock:
            now = time.time()
            for key in [k for k, s in self._items.items() if s.expires <= now]:
                del self._items[key]
            while len(self._items) >= MAX_SESSIONS:
                del self._items[next(iter(self._items))]
            self._items[sid] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            session = self._items.get(sid)
            if session is not None and session.expires <= time.time():
                del self._items[sid]
                return None
            return session

    def end(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)

    def __len__(self) -> int:
        return len(self._items)


class FailedLogins:
    """Failed logins per client in the last minute."""

    def __init__(self) -> None:
        self.times: dict[str, deque[float]] = {}

    def too_many(self, client: str) -> bool:
        recent = self.times.get(client)
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        return bool(recent) and len(recent) >= MAX_FAILED_LOGINS

    def add(self, client: str) -> None:
        if len(self.times) > 10_000:
            self.times.clear()
        self.times.setdefault(client, deque()).append(time.monotonic())


def same(a: str, b: str) -> bool:
    """Constant-time comparison (a token's prefix cannot be found by timing)."""
    return hmac.compare_digest(a.encode(), b.encode())


def read_cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for raw in headers.getlist("cookie"):
        try:
            jar.load(raw)
        except Exception:  # noqa: BLE001 - a malformed Cookie header is treated as no cookie
            continue
    return {k: m.value for k, m in jar.items()}


class Authenticator:
    """The token and the sessions; ``None`` token: auth is off (loopback only, see config.exposure_problem)."""

    def __init__(self, token: str | None, *, session_hours: float = 12.0, trust_proxy: bool = False):
        self.token, self.trust_proxy = token, trust_proxy
        self.sessions = Sessions(session_hours * 3600)
        self.failed = FailedLogins()

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def check_token(self, given: str) -> bool:
        return self.token is not None and same(given, self.token)

    def is_https(self, scope: Scope, headers: Headers) -> bool:
        """The browser's connection is TLS: ours, or (only with ``trust_proxy``) the proxy's ``X-Forwarded-Proto``."""
        if scope.get("scheme") == "https":
            return True
        forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return self.trust_proxy and forwarded == "https"

    def client(self, scope: Scope, headers: Headers) -> str:
        """Who is calling, for the failed-guess count: the peer, or (only with ``trust_proxy``) X-Forwarded-For's last
        entry, the one the proxy appended (``$proxy_add_x_forwarded_for``); the entries before it are the client's say."""
        forwarded = ",".join(headers.getlist("x-forwarded-for")).split(",")[-1].strip()
        if self.trust_proxy and forwarded:
            return forwarded
        peer = scope.get("client")
        return peer[0] if peer else "?"

    def decide(self, scope: Scope) -> tuple[int, str] | None:
        """None: let the request through; else (status, reason) to refuse it with."""
        path, method = scope["path"], scope.get("method", "GET")  # a websocket has no method: a read
        if not self.enabled or is_public(path):
            return None
        headers = Headers(scope=scope)
        given = bearer_of(headers)
        if given is not None:
            return self._bearer(scope, headers, given)
        cookies = read_cookies(headers)
        session = self.sessions.get(cookies.get(SESSION_COOKIE, ""))
        if session is None:
            return 401, "not logged in: send Authorization: Bearer TOKEN, or log in at /login"
        if method in UNSAFE_METHODS:
            sent = headers.get(CSRF_HEADER, "")
            if not sent or not same(sent, cookies.get(CSRF_COOKIE, "")) or not same(sent, session.csrf):
                return 403, f"missing or wrong {CSRF_HEADER} header (it must equal the {CSRF_COOKIE} cookie)"
        return None

    def stream_guard(self, scope: Scope) -> Callable[[], bool]:
        """For a long-lived response (MJPEG, SSE) let in by :meth:`decide`: a check, made on each turn of its loop,
        that turns False once the login session it came with has ended (logout or expiry). A token lasts as long
        as the process, so a Bearer stream (or one without auth) goes on."""
        headers = Headers(scope=scope)
        if not self.enabled or bearer_of(headers) is not None:
            return lambda: True
        sid = read_cookies(headers).get(SESSION_COOKIE, "")
        return lambda: self.sessions.get(sid) is not None

    def _bearer(self, scope: Scope, headers: Headers, given: str) -> tuple[int, str] | None:
        """A token guess counts with the failed logins of its client: past the limit no token is even compared."""
        client = self.client(scope, headers)
        if self.failed.too_many(client):
            return 429, TOO_MANY
        if self.check_token(given):
            return None  # a Bearer request is not a browser's ambient credential: no CSRF check
        self.failed.add(client)
        return 401, "wrong token (Authorization: Bearer TOKEN)"


def bearer_of(headers: Headers) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``, else None. Other schemes are not ours: a browser sends the Basic
    credentials of a proxy in front on its own, so they are neither a token guess nor a pass around the CSRF check."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def is_public(path: str) -> bool:
    if path in PUBLIC_PATHS:
        return True
    return path.startswith("/static/") and path.removeprefix("/static/") in PUBLIC_STATIC


#: Pages a browser navigates to -> the ``next=`` that brings it back after the login ("": the dashboard).
PAGES = {"/": "", "/index.html": "", "/docs": "docs", "/redoc": "redoc"}


def login_redirect(scope: Scope) -> bytes | None:
    """For a browser navigating to a page (GET, Accept: text/html), where to send it instead of a JSON 401: the login
    page, by a relative URL (every page is at the top level, so a reverse proxy's path prefix stays)."""
    after = PAGES.get(scope["path"])
    if scope["method"] != "GET" or after is None or "text/html" not in Headers(scope=scope).get("accept", ""):
        return None
    return b"login" + (b"?next=" + after.encode() if after else b"")


class AuthMiddleware:
    """Refuses what :meth:`Authenticator.decide` refuses, as JSON ``{"detail": ...}`` (or a redirect for a page)."""

    def __init__(self, app: ASGIApp, auth: Authenticator):
        self.app, self.auth = app, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        refused = self.auth.decide(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, reason = refused
        if scope["type"] == "websocket":  # refused before the handshake completes (1008: policy violation)
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
            return
        login = login_redirect(scope) if status == 401 else None
        if login is not None:
            await _send(send, 303, b"", [(b"location", login)])
            return
        headers = [(b"content-type", b"application/json")]
        if status == 429:
            headers.append((b"retry-after", b"60"))
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="maskwatch"'))
        await _send(send, status, json.dumps({"detail": reason}).encode(), headers)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
