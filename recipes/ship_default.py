"""Turn a training run into the shipped default model files (package data) and score them.

    python recipes/ship_default.py runs/real_incorrect
    python recipes/ship_default.py runs/shipped --splits recipes/default_splits.csv.gz  # RUN/best.safetensors only
    python recipes/ship_default.py runs/candidate --candidate  # int8 to RUN/candidate_int8.onnx only, to compare on val
    python recipes/ship_default.py --rescore --out runs/shipped_test.json  # the shipped files again, after the
                                                                            # manifest's labels changed

Writes src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors (fp32, for fine-tuning and Grad-CAM) and
maskwatch_mobilenet_v2_int8.onnx (runtime default; static QDQ int8 with 7-bit s8 weights, calibrated on half of the run's val
split), refuses an int8 model that loses more than 0.5 accuracy points on the other half of val, records that parity and
the CPU it was measured on in the file, and scores fp32 and int8 on the committed test split per source
(runs/.../onnx_test.json; the int8 figures also go to assets/test_metrics.json, which tests/test_shared_data.py checks).
With --candidate it stops after the val gate: RUN/candidate_int8.onnx and RUN/model_fp32.onnx, no test split read, the
package files untouched, so that benchmarks/compare_classifiers.py can judge the run on val before anything ships.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from maskwatch.data.loading import load_labelled_crops
from maskwatch.export.onnx_export import export_onnx
from maskwatch.export.quantize import check_parity, quantize_int8, record_parity
from maskwatch.fileio import write_json
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.runtime.evaluate import by_source, evaluate_source
from maskwatch.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "maskwatch" / "assets"
MANIFEST = Path("recipes/default_splits.csv.gz")
KEPT = ("n", "accuracy", "macro_f1", "per_class", "confusion_matrix")


def score_test_split(fp32: Path, int8: Path) -> dict:
    """fp32 and int8 per source on the committed test split (one pass), printed as they come."""
    scores = {}
    for kind, path in (("fp32", fp32), ("int8", int8)):
        result, _, problems = evaluate_source(MANIFEST, OnnxMaskClassifier(path), split="test")
        assert not problems, problems[:3]
        scores[kind] = {source: {k: r[k] for k in KEPT} for source, r in by_source(result).items()}
        for source, row in scores[kind].items():
            incorrect = row["per_class"]["mask_incorrect"]
            print(
                f"test {kind} {source:<16} n={row['n']:>4} accuracy {row['accuracy']:.4f} macro-F1 {row['macro_f1']:.4f}"
                + (f" mask_incorrect recall {incorrect['recall']:.4f}" if incorrect["support"] else "")
            )
    return scores


def rescore_shipped(out: Path | None) -> None:
    """The shipped files scored again: for when the manifest's labels change (recipes/label_corrections.txt). The
    int8 figures are the shipped file's own numbers on the committed test split; tests/test_shared_data.py checks
    they reproduce."""
    net, meta = load_checkpoint(ASSETS / "maskwatch_mobilenet_v2.safetensors")
    fp32 = export_onnx(net, meta, Path(tempfile.mkdtemp()) / "fp32.onnx")
    scores = score_test_split(fp32, ASSETS / "maskwatch_mobilenet_v2_int8.onnx")
    if out is not None:
        write_json(out, scores, indent=1)
    write_json(ASSETS / "test_metrics.json", {"splits": str(MANIFEST), "int8": scores["int8"]}, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path, nargs="?")
    parser.add_argument("--max-drop", type=float, default=0.5)
    parser.add_argument("--splits", type=Path, help="manifest whose val rows calibrate and gate (default: RUN/splits.csv)")
    parser.add_argument("--weights", default="s8-reduced", help="int8 weight type (see maskwatch.export.quantize.WEIGHT_TYPES)")
    parser.add_argument("--candidate", action="store_true", help="write RUN/candidate_int8.onnx and stop (no test, no ship)")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="no run: score the shipped files on the committed test split again and rewrite assets/test_metrics.json",
    )
    parser.add_argument("--out", type=Path, help="with --rescore: where the fp32 and int8 scores go (JSON)")
    args = parser.parse_args()
    if args.rescore:
        if args.run is not None or args.splits is not None or args.candidate:
            parser.error("--rescore scores the shipped files: give no run, --splits or --candidate with it")
        rescore_shipped(args.out)
        return
    if args.run is None:
        parser.error("give a run folder, or --rescore")
    if args.out is not None:
        parser.error("--out goes with --rescore (a run writes RUN/onnx_test.json)")
    net, meta = load_checkpoint(args.run / "best.safetensors")
    splits = args.splits or args.run / "splits.csv"
    work = Path(tempfile.mkdtemp())
    fp32 = export_onnx(net, meta, work / "fp32.onnx")
    crops, labels = load_labelled_crops(
        splits, size=meta["input_size"], margin=meta["margin"], split="val", whole_image=meta.get("whole_image", "stretch")
    )
    # calibrate on the even val faces, judge parity on the odd ones: the gate never sees the crops that set the ranges
    calibration, held_out, held_labels = crops[0::2], crops[1::2], labels[1::2]
    int8 = quantize_int8(
        fp32,
        work / "int8.onnx",
        calibration,
        method="auto",
        weights=args.weights,
        calibration_source=f"{splits} (even val faces, {len(calibration)})",
        selection_crops=held_out,
    )
    parity = check_parity(fp32, int8, held_out, held_labels)
    print(f"held-out val: fp32 {parity.fp32_accuracy:.4f}  int8 {parity.int8_accuracy:.4f}  agreement {parity.agreement:.4f}")
    if parity.drop_points > args.max_drop:
        raise SystemExit(f"int8 lost {parity.drop_points:.2f} points on held-out val (> {args.max_drop}); not shipped")
    record_parity(int8, parity, f"{splits} (odd val faces, not used for calibration)")
    if args.candidate:
        shutil.copyfile(int8, args.run / "candidate_int8.onnx")
        shutil.copyfile(fp32, args.run / "model_fp32.onnx")
        print(f"{args.run / 'candidate_int8.onnx'}: compare it on val (benchmarks/compare_classifiers.py); nothing shipped")
        return
    scores = score_test_split(fp32, int8)
    write_json(args.run / "onnx_test.json", scores, indent=1)
    write_json(ASSETS / "test_metrics.json", {"splits": str(MANIFEST), "int8": scores["int8"]}, indent=1)
    shutil.copyfile(args.run / "best.safetensors", ASSETS / "maskwatch_mobilenet_v2.safetensors")
    shutil.copyfile(int8, ASSETS / "maskwatch_mobilenet_v2_int8.onnx")
    shutil.copyfile(fp32, args.run / "model_fp32.onnx")
    for name in ("maskwatch_mobilenet_v2.safetensors", "maskwatch_mobilenet_v2_int8.onnx"):
        print(f"{ASSETS / name}: {(ASSETS / name).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
