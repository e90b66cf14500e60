"""CenterFace fp32 against its int8 copy (maskwatch.runtime.centerface_int8): face AP and detector time per photo.

Both run on every photo of an annotated scene folder at each size (face AP@0.5, VOC all-point, no box reshaping, so
that only the detector differs), then are timed on the first ``--timed`` photos, interleaved round by round (median
ms per photo; one process, the CPU's default threads).

    python benchmarks/detector_int8.py ../shared/data/scenes --sizes 320 960 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from maskwatch.imaging import load_rgb
from maskwatch.runtime.detectors import CenterFaceDetector
from maskwatch.runtime.scene_eval import Detection, average_precision
from maskwatch.runtime.scenes import load_ground_truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320])
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--timed", type=int, default=60, help="photos timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    truth, _ = load_ground_truth(args.scenes / "images", args.scenes / "annotations")
    images = {stem: load_rgb(path) for stem, (path, _) in truth.items()}
    boxes = {stem: np.array([box for _, box in objects]).reshape(-1, 4) for stem, (_, objects) in truth.items()}
    print(f"{len(images)} photos, {sum(len(b) for b in boxes.values())} faces")
    print("| detector input | graph | face AP | ms per photo (median of rounds) |\n|---|---|---|---|")
    for size in args.sizes:
        detectors = {
            kind: CenterFaceDetector(input_size=size, threshold=args.threshold, int8=kind == "int8") for kind in ("fp32", "int8")
        }
        scores = {}
        for kind, detector in detectors.items():
            found = []
            for stem, image in images.items():
                faces = detector.detect(image)
                found += [Detection(stem, box, float(score)) for box, score in zip(faces.boxes, faces.scores)]
            scores[kind] = average_precision(found, boxes)[0]
        timed = list(images.values())[: args.timed]
        times: dict[str, list[float]] = {kind: [] for kind in detectors}
        for _ in range(args.rounds):
            for kind, detector in detectors.items():
                started = time.perf_counter()
                for image in timed:
                    detector.detect(image)
                times[kind].append((time.perf_counter() - started) / len(timed) * 1e3)
        for kind in detectors:
            print(f"| {size} | {kind} | {scores[kind]:.4f} | {statistics.median(times[kind]):.2f} |")


if __name__ == "__main__":
    main()
