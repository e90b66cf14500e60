"""Runtime: no torch, classifier metadata, pipeline with any detector, sources, JSON, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_face

from maskwatch.runtime.classifier import ModelFileError, OnnxMaskClassifier
from maskwatch.runtime.detectors import Detections, decode_centerface, make_detector, nms
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig, default_sample_image
from maskwatch.runtime.stream import OutputOptions, run
from maskwatch.sources import describe_source, iter_frames


class BoxDetector:
    """A stand-in detector: one face box in the middle of the image, or none."""

    def __init__(self, found: bool = True):
        self.found = found

    def detect(self, image: np.ndarray) -> Detections:
        if not self.found:
            return Detections.empty()
        h, w = image.shape[:2]
        return Detections(np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], np.float32), np.array([0.9], np.float32))


@pytest.fixture
def pipeline(tiny_model) -> MaskPipeline:
    return MaskPipeline(PipelineConfig(model=str(tiny_model[1])), detector=BoxDetector())


def test_runtime_does_not_import_torch(tiny_model, centerface_file, tmp_path: Path):
    image = tmp_path / "face.png"
    Image.fromarray(synthetic_face("with_mask", 96)).save(image)
    code = f"""
import sys
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig
from maskwatch.runtime.stream import run, OutputOptions
from maskwatch.imaging import load_rgb
d = MaskPipeline(PipelineConfig(model={str(tiny_model[1])!r}, detector_size=128))
r = d(load_rgb({str(image)!r}))
run({str(image)!r}, d, OutputOptions())
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_classifier_reads_preprocessing_from_metadata(tiny_model):
    classifier = OnnxMaskClassifier(tiny_model[1])
    assert classifier.labels == ("with_mask", "without_mask", "mask_incorrect")
    assert classifier.info.input_size == 32
    probs = classifier.predict_proba([synthetic_face("with_mask", 50), synthetic_face("without_mask", 70)])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_prior_offsets_turn_a_class_weighted_posterior_back_into_the_plain_one():
    from maskwatch.metrics import prior_offsets, softmax

    rng = np.random.default_rng(0)
    posterior = rng.dirichlet(np.ones(3), size=20)
    weights = np.array([0.4, 0.65, 1.95])  # inverse frequency: the rare class weighs most
    weighted_logits = np.log(posterior * weights) + rng.normal(size=(20, 1))  # any per-row constant: softmax ignores it
    assert np.allclose(softmax(weighted_logits, 1.0, prior_offsets(weights)), posterior)
    assert not np.allclose(softmax(weighted_logits), posterior)
    assert prior_offsets([2.0, 2.0, 2.0]) == [0.0, 0.0, 0.0]  # unweighted training: nothing to undo
    with pytest.raises(ValueError, match="positive"):
        prior_offsets([1.0, 0.0, 1.0])


def test_classifier_applies_the_files_logit_offsets(tiny_model, tmp_path: Path):
    import shutil

    from maskwatch.export.onnx_export import set_metadata
    from maskwatch.metrics import softmax
    from maskwatch.runtime.classifier import read_meta

    crops = [synthetic_face("with_mask", 50), synthetic_face("mask_incorrect", 70)]
    plain = OnnxMaskClassifier(tiny_model[1])
    assert plain.info.logit_offsets == (0.0, 0.0, 0.0)  # files made before the correction existed
    corrected_path = shutil.copy(tiny_model[1], tmp_path / "corrected.onnx")
    set_metadata(corrected_path, {**read_meta(tiny_model[1]), "temperature": 2.0, "logit_offsets": [0.5, 0.0, -30.0]})
    corrected = OnnxMaskClassifier(corrected_path)
    logits = corrected.logits(crops)
    expected = softmax(logits / 2.0 + np.array([0.5, 0.0, -30.0]))
    assert np.allclose(corrected.predict_proba(crops), expected, atol=1e-6)
    assert corrected.predict_proba(crops, mirrored=True)[:, 2].max() < 1e-9
    assert not np.allclose(plain.predict_proba(crops), expected, atol=1e-3)


@pytest.mark.parametrize(
    "offsets", [[0.5, 0.0], ["0.5", "0", "-1"], [True, False, True], [[1], [2], [3]], [float("nan"), 0, 0], "0.5"]
)
def test_malformed_logit_offsets_are_refused_naming_the_file_and_key(tiny_model, tmp_path: Path, offsets):
    import shutil

    from maskwatch.export.onnx_export import set_metadata
    from maskwatch.runtime.classifier import read_meta

    path = shutil.copy(tiny_model[1], tmp_path / "bad.onnx")
    set_metadata(path, {**read_meta(tiny_model[1]), "logit_offsets": offsets})
    with pytest.raises(ModelFileError, match=r"bad.onnx: logit_offsets must list one finite number per label \(3\)"):
        OnnxMaskClassifier(path)


