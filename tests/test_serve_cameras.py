"""Camera readers on real video: newest frame only, finite files, garbage, unreachable and dropping RTSP streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydantic")

from tests.rtsp_camera import RtspCamera  # noqa: E402
from tests.serve_clips import background, ffmpeg_exe, write_clip  # noqa: E402
from tests.serve_support import free_port, wait_for  # noqa: E402

from maskwatch.serve.cameras import CameraReader  # noqa: E402
from maskwatch.serve.config import ResolvedCamera  # noqa: E402


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """2 s at 10 fps: a bright square moving over the scene (frame index readable from its position)."""
    if ffmpeg_exe() is None:
        pytest.skip("no ffmpeg binary")
    frames = []
    for i in range(20):
        frame = background()
        frame[100:160, 20 + 25 * i : 80 + 25 * i] = 255
        frames.append(frame)
    return write_clip(frames, tmp_path_factory.mktemp("clip") / "short.mp4")


def camera(source: str, **kw) -> ResolvedCamera:
    values = dict(detector_size=320, detect_every=1, max_fps=10, min_face_px=16, offline_after_s=2)
    values.update(kw)
    return ResolvedCamera(name="cam", source=source, **values)


def recorder():
    seen: list[tuple[str, str | None]] = []
    return seen, lambda _name, status, reason: seen.append((status, reason))


def test_a_file_plays_once_and_ends_with_its_reason(short_clip: Path):
    seen, on_status = recorder()
    reader = CameraReader(camera(str(short_clip)), on_status=on_status).start()
    assert wait_for(lambda: reader.finished, 15)
    assert reader.state.frames_read == 20 and reader.state.fps == pytest.approx(10, rel=0.3)  # paced as a live camera
    assert seen == [("online", None), ("offline", "end of file")]


def test_a_slow_consumer_gets_the_newest_frame_not_a_backlog(short_clip: Path):
    reader = CameraReader(camera(str(short_clip)), pace_files=False).start()
    assert wait_for(lambda: reader.finished, 15)
    frame = reader.take(0)
    assert frame.seq == 20 and frame.image.shape == (480, 640, 3)
    assert frame.image[130, 20 + 25 * 19 + 30].min() > 200  # the square where the last frame has it
    assert reader.take(frame.seq) is None  # nothing newer: no queue of old frames behind it


def test_garbage_and_missing_files_are_offline_with_the_reason(tmp_path: Path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 50_000, dtype=np.uint8).tobytes())
    for source in (garbage, tmp_path / "missing.mp4"):
        seen, on_status = recorder()
        reader = CameraReader(camera(str(source)), on_status=on_status).start()
        assert wait_for(lambda r=reader: r.finished, 10)
        assert seen == [("offline", "cannot open the file")]


def test_an_unreachable_stream_is_offline_and_keeps_retrying():
    seen, on_status = recorder()
    reader = CameraReader(camera(f"rtsp://127.0.0.1:{free_port()}/cam"), on_status=on_status, backoff_s=0.1).start()
    assert wait_for(lambda: seen == [("offline", "cannot connect")], 10)
    assert not reader.finished  # still trying, with back-off
    reader.stop()
    assert reader.finished


def test_a_dropped_stream_reconnects_and_goes_on(short_clip: Path):
    """The RTSP camera plays twice, dropping the connection in between; the reader comes back on its own."""
    rtsp = RtspCamera(ffmpeg_exe(), short_clip, plays=2)
    seen, on_status = recorder()
    reader = CameraReader(camera(rtsp.url), on_status=on_status, backoff_s=0.2).start()
    try:
        assert wait_for(lambda: rtsp.clients == 2 and seen[-1:] == [("offline", "cannot connect")], 45), seen
        assert seen[:4] == [("online", None), ("offline", "stream ended"), ("online", None), ("offline", "stream ended")]
        assert reader.state.frames_read >= 36  # both plays, give or take a frame at each start
    finally:
        reader.stop()
        rtsp.close()


def test_watchdog_marks_a_silent_camera_offline(short_clip: Path):
    seen, on_status = recorder()
    reader = CameraReader(camera(str(short_clip), offline_after_s=1.5), on_status=on_status)
    reader.state.status, reader.state.last_frame_time = "online", 1000.0
    reader.watchdog(now=1001.0)
    assert seen == []
    reader.watchdog(now=1002.0)
    assert seen == [("offline", "no frames for 1.5 s")] and reader.state.status == "offline"


def test_sigint_stops_the_service_and_ends_the_open_event(short_clip: Path, tmp_path: Path):
    """The whole service in this process with injected detections: SIGINT ends the open event at its last sighting."""
    import os
    import signal
    import threading

    from maskwatch.results import Face
    from maskwatch.serve.config import parse_config
    from maskwatch.serve.service import Service
    from maskwatch.serve.store import Store

    def infer(items):
        probs = {"with_mask": 0.02, "without_mask": 0.96, "mask_incorrect": 0.02}
        box = np.array([100, 100, 180, 200], np.float32)
        return [[Face(box=box, label="without_mask", score=0.96, probs=probs, face_score=0.9)] for _ in items]

    url = f"sqlite:///{tmp_path / 'e.db'}"
    config = parse_config(
        {"node": "n1", "cameras": {"cam": {"source": str(short_clip)}}, "store": url, "http": {"port": 0},
         "snapshots": {"dir": str(tmp_path / "snaps")}, "events": {"cooldown_s": 30}}
    )  # fmt: skip
    service = Service(config, infer=infer).start()
    store = Store(url).open()
    assert wait_for(lambda: len(store.query_events()) == 1, 10)

    def interrupt_when_handled() -> None:  # never a stray SIGINT into pytest itself
        if wait_for(lambda: signal.getsignal(signal.SIGINT) == service._on_signal, 10, 0.01):  # noqa: SLF001
            os.kill(os.getpid(), signal.SIGINT)
        else:
            service.stop_event.set()

    threading.Thread(target=interrupt_when_handled, daemon=True).start()
    service.run()  # returns after the signal, having shut down
    (event,) = store.query_events()
    assert event["end_time"] is not None and event["end_time"] <= time_iso_now()
    assert Path(event["snapshot"]).is_file()


def time_iso_now() -> str:
    from time import time

    from maskwatch.serve.events import iso

    return iso(time())
