"""Start-up caches (prepared and optimised CenterFace graphs) and the read-ahead thread change no result."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from maskwatch.prefetch import prefetch
from maskwatch.runtime import detectors
from maskwatch.runtime.graph_cache import build_and_save, cache_key, cached_bytes, graph_cache_dir


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private maskwatch cache holding only CenterFace's source file (when this machine has one)."""
    from maskwatch.runtime.assets import centerface_path

    try:
        source = centerface_path(allow_download=False)
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"CenterFace weights not available here ({error})")
    monkeypatch.setenv("MASKWATCH_CACHE", str(tmp_path))
    (tmp_path / "centerface.onnx").write_bytes(source.read_bytes())
    detectors._centerface_model.cache_clear()
    detectors._centerface_int8_model.cache_clear()
    yield tmp_path
    detectors._centerface_model.cache_clear()
    detectors._centerface_int8_model.cache_clear()


def _scene() -> np.ndarray:
    from maskwatch.runtime.pipeline import default_sample_image

    return default_sample_image()[1]


def test_cached_graphs_give_identical_detections(cache: Path):
    first = detectors.CenterFaceDetector(input_size=320, threshold=0.2, int8=False)  # builds and stores both graphs
    stored = sorted(p.name for p in graph_cache_dir().iterdir())
    assert any(n.endswith(".ort.onnx") for n in stored) and any(not n.endswith(".ort.onnx") for n in stored)
    detectors._centerface_model.cache_clear()
    detectors._centerface_int8_model.cache_clear()
    second = detectors.CenterFaceDetector(input_size=320, threshold=0.2, int8=False)  # loads them
    image = _scene()
    a, b = first.detect(image), second.detect(image)
    assert len(a.boxes) >= 1
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_damaged_optimised_graph_is_rebuilt(cache: Path):
    detectors.CenterFaceDetector(input_size=320, int8=False)
    (optimised,) = [p for p in graph_cache_dir().iterdir() if p.name.endswith(".ort.onnx")]
    optimised.write_bytes(b"not onnx")
    detector = detectors.CenterFaceDetector(input_size=320, int8=False)
    assert len(detector.detect(_scene()).boxes) >= 1
    assert optimised.stat().st_size > 1000  # written again


def test_unwritable_cache_only_costs_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("MASKWATCH_CACHE", str(blocker))  # a file where the folder should be
    assert cached_bytes("thing", cache_key(a=1), lambda: b"built") == b"built"
    assert build_and_save(lambda path: ("session", path), graph_cache_dir() / "g.ort.onnx") == ("session", None)


def test_cache_key_depends_on_every_part():
    assert cache_key(a=1, b=2) == cache_key(b=2, a=1)
    assert cache_key(a=1, b=2) != cache_key(a=1, b=3)


def test_prefetch_keeps_order_and_raises_errors_in_the_caller():
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("reader broke")

    got = []
    with pytest.raises(ValueError, match="reader broke"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]


def test_prefetch_stopped_early_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed.wait(5.0)


def test_int8_centerface_is_made_once_finds_what_fp32_finds_and_keeps_7_bit_weights(cache: Path):
    import onnx
    from onnx import numpy_helper

    from maskwatch.runtime.boxes import iou_matrix

    assert detectors.CenterFaceDetector(input_size=320).int8 and not detectors.CenterFaceDetector(input_size=960).int8
    int8 = detectors.CenterFaceDetector(input_size=320, threshold=0.2)  # the speed path's default
    (made,) = [
        p for p in graph_cache_dir().iterdir() if p.name.startswith("centerface-int8") and not p.name.endswith(".ort.onnx")
    ]
    fp32 = detectors.CenterFaceDetector(input_size=320, threshold=0.2, int8=False)
    image = _scene()
    a, b = int8.detect(image), fp32.detect(image)
    i, j = int(a.scores.argmax()), int(b.scores.argmax())
    assert iou_matrix(a.boxes[i : i + 1], b.boxes[j : j + 1])[0, 0] > 0.9 and abs(a.scores[i] - b.scores[j]) < 0.1
    model = onnx.load(str(made))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) > 20 and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64  # 7-bit, like the classifier
    stamp = made.stat().st_mtime_ns
    detectors._centerface_int8_model.cache_clear()
    detectors.CenterFaceDetector(input_size=320)  # a later start reads it
    assert made.stat().st_mtime_ns == stamp


def test_damaged_int8_graph_is_made_again_and_a_failed_quantisation_falls_back_to_fp32(
    cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from maskwatch.runtime import centerface_int8

    detectors.CenterFaceDetector(input_size=320)
    for path in graph_cache_dir().glob("centerface-int8-*"):
        path.write_bytes(b"truncated")  # the made graph and its optimised form
    detectors._centerface_int8_model.cache_clear()
    again = detectors.CenterFaceDetector(input_size=320, threshold=0.2)
    assert again.int8 and len(again.detect(_scene()).boxes) >= 1

    def broken(*args, **kwargs):
        raise RuntimeError("converter failed")

    for path in graph_cache_dir().glob("centerface-int8-*"):
        path.unlink()
    detectors._centerface_int8_model.cache_clear()
    monkeypatch.setattr(centerface_int8, "quantize_centerface", broken)
    with caplog.at_level("WARNING"):
        fallback = detectors.CenterFaceDetector(input_size=320, threshold=0.2)
    assert not fallback.int8 and len(fallback.detect(_scene()).boxes) >= 1
    assert "int8 CenterFace unavailable here (converter failed); running fp32" in caplog.text
