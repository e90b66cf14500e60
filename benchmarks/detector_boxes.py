"""What limits face AP on still images: missed faces, or boxes drawn to another extent than the annotations?

Runs CenterFace once per scene photo (and once on its mirror image) of one or more annotated sets, then reports, per set
  - recall at IoU 0.3 / 0.4 / 0.5: a face found at 0.3 but not at 0.5 is there, only boxed differently;
  - the median shape of matched pairs (annotated width/height over detected, centre offsets), per set and pooled;
  - face AP@0.5 with a box-shape correction fitted on the train-split photos only (median ratios and offsets over the
    matched faces of every set given: one correction for all), with flip test-time augmentation (boxes of both passes
    fused), with a second scale (``--extra-size``, fused), and with them together;
on all photos, on the val-split photos (where the choices are made) and on the test-split photos.

    python benchmarks/detector_boxes.py ../shared/data/scenes ../shared/data/scenes-ilc \
        --splits recipes/default_splits.csv.gz --size 960
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from maskwatch.data.splits import read_manifest
from maskwatch.imaging import load_rgb
from maskwatch.runtime.boxes import best_matches, fit_box_shape, fuse_passes
from maskwatch.runtime.detectors import make_detector
from maskwatch.runtime.scene_eval import Detection, average_precision
from maskwatch.runtime.scenes import load_ground_truth
from maskwatch.runtime.tracking import iou_matrix

WIDTH_BANDS = ((0, 16), (16, 32), (32, 64), (64, 128), (128, 100_000))


def detect_all(root: Path, size: int, threshold: float, extra_size: int):
    """Per photo: the plain pass, the mirrored pass (mapped back) and a plain pass at ``extra_size``."""
    truth, _ = load_ground_truth(root / "images", root / "annotations")
    detector = make_detector("centerface", input_size=size, threshold=threshold, int8=False)
    extra = make_detector("centerface", input_size=extra_size, threshold=threshold, int8=False)
    plain, flipped, second, seconds = {}, {}, {}, 0.0
    for stem, (path, _) in truth.items():
        image = load_rgb(path)
        started = time.perf_counter()
        plain[stem] = detector.detect(image)
        seconds += time.perf_counter() - started
        mirror = detector.detect(np.ascontiguousarray(image[:, ::-1]))
        width = image.shape[1]
        boxes = mirror.boxes.copy()
        boxes[:, [0, 2]] = width - mirror.boxes[:, [2, 0]]
        flipped[stem] = (boxes, mirror.scores)
        found = extra.detect(image)
        second[stem] = (found.boxes, found.scores)
    boxes_of = {stem: np.array([b for _, b in objs], np.float64).reshape(-1, 4) for stem, (_, objs) in truth.items()}
    return boxes_of, plain, flipped, second, seconds / max(len(truth), 1)


def face_ap(found: dict, truths: dict, stems) -> float:
    detections = [Detection(s, b, float(c)) for s in stems for b, c in zip(*found[s])]
    return average_precision(detections, {s: truths[s] for s in stems})[0]


def matched_pairs(found: dict, truths: dict, stems, min_iou: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(truths[s][g], found[s][0][d]) for s in stems for g, d in best_matches(truths[s], found[s][0], min_iou)]
    gts, dets = [p[0] for p in pairs], [p[1] for p in pairs]
    return np.array(gts).reshape(-1, 4), np.array(dets).reshape(-1, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", type=Path, nargs="+", help="annotated sets (images/ and annotations/ each)")
    parser.add_argument("--splits", type=Path, required=True, help="manifest: the correction is fitted on train photos")
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--extra-size", type=int, default=640, help="the second scale's detector input")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    split_of = {
        (r.sample.source, Path(r.sample.path).stem): r.split for r in read_manifest(args.splits) if r.sample.box is not None
    }
    sets = {}
    for root in args.scenes:
        truths, plain, flipped, second, ms = detect_all(root, args.size, args.threshold, args.extra_size)
        stems = sorted(truths)
        base = {s: (plain[s].boxes, plain[s].scores) for s in stems}
        sets[root.name] = (truths, base, flipped, second, stems)
        n = sum(len(truths[s]) for s in stems)
        print(f"{root.name}: {len(stems)} photos, {n} faces; CenterFace at {args.size}: {1000 * ms:.0f} ms/photo")
        for t in (0.3, 0.4, 0.5):
            hit = sum(int((iou_matrix(truths[s], base[s][0]).max(1) >= t).sum()) for s in stems if len(base[s][0]))
            print(f"  recall at IoU {t}: {hit / n:.4f}")
    pairs = {}
    for name, (truths, base, _, _, stems) in sets.items():
        train = [s for s in stems if split_of.get((name, s)) == "train"]
        pairs[name] = matched_pairs(base, truths, train)
        print(f"{name}: {len(pairs[name][0])} matched train-split faces: {fit_box_shape(*pairs[name])}")
        widths = pairs[name][1][:, 2] - pairs[name][1][:, 0]
        for low, high in WIDTH_BANDS:
            band = (widths >= low) & (widths < high)
            if band.sum() >= 10:  # convention or scale? the same fit per detected-width band
                fitted = fit_box_shape(pairs[name][0][band], pairs[name][1][band])
                print(f"  detected width {low}-{high} px ({int(band.sum())}): {fitted}")
    shape = fit_box_shape(*(np.concatenate([p[i] for p in pairs.values()]) for i in (0, 1)))
    print(f"pooled over {', '.join(sets)} (the correction used below): {shape}")
    results: dict = {"shape": shape.__dict__}
    print("\n| set | variant | face AP, all photos | val-split photos | test-split photos |\n|---|---|---|---|---|")
    for name, (truths, base, flipped, second, stems) in sets.items():
        parts = {split: [s for s in stems if split_of.get((name, s)) == split] for split in ("val", "test")}
        fused = {s: fuse_passes([base[s], flipped[s]])[:2] for s in stems}
        scales = {s: fuse_passes([base[s], second[s]])[:2] for s in stems}
        every = {s: fuse_passes([base[s], flipped[s], second[s]])[:2] for s in stems}
        variants = {
            "as detected": base,
            "box-shape correction": {s: (shape.apply(base[s][0]), base[s][1]) for s in stems},
            "flip fused": fused,
            "flip fused + correction": {s: (shape.apply(fused[s][0]), fused[s][1]) for s in stems},
            f"+ {args.extra_size} px pass + correction": {s: (shape.apply(scales[s][0]), scales[s][1]) for s in stems},
            f"flip + {args.extra_size} px pass + correction": {s: (shape.apply(every[s][0]), every[s][1]) for s in stems},
        }
        for variant, found in variants.items():
            row = {"all": face_ap(found, truths, stems), **{k: face_ap(found, truths, v) for k, v in parts.items()}}
            results.setdefault(name, {})[variant] = row
            print(f"| {name} | {variant} | {row['all']:.4f} | {row['val']:.4f} | {row['test']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
