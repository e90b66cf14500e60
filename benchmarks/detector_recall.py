"""Face recall and AP of the face detector on annotated scenes, per class and per face size,
for several detector input sizes and score thresholds - the numbers behind the default scale.

    python benchmarks/detector_recall.py ../shared/data/scenes --sizes 640 960 1280 --threshold 0.2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from maskwatch.imaging import load_rgb
from maskwatch.runtime.boxes import iou_matrix
from maskwatch.runtime.detectors import make_detector
from maskwatch.runtime.scene_eval import Detection, average_precision
from maskwatch.runtime.scenes import load_ground_truth

SIZE_BINS = ((0, 16), (16, 32), (32, 64), (64, 10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", type=Path, help="folder with images/ and annotations/")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 960, 1280])
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    args = parser.parse_args()
    truth, _ = load_ground_truth(args.scenes / "images", args.scenes / "annotations")
    items = list(truth.items())[: args.limit or None]
    images = {stem: load_rgb(path) for stem, (path, _) in items}
    table = Table(title=f"CenterFace on {len(items)} scene images, IoU 0.5, threshold {args.threshold}")
    columns = ["input size", "ms/img", "face AP", "recall"] + [f"R {c}" for c in ("with_mask", "without_mask", "mask_incorrect")]
    columns += [f"R {lo}-{hi if hi < 10_000 else ''}px" for lo, hi in SIZE_BINS]
    for column in columns:
        table.add_column(column, justify="right")
    for size in args.sizes:
        detector = make_detector("centerface", input_size=size, threshold=args.threshold)
        hit_label, hit_size, detections, seconds = [], [], [], 0.0
        for stem, (_, objects) in items:
            started = time.perf_counter()
            found = detector.detect(images[stem])
            seconds += time.perf_counter() - started
            detections += [Detection(stem, box, float(s)) for box, s in zip(found.boxes, found.scores)]
            gt = np.array([box for _, box in objects]).reshape(-1, 4)
            best = iou_matrix(gt, found.boxes).max(axis=1) if len(found.boxes) else np.zeros(len(gt))
            for (label, box), iou in zip(objects, best):
                hit_label.append((label, iou >= 0.5))
                hit_size.append((min(box[2] - box[0], box[3] - box[1]), iou >= 0.5))
        per_image = {stem: np.array([b for _, b in objs]).reshape(-1, 4) for stem, (_, objs) in items}
        ap, recall, _ = average_precision(detections, per_image)
        row = [str(size), f"{1000 * seconds / len(items):.0f}", f"{ap:.3f}", f"{recall[-1]:.3f}"]
        for label in ("with_mask", "without_mask", "mask_incorrect"):
            hits = [h for lab, h in hit_label if lab == label]
            row.append(f"{np.mean(hits):.3f}" if hits else "-")
        for lo, hi in SIZE_BINS:
            hits = [h for s, h in hit_size if lo <= s < hi]
            row.append(f"{np.mean(hits):.3f} ({len(hits)})" if hits else "-")
        table.add_row(*row)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
