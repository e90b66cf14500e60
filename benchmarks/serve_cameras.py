"""How many 640x480 cameras ``maskwatch serve``'s one worker holds, at what FPS; frame-to-event latency; memory.

Each camera is a real reader decoding an H.264 file at 25 fps (looped), as a camera would deliver it; the
worker runs the shipped models (CenterFace at ``--detector-size``, int8 classifier) on the newest frame of
each camera, as fast as the CPU allows (``max_fps`` 25). The clip shows scikit-image's public-domain astronaut
(no mask) walking in and out, so events are raised all the time: latency is from the capture of the frame that
completed ``min_frames`` to the moment the event reached the store writer's queue. Figures, not assertions.

    python benchmarks/serve_cameras.py --cameras 1 2 4 8 --detect-every 1 2 --seconds 15 --soak-minutes 10
    python benchmarks/serve_cameras.py --cameras --service-soak-minutes 10   # the whole service, as a subprocess
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.serve_clips: the clip composer

from tests.serve_clips import Appearance, Person, render, write_clip  # noqa: E402

from maskwatch.runtime.tracking import Tracker  # noqa: E402
from maskwatch.serve.cameras import CameraReader  # noqa: E402
from maskwatch.serve.config import EventsConfig, ResolvedCamera  # noqa: E402
from maskwatch.serve.events import EventEngine  # noqa: E402
from maskwatch.serve.worker import BatchInference, CameraWork, run_worker  # noqa: E402


class LoopingReader(CameraReader):
    """A file camera that starts over at the end (a long-running 'camera' for the soak)."""

    def _run(self) -> None:
        while not self._stop.is_set():
            capture = self._open()
            if capture is None:
                return
            self._read_loop(capture, finite=True)
            capture.release()


def make_clip(folder: Path) -> Path:
    from maskwatch.runtime.pipeline import default_sample_image

    face = Person(default_sample_image()[1][0:300, 100:350], "without_mask", "astronaut")
    cast = [Appearance(face, 40, 0, 100), Appearance(face, 380, 150, 75)]
    return write_clip(render(cast, 250), folder / "camera.mp4", fps=25)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(clip: Path, infer: BatchInference, n_cameras: int, detect_every: int, seconds: float, size: int, samples=None) -> dict:
    """Run ``n_cameras`` readers + the worker for ``seconds``; return per-camera FPS and event latencies."""
    events = EventsConfig(min_frames=3, min_score=0.6, cooldown_s=0.5)
    works, readers = [], []
    for i in range(n_cameras):
        camera = ResolvedCamera(
            name=f"cam{i}", source=str(clip), detector_size=size, detect_every=detect_every, max_fps=25, min_face_px=16,
            offline_after_s=10,
        )  # fmt: skip
        reader = LoopingReader(camera).start()
        readers.append(reader)
        works.append(CameraWork(camera, reader, Tracker(infer.classifier.labels), EventEngine(camera.name, events, "bench")))
    latencies: list[float] = []

    def sink(messages, _deltas) -> None:
        now = time.time()
        latencies.extend((now - m.event.start_time) * 1e3 for m in messages if m.type == "new")

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(works, infer, sink, stop), daemon=True)
    time.sleep(1.0)  # readers open their files
    worker.start()
    time.sleep(min(3.0, seconds / 4))  # warm-up: sessions allocate on the first frames
    start_frames = [w.frames for w in works]
    start_detections = [w.detections for w in works]
    latencies.clear()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        time.sleep(min(10.0, seconds))
        if samples is not None:
            samples.append((time.perf_counter() - started, rss_mb()))
    elapsed = time.perf_counter() - started
    fps = [(w.frames - f0) / elapsed for w, f0 in zip(works, start_frames)]
    det = [(w.detections - d0) / elapsed for w, d0 in zip(works, start_detections)]
    stop.set()
    worker.join(timeout=10)
    for reader in readers:
        reader.stop()
    return {"fps": fps, "det": det, "latency": latencies, "read_fps": [r.state.fps for r in readers]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--detect-every", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per row")
    parser.add_argument("--detector-size", type=int, default=320)
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="then run 2 cameras this long and sample memory")
    parser.add_argument("--service-soak-minutes", type=float, default=0.0, help="then run `maskwatch serve` this long (RSS)")
    args = parser.parse_args()
    console = Console(width=150)
    infer = BatchInference()
    with tempfile.TemporaryDirectory() as folder:
        clip = make_clip(Path(folder))
        table = Table(title=f"maskwatch serve: 640x480 cameras at 25 fps in, CenterFace {args.detector_size}, one worker")
        for column in (
            "cameras",
            "detect_every",
            "processed FPS per camera (min / mean)",
            "detections/s (all)",
            "new-event latency ms p50 / p95 (n)",
        ):
            table.add_column(column, justify="right")
        for every in args.detect_every if args.cameras else []:
            for n in args.cameras:
                result = run(clip, infer, n, every, args.seconds, args.detector_size)
                lat = np.array(result["latency"]) if result["latency"] else np.array([np.nan])
                table.add_row(
                    str(n), str(every), f"{min(result['fps']):.1f} / {np.mean(result['fps']):.1f}", f"{sum(result['det']):.1f}",
                    f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} ({len(result['latency'])})",
                )  # fmt: skip
                console.print(f"done: {n} camera(s), detect_every {every}")
        if args.cameras:
            console.print(table)
        if args.soak_minutes > 0:
            soak(console, clip, infer, args)
        if args.service_soak_minutes > 0:
            service_soak(console, clip, args.service_soak_minutes)


def soak(console: Console, clip: Path, infer: BatchInference, args) -> None:
    samples: list[tuple[float, float]] = []
    result = run(clip, infer, 2, 1, args.soak_minutes * 60, args.detector_size, samples)
    first, last, peak = samples[0][1], samples[-1][1], max(s[1] for s in samples)  # the first sample is after 10 s
    table = Table(title=f"soak: 2 cameras, detect_every 1, {args.soak_minutes:g} min")
    for column in ("RSS at 10 s (MB)", "RSS at end (MB)", "peak (MB)", "growth", "processed FPS per camera", "events"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{first:.1f}", f"{last:.1f}", f"{peak:.1f}", f"{(last - first) / first:+.1%}",
        f"{min(result['fps']):.1f} / {np.mean(result['fps']):.1f}", str(len(result["latency"])),
    )  # fmt: skip
    console.print(table)
    console.print("RSS samples (s, MB): " + ", ".join(f"{t:.0f}:{m:.0f}" for t, m in samples))


def _clear_retained(prefix: str, topics: list[str]) -> None:
    """Leave nothing of the run on the local broker."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    for topic in topics:
        client.publish(f"{prefix}/{topic}", b"", qos=1, retain=True).wait_for_publish(2)
    client.disconnect()
    client.loop_stop()


