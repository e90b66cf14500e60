"""``POST /api/detect``: one uploaded image in, one ``maskwatch detect --json`` line out, within limits.

The limits hold before any work: the body counted as it streams in and cut at ``http.max_upload_bytes`` (413; a
Content-Length over it is refused before reading) and given ``http.upload_timeout_s`` to arrive (408), the type sniffed
from the first bytes (415), the decode refused past the CLI's pixel limit or on a broken file (422), and caps on
uploads arriving and on images being detected at once (429). Decoding and inference run
in the thread pool, on pipelines of their own (never the service's worker's).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import anyio
import numpy as np
from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from maskwatch.imaging import MAX_PIXELS, ImageLoadError, decode_rgb
from maskwatch.serve.api.models import DetectOut, Problem

log = logging.getLogger(__name__)

detect = APIRouter(tags=["detect"])

#: Magic numbers of the image types the decoder takes (what the bytes are, whatever the name or header say).
MAGIC: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("JPEG", lambda b: b[:3] == b"\xff\xd8\xff"),
    ("PNG", lambda b: b[:8] == b"\x89PNG\r\n\x1a\n"),
    ("BMP", lambda b: b[:2] == b"BM" and len(b) >= 14),
    ("WebP", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    ("TIFF", lambda b: b[:4] in (b"II*\x00", b"MM\x00*")),
)


class Pipeline(Protocol):
    def __call__(self, image: np.ndarray, *, source: str = ..., frame: int = ...): ...


def sniff(head: bytes) -> str | None:
    return next((name for name, test in MAGIC if test(head)), None)


class DetectPool:
    """Up to ``size`` pipelines, built on first use, each used by one call at a time (no sharing, no lock held
    during inference). ``observe`` gets each call's inference seconds (the latency histogram)."""

    def __init__(self, factory: Callable[[], Pipeline], size: int, observe: Callable[[float], None] | None = None):
        self.factory, self.size, self.observe = factory, size, observe
        self._free: queue.LifoQueue = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()

    def _take(self) -> Pipeline:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            build = self._made < self.size
            self._made += build
        if not build:
            return self._free.get()
        try:
            return self.factory()
        except BaseException:
            with self._lock:
                self._made -= 1
            raise

    def __call__(self, image: np.ndarray, source: str) -> dict:
        pipeline = self._take()
        try:
            started = time.perf_counter()
            result = pipeline(image, source=source)
            if self.observe is not None:
                self.observe(time.perf_counter() - started)
            return result.to_json()
        finally:
            self._free.put(pipeline)


class Admission:
    """Calls in flight, refused past the cap (429) instead of queued: a queue would only add latency and memory."""

    def __init__(self, limit: int, refusal: str):
        self.limit, self.busy, self.refusal = limit, 0, refusal
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self.busy >= self.limit:
                raise HTTPException(status_code=429, detail=self.refusal, headers={"Retry-After": "1"})
            self.busy += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1


def admissions(max_concurrent_detect: int) -> tuple[Admission, Admission]:
    """(bodies being received, images being decoded and detected). Receiving is capped apart, and wider, so that slow
    uploads cannot hold the inference slots, while the memory that bodies take stays bounded."""
    n = max_concurrent_detect
    receiving = Admission(4 * n, f"too many uploads arriving at once ({4 * n}); retry shortly")
    detecting = Admission(n, f"too many detect calls at once ({n}, http.max_concurrent_detect); retry shortly")
    return receiving, detecting


def refuse_declared(request: Request, limit: int, setting: str = "http.max_upload_bytes") -> None:
    """413 at once for a Content-Length over ``limit`` (nothing of the body is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(
            status_code=413, detail=f"request body of {int(declared):,} bytes is over the {limit:,}-byte limit ({setting})"
        )


async def capped(request: Request, limit: int, setting: str = "http.max_upload_bytes") -> AsyncIterator[bytes]:
    """The request body as it arrives, cut at ``limit`` bytes with 413 (it is never read whole first)."""
    refuse_declared(request, limit, setting)
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise HTTPException(status_code=413, detail=f"request body is over the {limit:,}-byte limit ({setting})")
            yield chunk
    except ClientDisconnect:  # the client's doing, not a server error: no traceback in the log (nobody reads this)
        raise HTTPException(status_code=400, detail="the client went away before the body arrived") from None


async def read_upload(request: Request, limit: int) -> tuple[str, bytes]:
    """The ``file`` field of a multipart form: (file name, bytes)."""
    kind = request.headers.get("content-type", "")
    if not kind.lower().startswith("multipart/form-data"):
        raise HTTPException(status_code=415, detail="send the image as multipart/form-data with a field named 'file'")
    parser = MultiPartParser(request.headers, capped(request, limit), max_files=1, max_fields=8, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise HTTPException(status_code=422, detail=f"malformed multipart body ({error.message})") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status_code=422, detail="missing the form field 'file' (an image file)")
        data = await upload.read()
        return upload.filename or "upload", data
    finally:
        await form.close()


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary", "description": "JPEG, PNG, BMP, WebP or TIFF"}},
                "required": ["file"],
            }
        }
    },
}


@detect.post(
    "/api/detect",
    response_model=DetectOut,
    response_model_exclude_none=True,
    responses={code: {"model": Problem} for code in (408, 413, 415, 422, 429, 503)},
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def detect_upload(request: Request) -> dict:
    """Faces and mask labels in one uploaded image, exactly as ``maskwatch detect --json`` writes them."""
    state = request.app.state
    receiving, detecting = state.detect_admission
    with receiving.slot():
        try:
            with anyio.fail_after(state.http.upload_timeout_s):
                name, data = await read_upload(request, state.http.max_upload_bytes)
        except TimeoutError:
            raise HTTPException(
                status_code=408, detail=f"the upload did not arrive within {state.http.upload_timeout_s:g} s"
            ) from None
    if sniff(data[:16]) is None:
        raise HTTPException(status_code=415, detail=f"{name}: not a JPEG, PNG, BMP, WebP or TIFF image (by its first bytes)")
    with detecting.slot():
        return await run_in_threadpool(_decode_and_detect, state.detect, data, name, state.max_pixels)


def _decode_and_detect(run: Callable[[np.ndarray, str], dict], data: bytes, name: str, max_pixels: int) -> dict:
    try:
        image = decode_rgb(data, name, max_pixels=max_pixels)
    except ImageLoadError as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    try:
        return run(image, name)
    except (RuntimeError, ValueError, OSError) as error:  # a model that cannot be built or run (not the upload's fault)
        log.error("detect: %s", error)
        raise HTTPException(status_code=503, detail=f"detection unavailable ({error})") from None


__all__ = ["MAX_PIXELS", "DetectPool", "capped", "detect", "refuse_declared"]
