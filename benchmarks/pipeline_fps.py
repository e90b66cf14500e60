"""End-to-end frames per second and per-stage milliseconds on 640x480 frames with 1 and 10 faces.

Frames come from ../shared/data/scenes when present (the scene with the requested face count,
resized to 640x480), else from scikit-image's astronaut tiled to that many faces.

    python benchmarks/pipeline_fps.py --detector-sizes 320 480 640 --repeat 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from maskwatch.draw import annotate
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig

SCENES = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenes"


def test_frames() -> dict[str, bytes]:
    """640x480 JPEG frames (encoded, so decoding is measured too) with about 1 and 10 faces."""
    frames = {}
    if SCENES.is_dir():
        from maskwatch.runtime.scenes import load_ground_truth

        truth, _ = load_ground_truth(SCENES / "images", SCENES / "annotations")
        for want in (1, 5, 10):
            candidates = [p for p, objs in truth.values() if len(objs) == want and all(b[2] - b[0] >= 20 for _, b in objs)]
            candidates = candidates or [p for p, objs in truth.values() if len(objs) == want]
            if candidates:
                image = cv2.resize(cv2.imread(str(sorted(candidates)[0])), (640, 480))
                frames[f"{want} face{'s' if want > 1 else ''} (scene)"] = cv2.imencode(".jpg", image)[1].tobytes()
    if not frames:
        from maskwatch.runtime.pipeline import default_sample_image

        face = cv2.cvtColor(cv2.resize(default_sample_image()[1], (160, 160)), cv2.COLOR_RGB2BGR)
        for want in (1, 10):
            canvas = np.full((480, 640, 3), 128, np.uint8)
            for i in range(want):
                y, x = (i // 4) * 160, (i % 4) * 160
                canvas[y : y + 160, x : x + 160] = face
            frames[f"{want} faces (synthetic)"] = cv2.imencode(".jpg", canvas)[1].tobytes()
    return frames


def measure(pipeline: MaskPipeline, jpeg: bytes, repeat: int) -> dict[str, float]:
    totals: dict[str, list[float]] = {
        "decode": [],
        "detect": [],
        "crop": [],
        "classify": [],
        "draw": [],
        "total": [],
        "faces": [],
    }
    for i in range(repeat + 3):
        started = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        decoded = time.perf_counter()
        result = pipeline(rgb)
        drawn_start = time.perf_counter()
        annotate(rgb, result.faces)
        finished = time.perf_counter()
        if i < 3:
            continue  # warm-up
        totals["decode"].append((decoded - started) * 1e3)
        for stage in ("detect", "crop", "classify"):
            totals[stage].append(result.timings_ms[stage])
        totals["draw"].append((finished - drawn_start) * 1e3)
        totals["total"].append((finished - started) * 1e3)
        totals["faces"].append(len(result.faces))
    return {k: float(np.median(v)) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector-sizes", type=int, nargs="+", default=[320, 480, 640])
    parser.add_argument("--model", default=None, help="ONNX classifier (default: shipped int8)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    frames = test_frames()
    table = Table(title="maskwatch end to end on 640x480 frames (median ms per frame)")
    for column in ("frame", "detector size", "faces", "decode", "detect", "crop", "classify", "draw", "total ms", "FPS"):
        table.add_column(column, justify="right")
    for size in args.detector_sizes:
        pipeline = MaskPipeline(PipelineConfig(model=args.model, detector_size=size, threads=args.threads))
        for name, jpeg in frames.items():
            m = measure(pipeline, jpeg, args.repeat)
            table.add_row(
                name,
                str(size),
                f"{m['faces']:.0f}",
                *(f"{m[k]:.1f}" for k in ("decode", "detect", "crop", "classify", "draw", "total")),
                f"{1000 / m['total']:.1f}",
            )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
