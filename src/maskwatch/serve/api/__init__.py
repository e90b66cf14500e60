"""The HTTP API and dashboard of ``maskwatch serve`` (FastAPI): one router per resource, auth as middleware in front.

``create_app`` takes what the service offers (store, camera state, live frames, the event hub, metrics); tests pass
the same pieces, real or small stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from maskwatch.imaging import MAX_PIXELS
from maskwatch.serve.api.auth import Authenticator, AuthMiddleware, is_public
from maskwatch.serve.api.detect import DetectPool, Pipeline, admissions, detect
from maskwatch.serve.api.events import events
from maskwatch.serve.api.health import health
from maskwatch.serve.api.hub import EventHub
from maskwatch.serve.api.live import LiveJpegs, LiveSource, cameras
from maskwatch.serve.api.metrics import ServeMetrics
from maskwatch.serve.api.models import Problem
from maskwatch.serve.api.pages import STATIC_DIR, pages
from maskwatch.serve.api.stats import stats
from maskwatch.serve.api.streams import StreamSlots
from maskwatch.serve.config import HttpConfig
from maskwatch.serve.store import Store

#: Browsers may load and run only this origin's files; the page cannot be framed (clickjacking).
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
CSP = (
    b"content-security-policy",
    b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
)
#: FastAPI's API browser loads its script from a CDN and runs an inline one: it gets no CSP (it holds no data).
NO_CSP = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


@dataclass
class ServiceHooks:
    """What a running service adds to the bare API (each may be left out: its routes then say so)."""

    live: LiveSource | None = None  # frames for latest.jpg and the MJPEG stream
    hub: EventHub = field(default_factory=EventHub)  # the store writer publishes; SSE clients read
    pipeline: Callable[[], Pipeline] | None = None  # builds one /api/detect pipeline; None: maskwatch detect's defaults
    metrics: ServeMetrics | None = None
    worker_alive: Callable[[], bool] | None = None
    static_dir: Path = STATIC_DIR
    max_pixels: int = MAX_PIXELS  # the CLI's decompression-bomb guard
    sse_keepalive_s: float = 15.0


def default_pipeline(model: str | None = None, detector: str = "centerface") -> Callable[[], Pipeline]:
    """``maskwatch detect``'s pipeline for a still image (detector size 960, box shape, mirrored pass and a 640 px
    pass), built on first use."""

    def build() -> Pipeline:
        from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig, extra_sizes_for, still_image_defaults

        box_shape, flip = still_image_defaults(True, 960, None, None)
        config = PipelineConfig(
            model=model,
            detector=detector,
            detector_size=960,
            box_shape=box_shape,
            flip=flip,
            extra_detector_sizes=extra_sizes_for(True, 960, None),
        )
        return MaskPipeline(config)

    return build


def create_app(
    store: Store,
    cameras_state: Callable[[], list[dict]],
    *,
    node: str,
    http: HttpConfig = HttpConfig(),
    blur: str = "others",
    hooks: ServiceHooks | None = None,
) -> FastAPI:
    """The app; ``cameras_state`` returns the live camera list (from the service, or a test)."""
    hooks = hooks or ServiceHooks()
    app = FastAPI(title="maskwatch serve", version="1", description="Face-mask compliance: cameras, events, detection.")
    metrics = hooks.metrics or ServeMetrics()
    metrics.collector.extra = lambda: {"sse": hooks.hub.dropped}
    state = app.state
    state.store, state.cameras, state.node, state.http = store, cameras_state, node, http
    state.hub, state.metrics, state.worker_alive, state.static_dir = hooks.hub, metrics, hooks.worker_alive, hooks.static_dir
    state.live = LiveJpegs(hooks.live, blur, http.jpeg_quality)
    state.streams, state.sse_keepalive_s, state.max_pixels = (
        StreamSlots(http.max_streams),
        hooks.sse_keepalive_s,
        hooks.max_pixels,
    )
    state.detect_admission = admissions(http.max_concurrent_detect)
    state.detect = DetectPool(hooks.pipeline or default_pipeline(), http.max_concurrent_detect, metrics.observe_detect)
    token = http.token.get_secret_value() if http.token is not None else None
    state.auth = Authenticator(token, session_hours=http.session_hours, trust_proxy=http.trust_proxy)
    for router in (health, cameras, events, stats, detect, pages):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=hooks.static_dir, check_dir=False), name="static")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(AuthMiddleware, auth=state.auth)
    app.add_middleware(SecurityHeaders)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, saying what this app really sends on 422 (``{"detail": "one line"}``, see
    :func:`_validation_error`) and that with a token every route but the probes and the login may answer 401 (429
    past the wrong-token limit)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, methods in document.get("paths", {}).items():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Invalid request", "content": {"application/json": {"schema": problem}}}
            if not is_public(path) and app.state.auth.enabled:
                for code, why in (("401", "Not logged in"), ("429", "Too many wrong tokens from this client")):
                    responses.setdefault(code, {"description": why, "content": {"application/json": {"schema": problem}}})
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with ``detail`` as one line naming the parameter (the page shows it as is)."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    return JSONResponse({"detail": f"{where}: {first['msg']}" if where else first["msg"]}, status_code=422)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    """A bug must not leak a traceback to the client; it is logged here with one."""
    import logging

    logging.getLogger(__name__).exception("http: %s %s failed", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error ({type(error).__name__})"}, status_code=500)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response (pure ASGI: streaming responses pass straight through)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = SECURITY_HEADERS if scope["path"] in NO_CSP else [*SECURITY_HEADERS, CSP]

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


__all__ = ["HTTPException", "ServiceHooks", "create_app", "default_pipeline"]
