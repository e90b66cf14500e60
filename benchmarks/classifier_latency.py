"""Per-crop latency of classifiers on ONNX Runtime, timed interleaved (round by round) so drift hits all alike,
plus an optional ONNX Runtime profile of where the time goes by operator type.

    python benchmarks/classifier_latency.py                    # shipped fp32 vs int8, batch 1 and 8, + profile
    python benchmarks/classifier_latency.py --resnet18 128     # also untrained ResNet18 vs MobileNetV2 fp32 at 128 px
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from maskwatch.export.onnx_export import export_onnx
from maskwatch.runtime.assets import DEFAULT_CLASSIFIER, asset_path
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.training.checkpoint import default_checkpoint, load_checkpoint
from maskwatch.training.models import build_model


def interleaved_ms(models: dict[str, OnnxMaskClassifier], size: int, batch: int, rounds: int = 5, repeat: int = 40) -> dict:
    crop = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    times: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        for name, model in models.items():
            feed = {model.input_name: model.preprocess([crop] * batch)}
            for _ in range(10):
                model.session.run(None, feed)
            runs = []
            for _ in range(repeat):
                started = time.perf_counter()
                model.session.run(None, feed)
                runs.append(time.perf_counter() - started)
            times[name].append(1e3 * float(np.median(runs)) / batch)
    return {name: float(np.median(v)) for name, v in times.items()}


def op_profile(path: Path, size: int, runs: int = 200) -> tuple[float, dict[str, float]]:
    """(kernel ms per run, share of kernel time per operator type) from ONNX Runtime's profiler."""
    options = ort.SessionOptions()
    options.enable_profiling, options.intra_op_num_threads, options.log_severity_level = True, 2, 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    for _ in range(runs):
        session.run(None, {session.get_inputs()[0].name: x})
    by_op: collections.Counter = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    return total / runs / 1e3, {op: us / total for op, us in by_op.most_common(6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resnet18", type=int, metavar="SIZE", help="also compare ResNet18 and MobileNetV2 fp32 at SIZE")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    net, meta = load_checkpoint(default_checkpoint())
    fp32 = export_onnx(net, meta, work / "fp32.onnx")
    int8 = asset_path(DEFAULT_CLASSIFIER)
    shipped = {"fp32": OnnxMaskClassifier(fp32, threads=2), "int8": OnnxMaskClassifier(int8, threads=2)}
    for batch in (1, 8):
        ms = interleaved_ms(shipped, meta["input_size"], batch)
        print(
            f"shipped classifier, batch {batch}: fp32 {ms['fp32']:.2f} ms/crop, int8 {ms['int8']:.2f} ms/crop, "
            f"int8 speed-up {ms['fp32'] / ms['int8']:.2f}x"
        )
    print(f"sizes: fp32 {fp32.stat().st_size / 1e6:.2f} MB, int8 {int8.stat().st_size / 1e6:.2f} MB")
    for name, path in (("fp32", fp32), ("int8", int8)):
        per_run, shares = op_profile(path, meta["input_size"])
        print(f"profile {name}: {per_run:.2f} ms kernel time per run;", ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    if args.resnet18:
        base = {k: v for k, v in meta.items() if k not in ("model", "trainable_blocks")}
        paths = {}
        for name in ("resnet18", "mobilenet_v2"):
            model = build_model(name, 3, pretrained=False, trainable_blocks=99)
            paths[name] = export_onnx(
                model,
                {**base, "model": name, "trainable_blocks": len(model.top), "input_size": args.resnet18},
                work / f"{name}.onnx",
            )
        ms = interleaved_ms({k: OnnxMaskClassifier(p, threads=2) for k, p in paths.items()}, args.resnet18, 1)
        for name, path in paths.items():
            print(f"{name} fp32 at {args.resnet18} px: {ms[name]:.2f} ms/crop, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
