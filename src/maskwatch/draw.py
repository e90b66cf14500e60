"""Annotators: take an RGB image and results, return a new image (the input is not modified)."""

from __future__ import annotations

import cv2
import numpy as np

from maskwatch.results import Face

#: RGB colours per label; uncertain faces are grey.
COLOURS = {"with_mask": (46, 204, 64), "without_mask": (255, 65, 54), "mask_incorrect": (255, 165, 0)}
UNCERTAIN = (170, 170, 170)


#: Blocks across a pixelated face, at most: blocks of a fixed size would leave a close-up face as a small but
#: recognisable picture of itself (480 pixels in 8-pixel blocks is 60x60); this many are too few for that.
MAX_BLOCKS = 6


def blur_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Privacy: pixelate every face box into at most :data:`MAX_BLOCKS` blocks across (8-pixel blocks when smaller),
    so a face is as unrecognisable close to the camera as far from it."""
    out = image.copy()
    height, width = out.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = np.clip(np.round(face.box).astype(int), 0, [width, height, width, height])
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        region = out[y1:y2, x1:x2]
        block = max(8, -(-max(x2 - x1, y2 - y1) // MAX_BLOCKS))  # ceil: the longer side gets MAX_BLOCKS at most
        small = cv2.resize(region, (max(1, (x2 - x1) // block), max(1, (y2 - y1) // block)), interpolation=cv2.INTER_AREA)
        out[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    return out


def annotate(
    image: np.ndarray, faces: list[Face], *, counts: dict[str, int] | None = None, fps: float | None = None, blur: bool = False
) -> np.ndarray:
    """Boxes and labels per face, and a banner with the compliance summary (and FPS if given)."""
    out = blur_faces(image, faces) if blur else image.copy()
    scale = max(0.8, min(out.shape[:2]) / 600)  # readable labels from VGA frames up
    thickness = max(1, int(round(scale * 2)))
    for face in faces:
        colour = UNCERTAIN if face.uncertain else COLOURS.get(face.label, (255, 255, 255))
        x1, y1, x2, y2 = np.round(face.box).astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{face.label.replace('_', ' ')}{'?' if face.uncertain else ''} {face.score:.0%}"
        if face.track_id is not None:
            text = f"#{face.track_id} {text}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, 1)
        top = max(0, y1 - th - 4)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 4), colour, -1)
        cv2.putText(out, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (0, 0, 0), 1, cv2.LINE_AA)
    summary = summary_text(faces, counts, fps)
    banner_h = int(26 * scale) + 8
    cv2.rectangle(out, (0, 0), (out.shape[1], banner_h), (20, 20, 20), -1)
    cv2.putText(out, summary, (6, banner_h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def summary_text(faces: list[Face], counts: dict[str, int] | None, fps: float | None) -> str:
    compliant = sum(face.compliant for face in faces)
    text = f"faces {len(faces)} | compliant {compliant} | non-compliant {len(faces) - compliant}"
    if counts:
        text += f" | people seen {counts.get('people_seen', 0)}"
    if fps is not None:
        text += f" | {fps:.1f} FPS"
    return text
