"""int8 static quantisation with ONNX Runtime (QDQ, per-channel weights), calibrated on real
validation face crops, and the fp32-vs-int8 parity gate that refuses a model that lost accuracy."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from maskwatch.export.onnx_export import set_metadata
from maskwatch.fileio import atomic_path
from maskwatch.runtime.classifier import OnnxMaskClassifier, read_meta
from maskwatch.runtime.selfcheck import REFERENCE_COUNT, cpu_description, reference_inputs

log = logging.getLogger(__name__)

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
#: Per-method options: min-max averages per-batch ranges (less hostage to one outlier image); percentile clips the
#: top 0.01 %. Histogram methods keep every activation in memory, so they see at most HISTOGRAM_IMAGES images.
METHOD_OPTIONS = {"minmax": {"CalibMovingAverage": True}, "percentile": {"CalibPercentile": 99.99}, "entropy": {}}
HISTOGRAM_IMAGES = 256
#: Weight types. ``s8-reduced`` (the default since issue 15): int8 weights in 7 bits (|w| <= 64). On AVX2 without
#: VNNI, ONNX Runtime sums pairs of u8*s8 products in 16 bits; with |w| <= 64 such a pair is at most 2*255*64 = 32640,
#: so it cannot saturate, and the file computes alike on CPUs with and without VNNI, through the fast s8 kernels.
#: ``s8``: full 8-bit weights, which saturate there (an earlier shipped file lost 0.6 points on such a CPU). ``u8``:
#: uint8 weights also avoid the 16-bit sum, but ONNX Runtime has no fast kernel for them: 35x slower than
#: ``s8-reduced`` on this CPU (``benchmarks/int8_weight_types.py``).
WEIGHT_TYPES = {"u8": (QuantType.QUInt8, False), "s8": (QuantType.QInt8, False), "s8-reduced": (QuantType.QInt8, True)}
#: ``auto`` quantises with each of these and keeps the one that agrees best with fp32 on the calibration split.
AUTO_METHODS = ("minmax", "percentile")


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


#: The parity gate needs at least this many held-out faces: on a few dozen, one face is already several points.
MIN_PARITY_FACES = 100


def parity_refusal(parity: Parity, *, max_drop: float, min_faces: int = MIN_PARITY_FACES) -> str | None:
    """Why the int8 model must not be kept (too few held-out faces, or more than ``max_drop`` points lost), or None.

    ``parity`` must come from faces the calibration did not see: calibration fits the int8 ranges to its own images,
    so agreement measured on them flatters the model.
    """
    if parity.n < min_faces:
        return f"only {parity.n} held-out faces to check int8 against fp32 (need {min_faces}; see --min-parity-faces)"
    drop = round(parity.drop_points, 6)  # 0.5 points must pass a 0.5 limit despite float rounding
    if drop > max_drop:
        return f"int8 accuracy dropped {drop:.2f} points on {parity.n} held-out faces (> {max_drop})"
    return None


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    calibration_crops: list[np.ndarray],
    *,
    method: str = "auto",
    per_channel: bool = True,
    weights: str = "s8-reduced",
    calibration_source: str = "",
    batch_size: int = 32,
    selection_crops: list[np.ndarray] | None = None,
) -> Path:
    """Write an int8 QDQ copy of ``fp32_path``, calibrated on ``calibration_crops`` (RGB uint8), with reference outputs
    on this CPU recorded in its metadata (see :mod:`maskwatch.runtime.selfcheck`). With ``method="auto"``, the
    method is chosen on ``selection_crops`` (faces the calibration did not see; default: the calibration crops)."""
    if not calibration_crops:
        raise ValueError("calibration set is empty: give a folder or split with at least one face image")
    if method == "auto":
        return _quantize_best(
            fp32_path,
            out_path,
            calibration_crops,
            per_channel=per_channel,
            weights=weights,
            calibration_source=calibration_source,
            batch_size=batch_size,
            selection_crops=selection_crops,
        )
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: choose one of auto, {', '.join(METHODS)}")
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"weight type {weights!r}: choose one of {', '.join(WEIGHT_TYPES)}")
    weight_type, reduce_range = WEIGHT_TYPES[weights]
    meta = read_meta(fp32_path)
    classifier = OnnxMaskClassifier(fp32_path)
    if method != "minmax" and len(calibration_crops) > HISTOGRAM_IMAGES:
        pick = np.random.default_rng(0).choice(len(calibration_crops), HISTOGRAM_IMAGES, replace=False)
        calibration_crops = [calibration_crops[i] for i in sorted(pick)]
    if method != "minmax":
        # ONNX Runtime's histogram collector fails on batches of unequal size (e.g. 105 = 3x32 + 9): equal batches only.
        # (One image per batch avoided that but gave single-image activation ranges too narrow for 2048 bins.)
        if len(calibration_crops) > batch_size:
            calibration_crops = calibration_crops[: len(calibration_crops) // batch_size * batch_size]
    batches = [classifier.preprocess(calibration_crops[i : i + batch_size]) for i in range(0, len(calibration_crops), batch_size)]
    with tempfile.TemporaryDirectory(prefix="maskwatch-quant-") as scratch, atomic_path(out_path) as tmp:
        pre = Path(scratch) / "pre.onnx"  # a scratch file, not an output: it never lands beside out_path
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            _Reader(batches, classifier.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=weight_type,
            reduce_range=reduce_range,
            calibrate_method=METHODS[method],
            extra_options=METHOD_OPTIONS[method],
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
                    "weights": weights,
                    "source": calibration_source,
                },
            },
        )
        record_reference_outputs(tmp)
    return Path(out_path)


def _quantize_best(
    fp32_path: Path, out_path: Path, crops: list[np.ndarray], *, selection_crops: list[np.ndarray] | None, **options
) -> Path:
    """Try each of AUTO_METHODS on ``crops``; keep the int8 model whose probabilities stay closest to fp32's on
    ``selection_crops``.

    Closeness is the mean KL divergence from fp32's probabilities, not argmax agreement: two files that agree on
    every argmax can still rank faces differently, and end-to-end AP is a ranking. It is judged on faces the
    calibration did not see where given, since each method's ranges fit its own calibration images: with 7-bit weights
    min-max is closest on the calibration faces and percentile on the held-out ones.
    """
    judged = selection_crops if selection_crops else crops
    reference = OnnxMaskClassifier(fp32_path).predict_proba(judged)
    best_divergence, best_path = float("inf"), None
    for method in AUTO_METHODS:
        candidate = Path(out_path).with_name(f".{Path(out_path).stem}.{method}.onnx")
        try:
            quantize_int8(fp32_path, candidate, crops, method=method, **options)
        except ValueError as error:  # e.g. a histogram method on activations with almost no range: try the next one
            log.warning("int8 calibration with %s failed (%s); trying the others", method, str(error)[:160])
            candidate.unlink(missing_ok=True)
            continue
        divergence = mean_kl(reference, OnnxMaskClassifier(candidate).predict_proba(judged))
        if divergence < best_divergence:
            if best_path is not None:
                best_path.unlink(missing_ok=True)
            best_divergence, best_path = divergence, candidate
        else:
            candidate.unlink(missing_ok=True)
    if best_path is None:
        raise ValueError(f"int8 calibration failed with every method in {list(AUTO_METHODS)}")
    meta = read_meta(best_path)
    meta["calibration"]["chosen_by"] = (
        f"mean KL divergence from fp32 on {'held-out' if selection_crops else 'the calibration'} faces "
        f"({best_divergence:.5f}, {len(judged)} faces) among {list(AUTO_METHODS)}"
    )
    set_metadata(best_path, meta)
    os.replace(best_path, out_path)
    return Path(out_path)


def mean_kl(reference: np.ndarray, other: np.ndarray, eps: float = 1e-9) -> float:
    """Mean over rows of KL(reference || other), both rows of probabilities."""
    return float(np.mean(np.sum(reference * (np.log(reference + eps) - np.log(other + eps)), axis=1)))


def record_reference_outputs(model_path: Path) -> None:
    """Store this CPU's logits on the fixed reference inputs, so any other CPU can check itself against them."""
    classifier = OnnxMaskClassifier(model_path)
    logits = classifier.logits(reference_inputs(REFERENCE_COUNT, classifier.info.input_size))
    meta = read_meta(model_path)
    meta["reference"] = {
        "count": REFERENCE_COUNT,
        "logits": [[round(float(v), 5) for v in row] for row in logits],
        "recorded_on": cpu_description(),
    }
    set_metadata(model_path, meta)


def record_parity(int8_path: Path, parity: Parity, crops: str) -> None:
    """Write the parity figures, and the CPU they were measured on, into the int8 file's metadata."""
    meta = read_meta(int8_path)
    meta["parity"] = {
        "crops": crops,
        "n": parity.n,
        "fp32_accuracy": round(parity.fp32_accuracy, 5),
        "int8_accuracy": round(parity.int8_accuracy, 5),
        "agreement": round(parity.agreement, 5),
        "measured_on": cpu_description(),
    }
    set_metadata(int8_path, meta)


def check_parity(fp32_path: Path, int8_path: Path, crops: list[np.ndarray], labels: list[int]) -> Parity:
    fp32 = OnnxMaskClassifier(fp32_path).predict_proba(crops).argmax(1)
    int8 = OnnxMaskClassifier(int8_path).predict_proba(crops).argmax(1)
    truth = np.asarray(labels)
    return Parity(len(truth), float((fp32 == truth).mean()), float((int8 == truth).mean()), float((fp32 == int8).mean()))
