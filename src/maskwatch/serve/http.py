"""The HTTP API (FastAPI): health, cameras, events and their snapshots.

Routers per resource and dependencies for the store and the live camera state, so that a dashboard,
auth (a dependency on every router) and metrics can be added without touching these routes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from maskwatch.serve.store import Store, parse_since

log = logging.getLogger(__name__)


class Counts(BaseModel):
    people_seen: int
    compliant: int
    non_compliant: int


class CameraOut(BaseModel):
    name: str
    status: Literal["starting", "online", "offline"]
    reason: str | None
    fps: float
    last_frame_time: str | None
    counts: Counts


class EventOut(BaseModel):
    id: str
    camera: str
    track_id: int
    label: str
    score: float
    start_time: str
    end_time: str | None
    box: list[float]
    snapshot: str | None
    node: str


class Health(BaseModel):
    status: Literal["ok"]
    node: str


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_cameras(request: Request) -> list[dict]:
    return request.app.state.cameras()


health = APIRouter(tags=["health"])
cameras = APIRouter(prefix="/api/cameras", tags=["cameras"])
events = APIRouter(prefix="/api/events", tags=["events"])


@health.get("/healthz", response_model=Health)
def healthz(request: Request) -> dict:
    """The process is up and serving (not a check of cameras or the store)."""
    return {"status": "ok", "node": request.app.state.node}


@cameras.get("", response_model=list[CameraOut])
def list_cameras(state: Annotated[list[dict], Depends(get_cameras)]) -> list[dict]:
    return state


@events.get("", response_model=list[EventOut])
def list_events(
    store: Annotated[Store, Depends(get_store)],
    camera: str | None = None,
    label: str | None = None,
    since: str | None = Query(None, description="ISO 8601 time or epoch seconds; events that started at or after it"),
    limit: int = Query(100, ge=1, le=10000),
) -> list[dict]:
    """Newest first."""
    try:
        since_t = parse_since(since)
    except ValueError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    return store.query_events(camera=camera, label=label, since=since_t, limit=limit)


@events.get("/{event_id}/snapshot.jpg", response_class=FileResponse)
def event_snapshot(event_id: str, request: Request, store: Annotated[Store, Depends(get_store)]) -> FileResponse:
    """Each node serves its own snapshots; an event of another node says which node has the file."""
    event = store.get_event(event_id)
    if event is None:
        raise HTTPException(status_code=404, detail=f"no event {event_id!r}")
    if not event["snapshot"]:
        raise HTTPException(status_code=404, detail=f"event {event_id!r} has no snapshot")
    if event["node"] != request.app.state.node:
        raise HTTPException(status_code=404, detail=f"the snapshot is on node {event['node']!r}; ask that node")
    path = Path(event["snapshot"])
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"snapshot of {event_id!r} is gone (retention or disk)")
    return FileResponse(path, media_type="image/jpeg")


def create_app(store: Store, cameras_state: Callable[[], list[dict]], *, node: str) -> FastAPI:
    """The app; ``cameras_state`` returns the live camera list (from the service, or a test)."""
    app = FastAPI(title="maskwatch serve", version="1")
    app.state.store, app.state.cameras, app.state.node = store, cameras_state, node
    for router in (health, cameras, events):
        app.include_router(router)
    return app


class HttpServer:
    """uvicorn in a thread of this process (the service's signal handling stays in the main thread)."""

    def __init__(self, app: FastAPI, host: str, port: int):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout_s: float = 10.0) -> HttpServer:
        try:  # say why in one line, before uvicorn logs its own traceback-like error
            socket.create_server((self.host, self.port)).close()
        except OSError as error:
            raise RuntimeError(
                f"http: cannot listen on {self.host}:{self.port} ({os.strerror(error.errno) if error.errno else error})"
            ) from None
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            if self.server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)
        if not self.server.started:
            raise RuntimeError(f"http: cannot listen on {self.host}:{self.port} (in use, or not allowed)")
        log.info("http: listening on http://%s:%d", self.host, self.port)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=timeout_s)
