"""Accuracy vs CPU latency vs file size for several trained checkpoints, fp32 and int8 ONNX.

Each checkpoint is exported (fp32 + int8 calibrated on the val split of SPLITS), scored on the
test split per source, and timed per face crop (batch 1) with ONNX Runtime on this CPU. Prints a
markdown table and writes a chart.

    python benchmarks/model_study.py runs/default/splits.csv name=path.safetensors ... --chart docs/input_size_study.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from maskwatch.data.loading import load_labelled_crops
from maskwatch.data.splits import read_manifest
from maskwatch.export.onnx_export import export_onnx
from maskwatch.export.quantize import quantize_int8
from maskwatch.fileio import save_figure, write_json
from maskwatch.labels import LABELS
from maskwatch.metrics import reports_by_source
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.training.checkpoint import load_checkpoint
from maskwatch.training.models import count_parameters


def ms_per_crop(classifier: OnnxMaskClassifier, crop: np.ndarray, repeat: int = 200) -> float:
    batch = classifier.preprocess([crop])
    for _ in range(20):
        classifier.session.run(None, {classifier.input_name: batch})
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        classifier.session.run(None, {classifier.input_name: batch})
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path, nargs="?")
    parser.add_argument("models", nargs="*", help="name=checkpoint.safetensors")
    parser.add_argument("--chart", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--from-json", type=Path, help="redraw the table and chart from a saved --json, measuring nothing")
    args = parser.parse_args()
    if args.from_json:
        print_and_plot(json.loads(args.from_json.read_text()), args.chart)
        return
    rows = []
    test_rows = [r for r in read_manifest(args.splits) if r.split == "test"]
    work = Path(tempfile.mkdtemp())
    for spec in args.models:
        name, path = spec.split("=", 1)
        net, meta = load_checkpoint(Path(path))
        size, margin = meta["input_size"], meta["margin"]
        fp32 = export_onnx(net, meta, work / f"{name}.onnx")
        val_crops, _ = load_labelled_crops(args.splits, size=size, margin=margin, split="val")
        int8 = quantize_int8(fp32, work / f"{name}_int8.onnx", val_crops, calibration_source=str(args.splits))
        test_crops, test_labels = load_labelled_crops(args.splits, size=size, margin=margin, split="test")
        sources = np.array([r.sample.source for r in test_rows])
        row = {"name": name, "input_size": size, "parameters": count_parameters(net)}
        for kind, model_path in (("fp32", fp32), ("int8", int8)):
            classifier = OnnxMaskClassifier(model_path, threads=2)
            predicted = classifier.predict_proba(test_crops).argmax(1)
            truth = np.array(test_labels)
            row[f"{kind}_mb"] = model_path.stat().st_size / 1e6
            row[f"{kind}_ms"] = ms_per_crop(classifier, test_crops[0])
            for source, report in reports_by_source(truth, predicted, sources, LABELS).items():
                row[f"{kind}_{source}_acc"] = report["accuracy"]
                row[f"{kind}_{source}_f1"] = report["macro_f1"]
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        write_json(args.json, rows, indent=1)
    print_and_plot(rows, args.chart)


def print_and_plot(rows: list[dict], chart: Path | None) -> None:
    """Print the markdown table and draw the accuracy-vs-latency chart."""
    sources = sorted({k.split("_")[1] for k in rows[0] if k.startswith("fp32_") and k.endswith("_acc")})
    header = ["model", "input", "params", "fp32 MB", "int8 MB", "fp32 ms/crop", "int8 ms/crop"]
    header += [f"{s} acc (fp32/int8)" for s in sources] + ["scenes macro-F1 (fp32/int8)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [
            r["name"],
            str(r["input_size"]),
            f"{r['parameters'] / 1e6:.2f} M",
            f"{r['fp32_mb']:.2f}",
            f"{r['int8_mb']:.2f}",
            f"{r['fp32_ms']:.2f}",
            f"{r['int8_ms']:.2f}",
        ]
        cells += [f"{r[f'fp32_{s}_acc']:.4f} / {r[f'int8_{s}_acc']:.4f}" for s in sources]
        cells.append(f"{r.get('fp32_scenes_f1', float('nan')):.4f} / {r.get('int8_scenes_f1', float('nan')):.4f}")
        print("| " + " | ".join(cells) + " |")
    if chart:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
        for r in rows:
            for kind, marker in (("fp32", "o"), ("int8", "s")):
                ax.scatter(r[f"{kind}_ms"], r[f"{kind}_all_acc"], marker=marker, s=30 + 4 * r[f"{kind}_mb"])
                ax.annotate(
                    f"{r['name']} {kind}",
                    (r[f"{kind}_ms"], r[f"{kind}_all_acc"]),
                    fontsize=6,
                    xytext=(4, -3 if kind == "fp32" else 3),
                    textcoords="offset points",
                )
        ax.set_xlabel("ms per face crop (ONNX Runtime, 2-core CPU, batch 1)")
        ax.set_ylabel("test accuracy (all sources)")
        ax.grid(alpha=0.3)
        ax.set_title("classifier: accuracy vs latency (marker area ~ file size)")
        fig.tight_layout()
        save_figure(fig, chart)


if __name__ == "__main__":
    main()
