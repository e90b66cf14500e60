"""Event snapshots: the frame as JPEG, faces pixelated for privacy, written atomically.

A full or read-only disk must not stop events: the caller stores the event without a snapshot.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.draw import blur_faces
from maskwatch.runtime.boxes import iou_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Box:
    box: np.ndarray  # what ``blur_faces`` reads


def privacy_image(image: np.ndarray, boxes: np.ndarray | None, own_box: Sequence[float], blur: str) -> np.ndarray:
    """``others``: every face but the event's own is pixelated; ``all``: every face; ``none``: as captured."""
    if blur == "none":
        return image
    boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    own = np.asarray(own_box, np.float32)
    if blur == "others" and len(boxes):
        boxes = boxes[iou_matrix(boxes, own[None])[:, 0] < 0.9]
    elif blur == "all":
        boxes = np.vstack([boxes, own[None]])
    return blur_faces(image, [_Box(b) for b in boxes])


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_snapshot(
    path: Path, image: np.ndarray, boxes: np.ndarray | None, own_box: Sequence[float], *, blur: str, quality: int = 90
) -> bool:
    """Write the snapshot; False (with one error line) when the disk refuses it."""
    picture = privacy_image(image, boxes, own_box, blur)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        log.error("snapshot %s: JPEG encoding failed; event stored without a snapshot", path)
        return False
    try:
        atomic_write_bytes(path, encoded.tobytes())
    except OSError as error:
        log.error("snapshot %s: %s; event stored without a snapshot", path, error.strerror or error)
        return False
    return True


def folder_size_mb(folder: Path) -> float:
    if not folder.is_dir():
        return 0.0
    return sum(p.stat().st_size for p in folder.rglob("*.jpg") if p.is_file()) / 1e6