def test_non_maskwatch_onnx_is_refused(tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelFileError, match="not a maskwatch classifier"):
        OnnxMaskClassifier(path)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="not a loadable"):
        OnnxMaskClassifier(tmp_path / "junk.onnx")


def test_unknown_device_and_detector_list_choices(tiny_model):
    with pytest.raises(ValueError, match="cpu"):
        OnnxMaskClassifier(tiny_model[1], device="tpu")
    with pytest.raises(ValueError, match="centerface"):
        make_detector("yolo")


def test_pipeline_results_are_typed_and_in_image_pixels(pipeline):
    image = np.zeros((100, 200, 3), np.uint8)
    result = pipeline(image)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face.box.tolist() == [50.0, 25.0, 150.0, 75.0]
    assert face.label in ("with_mask", "without_mask", "mask_incorrect")
    assert set(result.timings_ms) == {"detect", "crop", "classify"}


def test_centerface_finds_the_package_sample_face():
    found = make_detector("centerface", input_size=512).detect(default_sample_image()[1])
    assert len(found.boxes) >= 1 and found.landmarks.shape == (len(found.boxes), 5, 2)
    x1, y1, x2, y2 = found.boxes[found.scores.argmax()]
    assert 150 < (x1 + x2) / 2 < 300 and 50 < (y1 + y2) / 2 < 200  # the astronaut's face


def test_centerface_decoding_matches_a_hand_made_peak():
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[2, 3] = 0.9
    scale = np.zeros((2, 8, 8), np.float32)  # exp(0) * 4 = 4 px box
    offset = np.zeros((2, 8, 8), np.float32)
    marks = np.zeros((10, 8, 8), np.float32)
    boxes, scores, landmarks = decode_centerface(heatmap, scale, offset, marks, 0.5)
    assert boxes.tolist() == [[12.0, 8.0, 16.0, 12.0]] and scores.tolist() == pytest.approx([0.9])
    assert landmarks.shape == (1, 5, 2)
    assert nms(
        np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32), np.array([0.9, 0.8, 0.7], np.float32), 0.3
    ).tolist() == [0, 2]


@pytest.mark.parametrize(
    "source, kind",
    [
        ("0", "webcam"),
        ("rtsp://cam/1", "stream"),
        ("http://x/y.mjpg", "stream"),
        ("a/*.jpg", "glob"),
        ("clip.mp4", "video"),
        ("x.png", "image"),
    ],
)
def test_source_kinds(source, kind):
    assert describe_source(source) == kind


