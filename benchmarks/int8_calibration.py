"""Which int8 calibration stays closest to fp32 on val faces the calibration did not see (validation only).

The shipped fp32 weights (exported to ONNX) are quantised for each weight type x calibration method on the even val
faces of the committed manifest and compared with fp32 on the odd ones: accuracy, argmax agreement, mean KL divergence
of the probabilities from fp32's (what ``auto`` now minimises) and the ``mask_incorrect`` average precision (a
ranking, like end-to-end AP). Needs the ``train`` and ``eval`` extras.

    python benchmarks/int8_calibration.py --weights u8 s8-reduced s8 --methods minmax percentile entropy
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from maskwatch.data.loading import load_labelled_crops
from maskwatch.export.onnx_export import export_onnx
from maskwatch.export.quantize import mean_kl, quantize_int8
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "maskwatch" / "assets" / "maskwatch_mobilenet_v2.safetensors"
MANIFEST = REPO / "recipes" / "default_splits.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=["s8-reduced"])
    parser.add_argument("--methods", nargs="+", default=["minmax", "percentile", "entropy"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="maskwatch-int8-calibration-"))
    net, meta = load_checkpoint(WEIGHTS)
    fp32_path = export_onnx(net, meta, work / "fp32.onnx")
    fp32 = OnnxMaskClassifier(fp32_path)
    crops, labels = load_labelled_crops(
        MANIFEST, size=meta["input_size"], margin=meta["margin"], split="val", whole_image=meta.get("whole_image", "stretch")
    )
    calibration, held_out, truth = crops[0::2], crops[1::2], np.asarray(labels[1::2])
    reference = fp32.predict_proba(held_out)
    incorrect = list(fp32.labels).index("mask_incorrect")
    print(f"{len(calibration)} calibration faces, {len(held_out)} held-out faces")
    print(f"fp32{'':24} accuracy {np.mean(reference.argmax(1) == truth):.4f}  mask_incorrect AP "
          f"{average_precision_score(truth == incorrect, reference[:, incorrect]):.4f}")  # fmt: skip
    for weights in args.weights:
        for method in args.methods:
            path = quantize_int8(fp32_path, work / f"{weights}_{method}.onnx", calibration, method=method, weights=weights)
            probs = OnnxMaskClassifier(path).predict_proba(held_out)
            print(
                f"{weights + ' ' + method:28s} accuracy {np.mean(probs.argmax(1) == truth):.4f}  "
                f"agreement {np.mean(probs.argmax(1) == reference.argmax(1)):.4f}  KL {mean_kl(reference, probs):.5f}  "
                f"mask_incorrect AP {average_precision_score(truth == incorrect, probs[:, incorrect]):.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