def service_soak(console: Console, clip: Path, minutes: float) -> None:
    """The whole service as users run it (``maskwatch serve`` subprocess: 2 RTSP cameras, SQLite, snapshots, HTTP,
    MQTT when Mosquitto runs on 127.0.0.1:1883); its RSS sampled every 10 s. Each RTSP camera replays the clip per
    connection, so the readers also go through a drop and reconnect every 10 s."""
    import json
    import os
    import signal
    import subprocess
    import urllib.request

    from tests.rtsp_camera import RtspCamera
    from tests.serve_clips import ffmpeg_exe
    from tests.serve_support import free_port, port_open

    from maskwatch.serve.store import Store

    folder = Path(tempfile.mkdtemp(prefix="maskwatch-soak-"))
    cameras = [RtspCamera(ffmpeg_exe(), clip, plays=10**6) for _ in range(2)]
    port = free_port()
    mqtt = f"mqtt: {{topic_prefix: maskwatch-bench-{os.getpid()}}}\n" if port_open("127.0.0.1", 1883) else ""
    config = folder / "serve.yaml"
    config.write_text(
        "node: bench\ndefaults: {max_fps: 25}\ncameras:\n"
        + "".join(f"  cam{i}: {{source: '{c.url}'}}\n" for i, c in enumerate(cameras))
        + f"events: {{cooldown_s: 0.5}}\nstore: 'sqlite:///{folder / 'events.db'}'\nsnapshots: {{dir: '{folder / 'snaps'}'}}\n"
        + f"http: {{port: {port}}}\n{mqtt}"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "maskwatch.cli", "serve", "--config", str(config)], stderr=subprocess.DEVNULL
    )
    samples, fps = [], []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < minutes * 60:
            time.sleep(10)
            status = Path(f"/proc/{process.pid}/status").read_text()
            samples.append((elapsed + 10, int(status.split("VmRSS:")[1].split()[0]) / 1024))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/cameras", timeout=5) as response:
                    fps.extend(c["fps"] for c in json.loads(response.read()) if c["status"] == "online")
            except (TimeoutError, OSError):
                pass
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        for camera in cameras:
            camera.close()
        if mqtt:
            _clear_retained(f"maskwatch-bench-{os.getpid()}", [f"cam{i}/status" for i in range(len(cameras))] + ["status"])
    events = Store(f"sqlite:///{folder / 'events.db'}").open().query_events(limit=None)
    base = next((m for t, m in samples if t >= 60), samples[0][1])
    table = Table(title=f"service soak: maskwatch serve, 2 RTSP cameras, {minutes:g} min ({folder})")
    for column in (
        "RSS at 60 s (MB)",
        "RSS at end (MB)",
        "peak (MB)",
        "growth from 60 s",
        "FPS per online camera (median)",
        "events",
    ):
        table.add_column(column, justify="right")
    last, peak = samples[-1][1], max(m for _, m in samples)
    table.add_row(
        f"{base:.1f}", f"{last:.1f}", f"{peak:.1f}", f"{(last - base) / base:+.1%}", f"{np.median(fps):.1f}", str(len(events))
    )
    console.print(table)
    console.print("RSS samples (s:MB): " + ", ".join(f"{t:.0f}:{m:.1f}" for t, m in samples))


if __name__ == "__main__":
    main()
