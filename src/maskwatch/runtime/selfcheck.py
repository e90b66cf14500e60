"""Does this CPU compute what the exporting machine computed? Reference outputs travel inside the model file.

ONNX Runtime chooses integer kernels by CPU feature: with VNNI a u8*s8 product sums in 32 bits, on plain AVX2 pairs of
products sum in 16 bits and can saturate, so the same int8 file can give other answers on another CPU. At export a
few fixed inputs (made here from a formula, so no data travels) are run and their logits stored in the metadata;
:func:`check_outputs` runs them again on the user's CPU and says how far the logits moved.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Logits may move this much (float re-association in another kernel) before the model counts as departed.
TOLERANCE = 0.05
REFERENCE_COUNT = 8


def reference_inputs(count: int, size: int) -> list[np.ndarray]:
    """``count`` RGB uint8 images made from integer arithmetic only (block noise at several scales, and gradients),
    identical on every machine and numpy version."""
    images = []
    for k in range(count):
        block = 2 ** (k % 6)
        cells = -(-size // block)
        index = np.arange(cells * cells * 3, dtype=np.uint64) + np.uint64(k * 1_000_003)
        mixed = (index * np.uint64(0x9E3779B97F4A7C15)) ^ (index >> np.uint64(7))
        noise = ((mixed >> np.uint64(29)) & np.uint64(0xFF)).astype(np.uint8).reshape(cells, cells, 3)
        image = np.repeat(np.repeat(noise, block, axis=0), block, axis=1)[:size, :size]
        if k % 2:  # a smooth ramp under the noise, so some inputs look like lit surfaces rather than static
            ramp = (np.arange(size, dtype=np.uint16)[:, None] * 255 // max(size - 1, 1)).astype(np.uint16)
            image = ((image.astype(np.uint16) + ramp[..., None]) // 2).astype(np.uint8)
        images.append(np.ascontiguousarray(image))
    return images


def cpu_description() -> dict:
    """The CPU facts that decide ONNX Runtime's integer kernels, as far as the OS tells them."""
    import onnxruntime

    flags: list[str] = []
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in present]
                break
    except OSError:
        pass
    return {"cpu": name, "machine": platform.machine(), "isa": flags, "onnxruntime": onnxruntime.__version__}


@dataclass(frozen=True)
class OutputCheck:
    """How far this CPU's logits are from those recorded at export, on the recorded reference inputs."""

    n: int
    max_logit_diff: float
    same_class: float
    recorded_on: dict

    @property
    def ok(self) -> bool:
        return self.max_logit_diff <= TOLERANCE

    def summary(self) -> str:
        verdict = "matches" if self.ok else "DEPARTS FROM"
        recorded = self.recorded_on.get("cpu", "?"), ", ".join(self.recorded_on.get("isa", [])) or "no AVX2 flags"
        return (
            f"{verdict} the outputs recorded at export on {recorded[0]} ({recorded[1]}): max logit difference "
            f"{self.max_logit_diff:.4f} on {self.n} reference inputs (tolerance {TOLERANCE}), same class on {self.same_class:.0%}"
        )


def check_outputs(classifier) -> OutputCheck | None:
    """Re-run the reference inputs recorded in ``classifier``'s metadata; None for files without them."""
    reference = classifier.info.extra.get("reference")
    if not reference:
        return None
    inputs = reference_inputs(int(reference["count"]), classifier.info.input_size)
    recorded = np.asarray(reference["logits"], np.float32)
    logits = classifier.logits(inputs)
    return OutputCheck(
        n=len(inputs),
        max_logit_diff=float(np.abs(logits - recorded).max()),
        # classes as the runtime decides them: temperature and prior correction applied to both sides
        same_class=float((classifier.calibrated(logits).argmax(1) == classifier.calibrated(recorded).argmax(1)).mean()),
        recorded_on=dict(reference.get("recorded_on", {})),
    )
