"""Turn a training run into the shipped default model files (package data) and score them.

    python recipes/ship_default.py runs/default

Writes src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors (fp32, for fine-tuning and Grad-CAM) and
maskwatch_mobilenet_v2_int8.onnx (runtime default; static QDQ int8 calibrated on the run's val split), refuses an int8
model that loses more than 0.5 accuracy points on val, and writes int8 test scores per source to runs/.../int8_test.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from maskwatch.cli_train import load_labelled_crops
from maskwatch.data.splits import read_manifest
from maskwatch.export.onnx_export import export_onnx
from maskwatch.export.quantize import check_parity, quantize_int8
from maskwatch.fileio import write_json
from maskwatch.labels import LABELS
from maskwatch.metrics import classification_report
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.training.checkpoint import load_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "src" / "maskwatch" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--max-drop", type=float, default=0.5)
    args = parser.parse_args()
    net, meta = load_checkpoint(args.run / "best.safetensors")
    splits = args.run / "splits.csv"
    work = Path(tempfile.mkdtemp())
    fp32 = export_onnx(net, meta, work / "fp32.onnx")
    val_crops, val_labels = load_labelled_crops(splits, size=meta["input_size"], margin=meta["margin"], split="val")
    int8 = quantize_int8(
        fp32, work / "int8.onnx", val_crops, method="auto", calibration_source=f"{splits} (val split, {len(val_crops)} faces)"
    )
    parity = check_parity(fp32, int8, val_crops, val_labels)
    print(f"val: fp32 {parity.fp32_accuracy:.4f}  int8 {parity.int8_accuracy:.4f}  agreement {parity.agreement:.4f}")
    if parity.drop_points > args.max_drop:
        raise SystemExit(f"int8 lost {parity.drop_points:.2f} points on val (> {args.max_drop}); not shipped")
    test_crops, test_labels = load_labelled_crops(splits, size=meta["input_size"], margin=meta["margin"], split="test")
    sources = np.array([r.sample.source for r in read_manifest(splits) if r.split == "test"])
    truth = np.array(test_labels)
    scores = {}
    for kind, path in (("fp32", fp32), ("int8", int8)):
        predicted = OnnxMaskClassifier(path).predict_proba(test_crops).argmax(1)
        for source in ["all", *sorted(set(sources))]:
            keep = np.ones(len(truth), bool) if source == "all" else sources == source
            report = classification_report(truth[keep], predicted[keep], LABELS)
            scores.setdefault(kind, {})[source] = {k: report[k] for k in ("n", "accuracy", "macro_f1", "confusion_matrix")}
            print(
                f"test {kind} {source:<16} n={report['n']:>4} accuracy {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f}"
            )
    write_json(args.run / "int8_test.json", scores["int8"], indent=1)
    # The shipped file's own numbers on the committed test split; tests/test_shared_data.py checks they reproduce.
    write_json(ASSETS / "test_metrics.json", {"splits": "recipes/default_splits.csv.gz", "int8": scores["int8"]}, indent=1)
    write_json(args.run / "onnx_test.json", scores, indent=1)
    ASSETS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "best.safetensors", ASSETS / "maskwatch_mobilenet_v2.safetensors")
    shutil.copyfile(int8, ASSETS / "maskwatch_mobilenet_v2_int8.onnx")
    for name in ("maskwatch_mobilenet_v2.safetensors", "maskwatch_mobilenet_v2_int8.onnx"):
        print(f"{ASSETS / name}: {(ASSETS / name).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