def write_video(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def test_folder_with_bad_files_yields_every_input_once(pipeline, tmp_path: Path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(synthetic_face("with_mask", 64)).save(folder / "good.png")
    Image.fromarray(synthetic_face("without_mask", 64)).convert("L").save(folder / "sub" / "gray.png")
    Image.fromarray(synthetic_face("without_mask", 64)).convert("RGBA").save(folder / "rgba.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (folder / "notes.txt").write_text("hello")
    (folder / "empty.mp4").write_bytes(b"")
    write_video(folder / "clip.avi", frames=4)
    Image.new("L", (10000, 10000)).save(folder / "huge.png")
    out = tmp_path / "out.jsonl"
    summary = run(str(folder), pipeline, OutputOptions(json_path=out, save_dir=tmp_path / "saved"))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    sources = [(Path(r["source"]).name, r["frame"]) for r in records]
    assert len(sources) == len(set(sources))
    names = {name for name, _ in sources}
    assert names == {"good.png", "gray.png", "rgba.png", "corrupt.jpg", "notes.txt", "empty.mp4", "clip.avi", "huge.png"}
    errors = {Path(r["source"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"corrupt.jpg", "notes.txt", "empty.mp4", "huge.png"}
    assert "pixel limit" in errors["huge.png"] and "empty" in errors["empty.mp4"]
    assert sum(1 for n, _ in sources if n == "clip.avi") == 4
    assert summary.errors == 4
    good = next(r for r in records if r["source"].endswith("good.png"))
    face = good["faces"][0]
    assert set(face) >= {"box", "label", "score", "face_score"} and len(face["box"]) == 4
    assert (tmp_path / "saved" / "good.jpg").is_file() and (tmp_path / "saved" / "clip_annotated.mp4").is_file()


def test_image_without_faces_gives_an_empty_list(tiny_model, tmp_path: Path):
    pipeline = MaskPipeline(PipelineConfig(model=str(tiny_model[1])), detector=BoxDetector(found=False))
    path = tmp_path / "blank.png"
    Image.new("RGB", (40, 40)).save(path)
    out = tmp_path / "o.jsonl"
    run(str(path), pipeline, OutputOptions(json_path=out))
    assert json.loads(out.read_text()) == {"source": str(path), "frame": 0, "faces": [], "width": 40, "height": 40}


def test_glob_source_and_video_stride(pipeline, tmp_path: Path):
    for i in range(3):
        Image.fromarray(synthetic_face("with_mask", 40, seed=i)).save(tmp_path / f"f{i}.png")
    frames = list(iter_frames(str(tmp_path / "*.png")))
    assert [Path(f.source).name for f in frames] == ["f0.png", "f1.png", "f2.png"]
    video = write_video(tmp_path / "v.avi", frames=6)
    assert [f.index for f in iter_frames(str(video), stride=2)] == [0, 2, 4]
    assert iter_frames(str(tmp_path / "none*.png")).__next__().error == "glob matched no files"


class FakeCapture:
    """A stream that gives 3 frames per connection, then drops; only the first 2 connects succeed."""

    opens = 0

    def __init__(self, target, *backend_and_params):
        FakeCapture.opens += 1
        self.ok = FakeCapture.opens <= 2
        self.left = 3

    def isOpened(self):
        return self.ok

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, prop):
        return 25.0

    def release(self):
        pass


def test_dropping_stream_reconnects_then_gives_up(monkeypatch):
    import maskwatch.sources as sources

    FakeCapture.opens = 0
    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    frames = list(iter_frames("rtsp://camera.invalid/stream", max_retries=2, backoff_s=0.001))
    good = [f.index for f in frames if f.error is None]
    # Frames from two connections, numbered on; the newest-frame reader may drop some, never reorders or repeats.
    assert good == sorted(set(good)) and good[-1] == 5 and any(i <= 2 for i in good)
    assert frames[-1].error and "gave up" in frames[-1].error


def test_missing_webcam_and_unreachable_url_are_errors(monkeypatch):
    import maskwatch.sources as sources

    FakeCapture.opens = 10  # every open fails
    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    assert "no webcam at index 7" in next(iter_frames("7")).error
    frames = list(iter_frames("http://nowhere.invalid/cam", max_retries=1, backoff_s=0.001))
    assert len(frames) == 1 and "cannot connect" in frames[0].error


def test_video_tracking_adds_ids_and_counts(pipeline, tmp_path: Path):
    out = tmp_path / "v.jsonl"
    run(str(write_video(tmp_path / "v.avi", frames=5)), pipeline, OutputOptions(json_path=out, detect_every=2))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    assert all(r["faces"][0]["track_id"] == 1 for r in records)
    assert records[-1]["counts"]["people_seen"] == 1


def _sample_clip(path: Path, frames: int = 12) -> Path:
    """The public-domain sample portrait panning across a 320x240 frame (a real face for CenterFace)."""
    _, image = default_sample_image()
    face = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (160, 160))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(frames):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        x = 10 + 12 * i
        canvas[40:200, x : x + 160] = face
        writer.write(canvas)
    writer.release()
    return path


@pytest.mark.parametrize("detect_every", [1, 3])
def test_frames_in_flight_give_the_results_of_one_frame_at_a_time(
    centerface_file, tmp_path: Path, monkeypatch, detect_every: int
):
    """Two frames are detected at once (really: the calls overlap), and the JSON, tracks and carried frames are those
    of a run that detects one frame at a time."""
    import threading
    import time

    import maskwatch.runtime.stream as stream

    clip = _sample_clip(tmp_path / "clip.avi")
    pipeline = MaskPipeline(PipelineConfig(detector_size=320))
    assert stream.frames_in_flight(pipeline) == 2
    busy, most, lock = [0], [0], threading.Lock()
    call = MaskPipeline.__call__

    def counted(self, image, **kwargs):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.02)  # long enough for a second frame to start meanwhile
        try:
            return call(self, image, **kwargs)
        finally:
            with lock:
                busy[0] -= 1

    outputs = {}
    for width in (1, 2):
        monkeypatch.setattr(stream, "FRAMES_IN_FLIGHT", width)
        monkeypatch.setattr(MaskPipeline, "__call__", counted)
        most[0] = 0
        out = tmp_path / f"w{width}.jsonl"
        run(str(clip), pipeline, OutputOptions(json_path=out, detect_every=detect_every))
        outputs[width] = out.read_text().splitlines()
        assert most[0] == width
    assert len(outputs[1]) == 12 and any(json.loads(line)["faces"] for line in outputs[1])
    assert outputs[2] == outputs[1]


def test_the_cli_face_size_floor_default_is_the_pipeline_default():
    from maskwatch.cli import MIN_FACE_SIZE_OPTION
    from maskwatch.runtime.pipeline import DEFAULT_MIN_FACE_SIZE

    assert MIN_FACE_SIZE_OPTION.default == DEFAULT_MIN_FACE_SIZE == PipelineConfig().min_face_size


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_pipeline_config_refuses_a_face_size_floor_that_is_not_a_pixel_count(bad: float):
    with pytest.raises(ValueError, match="min_face_size"):
        PipelineConfig(min_face_size=bad)
