"""Probes and metrics: ``/healthz`` (the process serves), ``/readyz`` (it can do its job), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from maskwatch.serve.api.models import Health, Ready

health = APIRouter(tags=["health"])


@health.get("/healthz", response_model=Health)
def healthz(request: Request) -> dict:
    """The process is up and serving (not a check of cameras or the store)."""
    return {"status": "ok", "node": request.app.state.node}


def not_ready_reasons(request: Request) -> list[str]:
    """Empty when the store answers, the worker runs and at least one camera is online."""
    state = request.app.state
    reasons = []
    if not state.store.ping():
        reasons.append("store unreachable")
    if state.worker_alive is not None and not state.worker_alive():
        reasons.append("worker not running")
    cameras = state.cameras()
    if cameras and not any(c["status"] == "online" for c in cameras):
        listed = ", ".join(f"{c['name']}: {c['status']}" + (f" ({c['reason']})" if c["reason"] else "") for c in cameras)
        reasons.append(f"no camera online ({listed})")
    return reasons


@health.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(request: Request) -> Response:
    """200 when ready; 503 with the reasons when not (the store is pinged off the event loop)."""
    reasons = await run_in_threadpool(not_ready_reasons, request)
    body = {"status": "not ready" if reasons else "ready", "node": request.app.state.node, "reasons": reasons}
    return JSONResponse(body, status_code=503 if reasons else 200, headers={"cache-control": "no-store"})


@health.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text: frames, FPS and faces per camera, events, dropped messages, inference latency."""
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
