"""int8 static quantisation with ONNX Runtime (QDQ, per-channel weights), calibrated on real
validation face crops, and the fp32-vs-int8 parity gate that refuses a model that lost accuracy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from maskwatch.export.onnx_export import atomic_target, set_metadata
from maskwatch.runtime.classifier import METADATA_KEY, OnnxMaskClassifier

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}


class ParityError(RuntimeError):
    """The int8 model lost more accuracy than allowed; it was not written."""


class _Reader(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray], input_name: str):
        self._items: Iterator = iter({input_name: b} for b in batches)

    def get_next(self) -> dict | None:
        return next(self._items, None)


@dataclass(frozen=True)
class Parity:
    n: int
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)


def read_meta(path: Path) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise ValueError(f"{path}: not a maskwatch ONNX model (no '{METADATA_KEY}' metadata)")


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    calibration_crops: list[np.ndarray],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    calibration_source: str = "",
    batch_size: int = 32,
) -> Path:
    """Write an int8 QDQ copy of ``fp32_path``, calibrated on ``calibration_crops`` (RGB uint8)."""
    if not calibration_crops:
        raise ValueError("calibration set is empty: give a folder or split with at least one face image")
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: choose one of {', '.join(METHODS)}")
    meta = read_meta(fp32_path)
    classifier = OnnxMaskClassifier(fp32_path)
    batches = [classifier.preprocess(calibration_crops[i : i + batch_size]) for i in range(0, len(calibration_crops), batch_size)]
    pre, tmp = atomic_target(out_path), atomic_target(out_path)
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            _Reader(batches, classifier.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[method],
        )
        set_metadata(
            tmp,
            {
                **meta,
                "format": "int8",
                "calibration": {
                    "images": len(calibration_crops),
                    "method": method,
                    "per_channel": per_channel,
                    "source": calibration_source,
                },
            },
        )
        os.replace(tmp, out_path)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return Path(out_path)


def check_parity(fp32_path: Path, int8_path: Path, crops: list[np.ndarray], labels: list[int]) -> Parity:
    fp32 = OnnxMaskClassifier(fp32_path).predict_proba(crops).argmax(1)
    int8 = OnnxMaskClassifier(int8_path).predict_proba(crops).argmax(1)
    truth = np.asarray(labels)
    return Parity(len(truth), float((fp32 == truth).mean()), float((int8 == truth).mean()), float((fp32 == int8).mean()))
