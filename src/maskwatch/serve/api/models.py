"""Response models of the HTTP API: they are the contract the dashboard and integrators rely on (see /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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
    """One event, as stored, sent on MQTT/webhooks (without ``type``) and on ``/api/events/stream``."""

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


class StatsRow(BaseModel):
    """People counted in one camera and one hour (or day), summed over nodes."""

    camera: str
    hour: str = Field(description="ISO 8601 UTC start of the bucket, e.g. 2026-11-30T09:00:00Z")
    people_seen: int
    compliant: int
    non_compliant: int


class FaceOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in the image's pixels")
    label: str
    score: float
    face_score: float = Field(description="how sure the pipeline is that this is a face (photos: fitted from all passes)")
    probs: dict[str, float]
    detector_score: float | None = Field(None, description="the detector's own score, when face_score is another")
    uncertain: bool | None = None
    landmarks: list[list[float]] | None = None


class DetectOut(BaseModel):
    """One line of ``maskwatch detect --json`` for the uploaded image (``source`` is the uploaded file name)."""

    source: str
    frame: int
    faces: list[FaceOut]
    width: int
    height: int


class Health(BaseModel):
    status: Literal["ok"]
    node: str


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    node: str
    reasons: list[str] = Field(description="why not ready (empty when ready)")


class LoginOut(BaseModel):
    ok: bool
    csrf: str = Field(description="the value to send as X-CSRF-Token (also in the maskwatch_csrf cookie)")


class SessionOut(BaseModel):
    auth: bool = Field(description="whether this server needs a token (false: it listens on loopback only)")
    via: Literal["none", "token", "session"] = Field(description="how this request got in (session: the login cookie)")


class Problem(BaseModel):
    detail: str
