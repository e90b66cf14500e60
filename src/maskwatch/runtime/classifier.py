"""The mask classifier on ONNX Runtime: face crops in, calibrated class probabilities out.

Everything the preprocessing needs (input size, mean/std, label order, temperature, prior correction, crop margin)
is read from the ONNX file's metadata, so a retrained or re-exported model needs no code change.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.crop import resize_square, whole_image_crop
from maskwatch.metrics import read_logit_offsets, softmax
from maskwatch.runtime.assets import DEFAULT_CLASSIFIER, asset_path
from maskwatch.runtime.session import create_session

METADATA_KEY = "maskwatch"


class ModelFileError(ValueError):
    """A file that is not a usable maskwatch ONNX classifier."""


@dataclass(frozen=True)
class ClassifierInfo:
    labels: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    temperature: float
    margin: float
    extra: dict
    #: Added to the calibrated logits to undo training's class weights (``maskwatch.metrics.prior_offsets``); None
    #: for zeros.
    logit_offsets: tuple[float, ...] | None = None

    @classmethod
    def from_meta(cls, meta: dict, path: str) -> ClassifierInfo:
        try:
            info = cls(
                tuple(meta["labels"]),
                int(meta["input_size"]),
                tuple(meta["mean"]),
                tuple(meta["std"]),
                float(meta.get("temperature", 1.0)),
                float(meta["margin"]),
                meta,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{path}: maskwatch metadata is incomplete ({error})") from None
        try:
            return dataclasses.replace(info, logit_offsets=read_logit_offsets(meta))
        except ValueError as error:
            raise ModelFileError(f"{path}: {error}") from None

    @property
    def whole_image(self) -> str:
        """How the model was trained to see a file that is one whole face; models before issue 9 saw it stretched."""
        return str(self.extra.get("whole_image", "stretch"))


def read_meta(path: str | Path) -> dict:
    """The maskwatch metadata (preprocessing, labels, calibration) of an ONNX classifier file: the one reader
    that the runtime, export and quantisation share."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf and onnx raise several types for a bad file
        raise ModelFileError(f"{path}: not a loadable ONNX model ({str(error)[:200]})") from None
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                return json.loads(entry.value)
            except json.JSONDecodeError as error:
                raise ModelFileError(f"{path}: maskwatch metadata is not JSON ({error})") from None
    raise ModelFileError(f"{path}: not a maskwatch classifier (no '{METADATA_KEY}' metadata in the ONNX file)")


def _session_meta(session, path: str) -> dict:
    """The maskwatch metadata as ONNX Runtime already read it (no ``onnx`` import, no second parse of the file at
    start-up); :func:`read_meta` when it is missing or bad, for its clear error."""
    value = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        return json.loads(value) if value is not None else read_meta(path)
    except json.JSONDecodeError:
        return read_meta(path)


class OnnxMaskClassifier:
    """Classify RGB face crops; one ONNX Runtime session for the object's lifetime."""

    def __init__(self, path: str | Path | None = None, *, device: str = "cpu", threads: int = 0):
        self.path = str(path or asset_path(DEFAULT_CLASSIFIER))
        if not Path(self.path).is_file():
            raise ModelFileError(f"{self.path}: no such model file")
        try:
            self.session = create_session(self.path, device=device, threads=threads)
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types
            if isinstance(error, ValueError) and "device" in str(error):
                raise
            raise ModelFileError(f"{self.path}: not a loadable ONNX model ({str(error)[:200]})") from None
        self.info = ClassifierInfo.from_meta(_session_meta(self.session, self.path), self.path)
        self.input_name = self.session.get_inputs()[0].name
        self._mean = np.array(self.info.mean, np.float32) * 255.0
        self._inv_std = 1.0 / (np.array(self.info.std, np.float32) * 255.0)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    def face_file_crop(self, image: np.ndarray) -> np.ndarray:
        """A file that is one whole face (a class-folder image) cut the way this model's training cut such files."""
        return whole_image_crop(image, geometry=self.info.whole_image, margin=self.info.margin, size=self.info.input_size)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 crops of any size -> normalised NCHW float32 batch."""
        size = self.info.input_size
        batch = np.stack([resize_square(crop, size) for crop in crops]).astype(np.float32)
        batch = (batch - self._mean) * self._inv_std
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def logits(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.session.run(None, {self.input_name: self.preprocess(crops)})[0]

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from raw logits: the file's temperature and prior correction applied."""
        return softmax(logits, self.info.temperature, self.info.logit_offsets)

    def predict_proba(self, crops: Sequence[np.ndarray], *, mirrored: bool = False) -> np.ndarray:
        """Calibrated probabilities (temperature from the model's validation split). ``mirrored`` also classifies
        each crop's mirror image, in the same batch, and averages the two: a face and its mirror are the same face,
        and the average errs less (held-out val faces, shipped int8 model: MaskedFace-Net 0.967 -> 0.984, scene faces
        0.954 -> 0.973, scenes-ilc 0.952 -> 0.957, chandrika unchanged; ``benchmarks/mirrored_classifier.py``)."""
        if not mirrored or len(crops) == 0:
            return self.calibrated(self.logits(crops))
        both = self.calibrated(self.logits([*crops, *(np.ascontiguousarray(c[:, ::-1]) for c in crops)]))
        return (both[: len(crops)] + both[len(crops) :]) / 2
