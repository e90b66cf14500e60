"""``/api/cameras``: the live state, the newest annotated frame (``latest.jpg``) and an MJPEG stream.

Faces are pixelated as ``snapshots.blur`` says; in the live view ``others`` means every face that is not part of an
open event (the person the event is about stays visible, bystanders do not). A frame is encoded once however many
clients watch it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Protocol

import cv2
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from maskwatch.draw import annotate, blur_faces
from maskwatch.serve.api.models import CameraOut, Problem
from maskwatch.serve.worker import LiveFrame

BOUNDARY = "maskwatch-frame"
cameras = APIRouter(prefix="/api/cameras", tags=["cameras"])


class LiveSource(Protocol):
    def live_frame(self, camera: str) -> LiveFrame | None: ...


def get_cameras(request: Request) -> list[dict]:
    return request.app.state.cameras()


def render(frame: LiveFrame, blur: str, quality: int) -> bytes:
    """The frame with boxes and labels, faces pixelated per ``blur``, as JPEG."""
    if blur == "all":
        hidden = list(frame.faces)
    elif blur == "others":
        hidden = [f for f in frame.faces if f.track_id is None or f.track_id not in frame.event_tracks]
    else:
        hidden = []
    picture = annotate(blur_faces(frame.image, hidden) if hidden else frame.image, list(frame.faces))
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise HTTPException(status_code=500, detail="JPEG encoding failed")
    return encoded.tobytes()


class LiveJpegs:
    """The newest frame of each camera as JPEG, encoded once per frame (cached by sequence number)."""

    def __init__(self, source: LiveSource | None, blur: str, quality: int):
        self.source, self.blur, self.quality = source, blur, quality
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, camera: str) -> tuple[int, bytes] | None:
        frame = self.source.live_frame(camera) if self.source is not None else None
        if frame is None:
            return None
        with self._lock:
            cached = self._cache.get(camera)
            if cached is not None and cached[0] == frame.seq:
                return cached
        jpeg = (frame.seq, render(frame, self.blur, self.quality))
        with self._lock:
            self._cache[camera] = jpeg
        return jpeg


def known_camera(request: Request, name: str) -> str:
    names = [c["name"] for c in request.app.state.cameras()]
    if name not in names:
        raise HTTPException(status_code=404, detail=f"no camera {name!r} (cameras: {', '.join(names) or 'none'})")
    return name


@cameras.get("", response_model=list[CameraOut])
def list_cameras(state: Annotated[list[dict], Depends(get_cameras)]) -> list[dict]:
    return state


@cameras.get(
    "/{name}/latest.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}, 503: {"model": Problem}},
)
async def latest_jpg(request: Request, name: str) -> Response:
    """The newest processed frame, annotated and pixelated as ``snapshots.blur`` says."""
    known_camera(request, name)
    jpeg = await run_in_threadpool(request.app.state.live.get, name)
    if jpeg is None:
        raise HTTPException(status_code=503, detail=f"camera {name!r} has no frame yet", headers={"Retry-After": "2"})
    return Response(jpeg[1], media_type="image/jpeg", headers={"cache-control": "no-store", "x-frame-seq": str(jpeg[0])})


@cameras.get(
    "/{name}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}, 404: {"model": Problem}},
)
def mjpeg(request: Request, name: str, fps: float | None = Query(None, gt=0, le=30)) -> StreamingResponse:
    """MJPEG (``multipart/x-mixed-replace``) of the annotated frames, at most ``http.stream_fps`` (or ``fps``,
    whichever is lower) per second; it ends when the client goes or its login session ends."""
    known_camera(request, name)
    limit = request.app.state.http.stream_fps
    period = 1.0 / min(limit, fps or limit)
    slots = request.app.state.streams
    slots.take("mjpeg")
    return slots.response("mjpeg", _frames(request, name, period), f"multipart/x-mixed-replace; boundary={BOUNDARY}")


async def _frames(request: Request, name: str, period: float) -> AsyncIterator[bytes]:
    live, closing = request.app.state.live, request.app.state.streams.closing
    allowed = request.app.state.auth.stream_guard(request.scope)
    last_seq = -1
    while not closing.is_set() and allowed():
        started = time.monotonic()
        jpeg = await run_in_threadpool(live.get, name)
        if jpeg is not None and jpeg[0] != last_seq:
            last_seq = jpeg[0]
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg[1])}\r\n\r\n".encode()
            yield head + jpeg[1] + b"\r\n"
        await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
