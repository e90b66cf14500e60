"""Pieces for the HTTP API tests: a small live camera source, a fast stand-in pipeline, app and server builders."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np

from maskwatch.results import Face, FrameResult
from maskwatch.serve.api import ServiceHooks, create_app
from maskwatch.serve.api.metrics import ServeMetrics
from maskwatch.serve.config import HttpConfig
from maskwatch.serve.store import Store
from maskwatch.serve.worker import LiveFrame

TOKEN = "s3cret-token-for-tests"
PROBS = {"with_mask": 0.02, "without_mask": 0.96, "mask_incorrect": 0.02}
#: Two faces in the live frame: track 1 has an open event, track 2 is a bystander.
EVENT_BOX, BYSTANDER_BOX = (40, 60, 120, 160), (200, 60, 280, 160)
CAMERAS = [
    {"name": "door", "status": "online", "reason": None, "fps": 9.8, "last_frame_time": "2026-11-30T05:00:00.000Z",
     "counts": {"people_seen": 3, "compliant": 2, "non_compliant": 1}},
    {"name": "hall", "status": "offline", "reason": "end of file", "fps": 0.0, "last_frame_time": None,
     "counts": {"people_seen": 0, "compliant": 0, "non_compliant": 0}},
]  # fmt: skip


def checker_image(height: int = 240, width: int = 320) -> np.ndarray:
    """Grey with a 2-pixel checker texture: pixelation turns it flat, so a test can see which faces were hidden."""
    image = np.full((height, width, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    texture = (((yy // 2) + (xx // 2)) % 2 * 200 + 28).astype(np.uint8)
    image[...] = texture[..., None]
    return image


def face(box, track_id: int) -> Face:
    return Face(box=np.array(box, np.float32), label="without_mask", score=0.96, probs=PROBS, face_score=0.9, track_id=track_id)


class FakeLive:
    """A camera whose frame changes on every look (a new sequence number each time), like a running one."""

    def __init__(self, cameras=("door",)):
        self.cameras, self.seq, self.lock = set(cameras), 0, threading.Lock()
        self.image = checker_image()

    def live_frame(self, camera: str) -> LiveFrame | None:
        if camera not in self.cameras:
            return None
        with self.lock:
            self.seq += 1
            seq = self.seq
        faces = (face(EVENT_BOX, 1), face(BYSTANDER_BOX, 2))
        return LiveFrame(seq, 1_780_000_000.0 + seq, self.image, faces, frozenset({1}))


class FakePipeline:
    """Answers like MaskPipeline: one face in the middle of the image. ``gate`` (if set) holds each call until set."""

    def __init__(self, gate: threading.Event | None = None, entered: threading.Event | None = None):
        self.gate, self.entered, self.calls = gate, entered, 0

    def __call__(self, image: np.ndarray, *, source: str = "<array>", frame: int = 0) -> FrameResult:
        self.calls += 1
        if self.entered is not None:
            self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        h, w = image.shape[:2]
        found = [Face(box=np.array([w / 4, h / 4, w / 2, h / 2], np.float32), label="with_mask", score=0.9,
                      probs={"with_mask": 0.9, "without_mask": 0.05, "mask_incorrect": 0.05}, face_score=0.8)]  # fmt: skip
        return FrameResult(source, frame, found, size=(w, h))


def build_app(store: Store, *, token: str | None = None, cameras=None, hooks: ServiceHooks | None = None, **http):
    """The real app on ``store``; ``http`` sets HttpConfig keys (token given separately)."""
    if token is not None:
        http["token"] = token
    hooks = hooks or ServiceHooks(live=FakeLive(), pipeline=FakePipeline)
    return create_app(
        store, lambda: list(CAMERAS if cameras is None else cameras), node="node-a", http=HttpConfig(**http), hooks=hooks
    )


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(checker_image(height, width)).save(buffer, format="PNG")
    return buffer.getvalue()


def stats_metrics(frames: int = 7) -> ServeMetrics:
    """Metrics whose stats() reads like a running service's."""
    return ServeMetrics(
        lambda: {
            "cameras": {"door": {"frames": frames, "skipped_frames": 2, "fps": 9.5, "status": "online",
                                 "faces": {"without_mask": 4, "with_mask": 1}}},
            "dropped": {"store": 0, "delivery": 3},
            "events": {"new": 2, "end": 1},
        }
    )  # fmt: skip


def static_with_index(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text("<!doctype html><title>dash</title><p>dashboard</p>")
    (folder / "app.js").write_text("console.log('dash');")
    source = Path(__file__).resolve().parents[1] / "src/maskwatch/serve/static"
    for name in ("login.html", "login.css"):
        (folder / name).write_text((source / name).read_text())
    return folder
