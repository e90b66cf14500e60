"""Which int8 weight type to ship: speed on this CPU, parity with fp32, and why AVX2-only CPUs are safe, in one run.

For each weight type of :data:`maskwatch.export.quantize.WEIGHT_TYPES` the shipped fp32 weights are quantised the way
``recipes/ship_default.py`` does it (calibrated on the even val faces of the committed manifest), then measured:
classifier latency at batch 1 and 4 (ONNX Runtime, the runtime's own session options, interleaved rounds), agreement
and accuracy against fp32 on the odd val faces (held out from calibration), and accuracy on the test split per source.
The fp32 ONNX export is timed beside them.

    python benchmarks/int8_weight_types.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from maskwatch.data.loading import load_labelled_crops
from maskwatch.export.onnx_export import export_onnx
from maskwatch.export.quantize import WEIGHT_TYPES, check_parity, quantize_int8
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.runtime.evaluate import evaluate_source
from maskwatch.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "maskwatch" / "assets" / "maskwatch_mobilenet_v2.safetensors"
MANIFEST = REPO / "recipes" / "default_splits.csv.gz"


def latency_ms(model: OnnxMaskClassifier, batch: np.ndarray, repeats: int) -> float:
    """Median milliseconds of one ``session.run`` on ``batch`` (already pre-processed)."""
    feed = {model.input_name: batch}
    model.session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per model, batch size and round")
    parser.add_argument("--types", nargs="+", default=list(WEIGHT_TYPES))
    parser.add_argument("--no-test", action="store_true", help="skip the test-split scores")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="maskwatch-int8-types-"))
    net, meta = load_checkpoint(WEIGHTS)
    paths = {"fp32": export_onnx(net, meta, work / "fp32.onnx")}
    crops, labels = load_labelled_crops(
        MANIFEST, size=meta["input_size"], margin=meta["margin"], split="val", whole_image=meta.get("whole_image", "stretch")
    )
    calibration, held_out, held_labels = crops[0::2], crops[1::2], labels[1::2]
    for kind in args.types:
        print(f"quantising with {kind} weights on {len(calibration)} even val faces ...", flush=True)
        paths[kind] = quantize_int8(
            paths["fp32"], work / f"{kind}.onnx", calibration, method="auto", weights=kind, selection_crops=held_out
        )

    models = {kind: OnnxMaskClassifier(path) for kind, path in paths.items()}
    fp32 = models["fp32"]
    batches = {size: fp32.preprocess(held_out[:size]) for size in (1, 4)}
    timings: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):  # interleaved, so a busy machine slows every model alike
        for kind, model in models.items():
            for size, batch in batches.items():
                timings.setdefault((kind, size), []).append(latency_ms(model, batch, args.repeats))

    print(
        f"\n{'weights':<12} {'MB':>6} {'batch 1 ms':>11} {'batch 4 ms':>11} {'x fp32 (b4)':>12}  held-out val (n={len(held_out)})"
    )
    fp32_b4 = statistics.median(timings[("fp32", 4)])
    for kind, path in paths.items():
        b1, b4 = (statistics.median(timings[(kind, size)]) for size in (1, 4))
        parity = "" if kind == "fp32" else _parity_line(paths["fp32"], path, held_out, held_labels)
        print(f"{kind:<12} {path.stat().st_size / 1e6:6.2f} {b1:11.2f} {b4:11.2f} {b4 / fp32_b4:12.2f}  {parity}")
    if args.no_test:
        return
    print(f"\ntest split of {MANIFEST.name}: accuracy per source")
    for kind, model in models.items():
        result, _, problems = evaluate_source(MANIFEST, model, split="test")
        assert not problems, problems[:3]
        per_source = "  ".join(f"{s} {r['accuracy']:.4f}" for s, r in sorted(result["per_source"].items()))
        print(f"{kind:<12} all {result['accuracy']:.4f}  {per_source}")


def _parity_line(fp32_path: Path, int8_path: Path, crops: list, labels: list) -> str:
    parity = check_parity(fp32_path, int8_path, crops, labels)
    return (
        f"fp32 {parity.fp32_accuracy:.4f}  int8 {parity.int8_accuracy:.4f}  "
        f"agreement {parity.agreement:.4f}  drop {parity.drop_points:+.2f} pts"
    )


if __name__ == "__main__":
    main()
