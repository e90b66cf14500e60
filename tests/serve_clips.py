"""Test camera videos with a known cast: real face photos from ../shared/data walking through a 640x480 scene.

Each person is one face image pasted at a fixed place (with a small sway) for a number of frames; who is
non-compliant is known from the dataset folder and checked against the shipped model before use, so the
expected events are exact. ``rtsp_camera.RtspCamera`` serves such a file over RTSP.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 10


def ffmpeg_exe() -> str | None:
    """The imageio-ffmpeg wheel's binary (the dev extra installs it), else one on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


@dataclass(frozen=True)
class Person:
    image: np.ndarray  # RGB face photo
    label: str  # dataset label (with_mask / without_mask)
    name: str


@dataclass(frozen=True)
class Appearance:
    person: Person
    x: int  # left edge in the scene
    first: int  # first frame
    frames: int

    def centre_x(self, height: int = 200) -> float:
        h, w = self.person.image.shape[:2]
        return self.x + w * height / h / 2


def background() -> np.ndarray:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    scene = np.stack([90 + xs * 60 // WIDTH, 100 + ys * 40 // HEIGHT, np.full_like(xs, 110)], axis=2)
    return scene.astype(np.uint8)


def paste(scene: np.ndarray, face: np.ndarray, x: int, y: int, height: int = 200) -> None:
    h, w = face.shape[:2]
    width = int(round(w * height / h))
    resized = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA)
    x2, y2 = min(WIDTH, x + width), min(HEIGHT, y + height)
    scene[y:y2, x:x2] = resized[: y2 - y, : x2 - x]


def render(cast: list[Appearance], total_frames: int) -> list[np.ndarray]:
    base = background()
    frames = []
    for i in range(total_frames):
        scene = base.copy()
        for a in cast:
            if a.first <= i < a.first + a.frames:
                sway = int(round(4 * np.sin((i - a.first) / 3)))
                paste(scene, a.person.image, a.x + sway, 140 + sway // 2)
        frames.append(scene)
    return frames


def write_clip(frames: list[np.ndarray], path: Path, fps: int = FPS) -> Path:
    """H.264 mp4 (keyframe every second, so an RTSP client shows a picture quickly)."""
    exe = ffmpeg_exe()
    if exe is None:
        raise RuntimeError("no ffmpeg (install Debian's ffmpeg or the imageio-ffmpeg wheel)")
    command = [
        exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}",
        "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p", str(path),
    ]  # fmt: skip
    subprocess.run(command, input=b"".join(f.tobytes() for f in frames), check=True, timeout=120)
    return path


def load_people(root: Path, label: str, count: int, check) -> list[Person]:
    """The first ``count`` photos of ``label`` that ``check(scene) -> (n_faces, label, score)`` sees as one clear face."""
    people = []
    for path in sorted((root / label).glob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        if not 0.6 <= w / h <= 1.4 or min(h, w) < 100:
            continue
        scene = background()
        paste(scene, image, 220, 140)
        n, found, score = check(scene)
        if n == 1 and found == label and score >= 0.95:
            people.append(Person(image, label, f"{label}/{path.name}"))
            if len(people) == count:
                break
    return people
