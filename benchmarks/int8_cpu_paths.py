"""int8 vs fp32 accuracy on CPU paths this machine does not have, by running ONNX Runtime under QEMU's CPU models.

ONNX Runtime picks its integer kernels from the CPU's features at run time: with AVX-512 VNNI or AVX-VNNI a u8*s8
product is summed in 32 bits, while plain AVX2 (vpmaddubsw) sums pairs of products in 16 bits and can saturate. This
machine has VNNI; `qemu-x86_64 -cpu EPYC-Rome` (AVX2, no AVX-512, no VNNI) or `-cpu Haswell` show what a CPU without it
computes, instruction by instruction (slowly). Crops are cut natively once; each CPU path classifies the same crops.

    apt-get install -y qemu-user
    python benchmarks/int8_cpu_paths.py recipes/default_splits.csv.gz --split test \\
        --model fp32=runs/x/model.onnx --model int8=src/maskwatch/assets/maskwatch_mobilenet_v2_int8.onnx \\
        --cpu native --cpu EPYC-Rome --json docs/study/int8_cpu_paths.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def cut_crops(manifest: Path, split: str, model: Path, out: Path, every: int = 1) -> None:
    """Natively: the split's faces (every ``every``-th) cut as the model expects them, saved with labels and sources."""
    from maskwatch.imaging import load_rgb
    from maskwatch.runtime.classifier import OnnxMaskClassifier
    from maskwatch.runtime.evaluate import face_crop, samples_of

    classifier = OnnxMaskClassifier(model)
    samples, _ = samples_of(manifest, split)
    samples = samples[::every]
    images: dict[Path, np.ndarray] = {}
    crops = []
    for sample in samples:
        if sample.path not in images:
            images.clear()
            images[sample.path] = load_rgb(sample.path)
        crops.append(face_crop(images[sample.path], sample, classifier))
    labels = [list(classifier.labels).index(s.label) for s in samples]
    np.savez(out, crops=np.stack(crops), labels=np.array(labels), sources=np.array([s.source for s in samples]))


def classify(crops_file: Path, models: list[str]) -> dict:
    """In the (possibly emulated) child: predicted classes and logits of every model on the saved crops."""
    from maskwatch.runtime.classifier import OnnxMaskClassifier

    data = np.load(crops_file)
    result = {}
    for spec in models:
        name, path = spec.split("=", 1)
        classifier = OnnxMaskClassifier(path, threads=1)
        logits = np.concatenate([classifier.logits(list(data["crops"][i : i + 32])) for i in range(0, len(data["crops"]), 32)])
        result[name] = logits.tolist()
    return result


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags) or "no AVX2"


def run_path(cpu: str, crops_file: Path, models: list[str]) -> tuple[dict, float]:
    command = [sys.executable, __file__, "--child", str(crops_file), *sum((["--model", m] for m in models), [])]
    if cpu != "native":
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            raise SystemExit("qemu-x86_64 not found: apt-get install -y qemu-user")
        command = [qemu, "-cpu", cpu, *command]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{cpu}: child failed\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, nargs="?")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH of an ONNX classifier; repeat")
    parser.add_argument("--cpu", action="append", default=None, help="native, or a qemu -cpu model (EPYC-Rome, Haswell...)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--every", type=int, default=1, help="use every n-th face of the split (emulation is slow)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"flags": cpu_flags(), "logits": classify(args.child, args.model)}))
        return
    crops_file = Path(tempfile.mkdtemp()) / "crops.npz"
    cut_crops(args.manifest, args.split, Path(args.model[0].split("=", 1)[1]), crops_file, args.every)
    data = np.load(crops_file)
    truth, sources = data["labels"], data["sources"]
    results: dict = {}
    from maskwatch.runtime.classifier import OnnxMaskClassifier

    deciders = {name: OnnxMaskClassifier(path) for name, path in (m.split("=", 1) for m in args.model)}
    for cpu in args.cpu or ["native"]:
        out, seconds = run_path(cpu, crops_file, args.model)
        # qemu-user shows the host's /proc/cpuinfo; the emulated CPUID (what ONNX Runtime dispatches on) is the model's
        flags = out["flags"] if cpu == "native" else f"CPUID of qemu's {cpu} model (no AVX-512, no VNNI)"
        results[cpu] = {"flags_seen": flags, "seconds": round(seconds, 1), "models": {}}
        for name, logits in out["logits"].items():
            predicted = deciders[name].calibrated(np.asarray(logits)).argmax(1)  # classes as the runtime decides
            row = {"all": float((predicted == truth).mean())}
            row.update({s: float((predicted[sources == s] == truth[sources == s]).mean()) for s in sorted(set(sources))})
            row["logits"] = logits
            results[cpu]["models"][name] = row
        print(f"{cpu} ({flags}; {seconds:.0f} s)", flush=True)
    names = [m.split("=", 1)[0] for m in args.model]
    columns = ["all", *sorted(set(sources))]
    print(f"\n{args.split} split, {len(truth)} faces: accuracy per CPU path\n")
    print("| CPU path | flags | model | " + " | ".join(columns) + " | max logit diff vs native |")
    print("|---|---|---|" + "---|" * (len(columns) + 1))
    for cpu, block in results.items():
        for name in names:
            row = block["models"][name]
            native = np.asarray(results.get("native", block)["models"][name]["logits"])
            diff = float(np.abs(np.asarray(row["logits"]) - native).max())
            print(
                f"| {cpu} | {block['flags_seen']} | {name} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + f" | {diff:.4f} |"
            )
    if args.json:
        for block in results.values():
            for row in block["models"].values():
                row.pop("logits")
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
