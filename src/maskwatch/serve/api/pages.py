"""The dashboard's files and the login: ``/``, ``/login``, ``/static/...``, ``POST /api/login``, ``POST /api/logout``."""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from maskwatch.serve.api.auth import CSRF_COOKIE, SESSION_COOKIE, TOO_MANY, Authenticator, bearer_of, read_cookies
from maskwatch.serve.api.detect import capped, refuse_declared
from maskwatch.serve.api.models import LoginOut, Problem, SessionOut

log = logging.getLogger(__name__)

#: ``POST /api/login`` is open to anyone: its body is counted as it arrives and cut here (413), never read whole.
MAX_LOGIN_BYTES = 4096

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

pages = APIRouter(tags=["dashboard"])

PLACEHOLDER = """<!doctype html><html lang="en"><meta charset="utf-8"><title>maskwatch</title>
<h1>maskwatch serve</h1><p>The dashboard page is not installed here (<code>static/index.html</code> is missing).
The API is running: see <a href="/docs">/docs</a> and <a href="/openapi.json">/openapi.json</a>.</p></html>"""


def auth_of(request: Request) -> Authenticator:
    return request.app.state.auth


@pages.get("/", include_in_schema=False)
def index(request: Request) -> Response:
    page = request.app.state.static_dir / "index.html"
    if not page.is_file():
        return HTMLResponse(PLACEHOLDER, status_code=404)
    return FileResponse(page, media_type="text/html", headers={"cache-control": "no-cache"})


@pages.get("/login", include_in_schema=False)
def login_page(request: Request) -> Response:
    after = safe_next(request.query_params.get("next"))
    if not auth_of(request).enabled:
        return RedirectResponse("./" + (after or ""), status_code=303)
    return _login_html(request, None, 200, root="", after=after)


#: What ``next=`` may name: a path relative to the dashboard (a reverse proxy's path prefix stays in front of it), with
#: a plain query; no scheme, host, leading slash, backslash, percent-escape or dot segment, so never another site.
SAFE_NEXT = re.compile(r"[A-Za-z0-9_~.\-]+(?:/[A-Za-z0-9_~.\-]+)*/?(?:\?[A-Za-z0-9_~.\-=&]*)?")


def safe_next(text: str | None) -> str | None:
    """``text`` when it is a safe place to go after the login (see :data:`SAFE_NEXT`), else None (go to the page)."""
    if not text or len(text) > 512 or not SAFE_NEXT.fullmatch(text):
        return None
    if any(part in (".", "..") for part in text.split("?")[0].split("/")):
        return None
    return text


def _login_html(request: Request, error: str | None, status: int, *, root: str, after: str | None) -> HTMLResponse:
    """The login form; ``root`` leads from the URL it is served at back to the dashboard's (``""`` at ``login``,
    ``"../"`` at ``api/login``), so every URL in it stays relative and works under a reverse-proxy path prefix."""
    text = (request.app.state.static_dir / "login.html").read_text().replace("{root}", root)
    if error:
        text = text.replace("<!--error-->", f'<p class="error" role="alert">{html.escape(error)}</p>')
    if after:
        text = text.replace("<!--next-->", f'<input type="hidden" name="next" value="{html.escape(after)}">')
    return HTMLResponse(text, status_code=status, headers={"cache-control": "no-store"})


async def _given_token(request: Request) -> tuple[str, str | None]:
    """The ``token`` of a form or JSON body, and for a form (a browser without script) its safe ``next``, or ``""``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        raw = b"".join([chunk async for chunk in capped(request, MAX_LOGIN_BYTES, "for a login")])
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise HTTPException(status_code=422, detail="body is not valid JSON") from None
        token = body.get("token") if isinstance(body, dict) else None
        after = None
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        refuse_declared(request, MAX_LOGIN_BYTES, "for a login")  # Starlette's form parser bounds each field
        async with request.form(max_files=0, max_fields=4, max_part_size=4096) as form:
            token, given_next = form.get("token"), form.get("next")
        after = safe_next(given_next if isinstance(given_next, str) else None) or ""
    else:
        raise HTTPException(status_code=415, detail='send the token as a form field or JSON {"token": ...}')
    if not isinstance(token, str) or not token:
        raise HTTPException(status_code=422, detail="token: missing")
    return token, after


@pages.post(
    "/api/login",
    tags=["auth"],
    response_model=LoginOut,
    responses={code: {"model": Problem} for code in (400, 401, 408, 413, 415, 422, 429)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}
                },
                "application/json": {
                    "schema": {"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}
                },
            },
        }
    },
)
async def login(request: Request) -> Response:
    """Trade the token for a session cookie (HttpOnly, SameSite=Strict; Secure over https) and a CSRF cookie."""
    auth = auth_of(request)
    if not auth.enabled:
        raise HTTPException(status_code=400, detail="this server has no token: there is nothing to log in to")
    client = auth.client(request.scope, request.headers)
    if auth.failed.too_many(client):
        raise HTTPException(status_code=429, detail=TOO_MANY, headers={"Retry-After": "60"})
    limit_s = request.app.state.http.upload_timeout_s
    try:
        with anyio.fail_after(limit_s):  # open to anyone: a trickled body must not hold a connection for ever
            token, after = await _given_token(request)
    except TimeoutError:
        raise HTTPException(status_code=408, detail=f"the login did not arrive within {limit_s:g} s") from None
    if not auth.check_token(token):
        auth.failed.add(client)
        log.warning("http: failed login from %s", client)
        if after is not None:
            return _login_html(request, "Wrong token.", 401, root="../", after=after)
        raise HTTPException(status_code=401, detail="wrong token")
    sid, session = auth.sessions.create()
    # a form posts to PREFIX/api/login: "../" is the dashboard, wherever a reverse proxy put it
    response: Response = (
        RedirectResponse("../" + after, status_code=303)
        if after is not None
        else JSONResponse({"ok": True, "csrf": session.csrf})
    )
    secure = auth.is_https(request.scope, request.headers)
    max_age = int(auth.sessions.lifetime_s)
    response.set_cookie(SESSION_COOKIE, sid, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, session.csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure, path="/")
    response.headers["cache-control"] = "no-store"
    return response


@pages.get("/api/session", tags=["auth"], response_model=SessionOut, responses={401: {"model": Problem}})
def session_info(request: Request) -> dict:
    """Whether auth is on and how this request got in: the page shows **Log out** only for a login session."""
    auth = auth_of(request)
    if not auth.enabled:
        return {"auth": False, "via": "none"}
    return {"auth": True, "via": "token" if bearer_of(request.headers) is not None else "session"}


@pages.post("/api/logout", tags=["auth"], status_code=204, responses={401: {"model": Problem}, 403: {"model": Problem}})
def logout(request: Request) -> Response:
    """End this browser's session and clear both cookies (a Bearer caller has no session: nothing to end)."""
    auth = auth_of(request)
    sid = read_cookies(request.headers).get(SESSION_COOKIE)
    if sid:
        auth.sessions.end(sid)
    response = Response(status_code=204)
    secure = auth.is_https(request.scope, request.headers)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=name == SESSION_COOKIE, samesite="strict")
    return response
