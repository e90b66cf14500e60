"""``/api/events``: the stored events (filtered, newest first), one event, its snapshot, and the live stream (SSE)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from maskwatch.labels import LABELS, UnknownLabelError, canonical_label
from maskwatch.serve.api.models import EventOut, Problem
from maskwatch.serve.store import Store, parse_since

#: A comment line this often keeps proxies and browsers from closing a quiet stream.
KEEPALIVE_S = 15.0

events = APIRouter(prefix="/api/events", tags=["events"])
NOT_FOUND = {404: {"model": Problem}}


def get_store(request: Request) -> Store:
    return request.app.state.store


#: Epoch seconds a query may name: 1970 to the end of 9999 (what dates can show).
LATEST_TIME = 253402300799.0


def parse_time(name: str, text: str | None) -> float | None:
    """ISO 8601 or epoch seconds -> epoch seconds; 422 naming the parameter for anything else."""
    try:
        value = parse_since(text)
    except (ValueError, OverflowError):
        value = float("nan")
    if value is not None and not 0 <= value <= LATEST_TIME:  # also refuses NaN and infinities
        raise HTTPException(status_code=422, detail=f"{name}: {text!r} is not an ISO 8601 time or epoch seconds (1970-9999)")
    return value


#: No camera name or event id holds one, and PostgreSQL refuses NUL in text outright (a DataError, so a 500).
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain_text(name: str, text: str | None) -> str | None:
    """``text`` unchanged; 422 naming the parameter when it holds a control character."""
    if text is not None and CONTROL.search(text):
        raise HTTPException(status_code=422, detail=f"{name}: control characters are not allowed")
    return text


def find_event(store: Store, event_id: str) -> dict:
    """The stored event, or 404 (an id with a control character cannot exist: the store is not asked)."""
    event = None if CONTROL.search(event_id) else store.get_event(event_id)
    if event is None:
        raise HTTPException(status_code=404, detail=f"no event {event_id!r}")
    return event


def parse_label(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return canonical_label(text)
    except (UnknownLabelError, ValueError):
        raise HTTPException(status_code=422, detail=f"label: {text!r} is not one of {', '.join(LABELS)}") from None


@events.get("", response_model=list[EventOut], responses={422: {"model": Problem}})
def list_events(
    store: Annotated[Store, Depends(get_store)],
    camera: str | None = None,
    label: str | None = Query(None, description="with_mask, without_mask or mask_incorrect (aliases accepted)"),
    since: str | None = Query(None, description="ISO 8601 time or epoch seconds; events that started at or after it"),
    until: str | None = Query(None, description="ISO 8601 time or epoch seconds; events that started before it"),
    limit: int = Query(100, ge=1, le=10000),
) -> list[dict]:
    """Newest first."""
    since_t, until_t = parse_time("since", since), parse_time("until", until)
    camera, label = plain_text("camera", camera), parse_label(label)
    return store.query_events(camera=camera, label=label, since=since_t, until=until_t, limit=limit)


@events.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 503: {"model": Problem}},
)
def event_stream(request: Request) -> StreamingResponse:
    """Server-sent events: ``event: start`` when an event opens, ``event: update`` when its best score (and snapshot)
    improves, ``event: end`` when it ends; ``data`` is the event JSON as in ``GET /api/events``; a ``: keep-alive``
    comment every 15 s."""
    slots = request.app.state.streams
    slots.take("sse")
    return slots.response("sse", _sse(request), "text/event-stream")


async def _sse(request: Request) -> AsyncIterator[bytes]:
    app = request.app.state
    keepalive = app.sse_keepalive_s
    allowed = app.auth.stream_guard(request.scope)  # a logout or an expired session ends the stream (within ~1 s)
    async with app.hub.subscribe() as queue:
        yield b"retry: 3000\n: connected\n\n"
        next_ping = time.monotonic() + keepalive
        while not app.streams.closing.is_set() and allowed():
            try:
                wait = min(1.0, max(0.0, next_ping - time.monotonic()))
                name, event = await asyncio.wait_for(queue.get(), timeout=wait)
            except asyncio.TimeoutError:
                if time.monotonic() >= next_ping:
                    next_ping = time.monotonic() + keepalive
                    yield b": keep-alive\n\n"
                continue
            yield f"event: {name}\ndata: {json.dumps(event)}\n\n".encode()


@events.get("/{event_id}", response_model=EventOut, responses=NOT_FOUND)
def get_event(event_id: str, store: Annotated[Store, Depends(get_store)]) -> dict:
    return find_event(store, event_id)


@events.get(
    "/{event_id}/snapshot.jpg",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
)
def event_snapshot(event_id: str, request: Request, store: Annotated[Store, Depends(get_store)]) -> FileResponse:
    """Each node serves its own snapshots; an event of another node says which node has the file."""
    event = find_event(store, event_id)
    if not event["snapshot"]:
        raise HTTPException(status_code=404, detail=f"event {event_id!r} has no snapshot")
    if event["node"] != request.app.state.node:
        raise HTTPException(status_code=404, detail=f"the snapshot is on node {event['node']!r}; ask that node")
    path = Path(event["snapshot"])
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"snapshot of {event_id!r} is gone (retention or disk)")
    return FileResponse(path, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})
