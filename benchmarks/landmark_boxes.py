"""Can CenterFace's five landmarks say where the annotators drew the face better than one fixed box-shape correction?

The shipped correction (``maskwatch.runtime.boxes.CENTERFACE_TO_ANNOTATED``) moves and scales every box the same way.
A face turned aside, tilted or looking down has its annotated box placed differently relative to the detected one,
and the landmarks see that. This study detects every photo of the given sets once with the photo default (960 px,
mirrored pass, 640 px pass, fused; no reshaping; ``--size`` another size's photo default), caches the boxes and
landmarks, fits on the train-split photos a linear map from landmark geometry to the annotated box (centre shift and
log size ratios, in detected-box units) and
reports, per set, on val and test photos: face AP@0.5, recall at IoU 0.5, and the median IoU of matched faces, as
detected, with the fixed correction, with the landmark map the runtime ships and with this run's fit (every detection
counts here; ``evaluate-scenes`` also drops faces under ``--min-face-size``, so its face AP differs in the third
digit). ``--by-class`` counts the faces each placement covers at IoU 0.5 per class and at the image edge, on every
split. With ``--classify SPLIT`` it also classifies the faces of that split's photos (shipped int8 classifier,
mirrored at 640 px and up, as ``detect`` does on photos) and reports 3-class mAP and ``mask_incorrect`` AP end to
end, with the classifier's crops cut at the fixed correction (the runtime's choice) or at the landmark boxes.
Faces are ranked by the detector's score here (the cache keeps no passes), not by the photo default's face ranking
(``benchmarks/face_rescoring.py``).

    python benchmarks/landmark_boxes.py ../shared/data/scenes ../shared/data/scenes-ilc \
        --splits recipes/default_splits.csv.gz --cache runs/landmark_boxes.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from maskwatch.data.splits import read_manifest
from maskwatch.imaging import load_rgb
from maskwatch.progress import track
from maskwatch.runtime.boxes import (
    CENTERFACE_TO_ANNOTATED,
    CENTERFACE_TO_ANNOTATED_BY_LANDMARKS,
    LandmarkBoxShape,
    best_matches,
    fit_landmark_box_shape,
    iou_matrix,
)
from maskwatch.runtime.detectors import Detections
from maskwatch.runtime.pipeline import (
    MaskPipeline,
    PipelineConfig,
    extra_sizes_for,
    reshaped,
    still_image_defaults,
    touching_edge,
)
from maskwatch.runtime.scene_eval import Detection, average_precision, score_scenes
from maskwatch.runtime.scenes import load_ground_truth


def detect_photos(root: Path, size: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """stem -> (boxes, scores, landmarks) of the photo default at ``size`` (its passes fused), before any reshaping."""
    _, flip = still_image_defaults(True, size, None, None)
    config = PipelineConfig(detector_size=size, flip=flip, extra_detector_sizes=extra_sizes_for(True, size, None))
    pipeline = MaskPipeline(config)
    truth, _ = load_ground_truth(root / "images", root / "annotations")
    found = {}
    for stem, (path, _) in track(truth.items(), description=root.name, total=len(truth)):
        faces = pipeline.find_faces(load_rgb(path))
        found[stem] = (faces.boxes, faces.scores, faces.landmarks)
    return found


def cached_detections(roots: list[Path], size: int, cache: Path | None) -> dict[str, dict]:
    """Per set name, the detections: read from ``cache`` when it holds them at this size, else detected and written
    there."""
    if cache is not None and cache.exists():
        flat = dict(np.load(cache, allow_pickle=False))
        if int(flat.pop("detector_size", -1)) != size:
            raise SystemExit(f"{cache}: made at another detector size than {size}; give another --cache")
        sets: dict[str, dict] = {}
        for key, value in flat.items():
            name, stem, part = key.split("|")
            sets.setdefault(name, {}).setdefault(stem, {})[part] = value
        return {name: {s: (v["boxes"], v["scores"], v["landmarks"]) for s, v in stems.items()} for name, stems in sets.items()}
    sets = {root.name: detect_photos(root, size) for root in roots}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        flat = {
            f"{name}|{stem}|{part}": value
            for name, found in sets.items()
            for stem, triple in found.items()
            for part, value in zip(("boxes", "scores", "landmarks"), triple)
        }
        np.savez_compressed(cache, detector_size=np.array(size), **flat)
    return sets


def matched(found: dict, truths: dict, stems, min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annotated boxes, detected boxes, detected landmarks) of the best match of each annotated face."""
    pairs = [(s, g, d) for s in stems for g, d in best_matches(truths[s], found[s][0], min_iou)]
    gts = [truths[s][g] for s, g, _ in pairs]
    boxes, marks = [found[s][0][d] for s, _, d in pairs], [found[s][2][d] for s, _, d in pairs]
    return np.array(gts).reshape(-1, 4), np.array(boxes).reshape(-1, 4), np.array(marks).reshape(-1, 5, 2)


def placed(found: tuple, size: tuple[int, int], shape: LandmarkBoxShape) -> tuple:
    """Cached (boxes, scores, landmarks) reshaped as the runtime does (image edge and clipping included)."""
    boxes = reshaped(Detections(*found), (size[1], size[0]), shape).boxes
    return boxes, *found[1:]


def matched_at_half(
    found: dict, truths: dict, labels: dict, sizes: dict, stems, shapes: dict[str, LandmarkBoxShape]
) -> dict[str, dict[str, int]]:
    """Per group (each class, and faces whose detected box touches the image edge): how many annotated faces the
    detection they overlap most (at IoU >= 0.3, as detected) covers at IoU >= 0.5 once placed by each of ``shapes``
    (the runtime's placement, edge rule included; "raw map" variants apply the map to every box)."""
    counts: dict[str, dict[str, int]] = {}
    for s in stems:
        boxes, _, marks = found[s]
        width, height = sizes[s]
        for g, d in best_matches(truths[s], boxes, 0.3):
            groups = [labels[s][g]] + (["at the image edge"] if touching_edge(boxes[d : d + 1], (height, width))[0] else [])
            for group in groups:
                row = counts.setdefault(group, {"faces": 0, **{name: 0 for name in shapes}})
                row["faces"] += 1
                for name, shape in shapes.items():
                    if name.startswith("raw"):
                        placed_box = shape.apply(boxes[d : d + 1], marks[d : d + 1])
                    else:
                        placed_box = placed((boxes[d : d + 1], found[s][1][d : d + 1], marks[d : d + 1]), (width, height), shape)[
                            0
                        ]
                    row[name] += int(iou_matrix(truths[s][g : g + 1], placed_box)[0, 0] >= 0.5)
    return counts


def figures(found: dict, truths: dict, stems) -> dict:
    detections = [Detection(s, b, float(c)) for s in stems for b, c in zip(found[s][0], found[s][1])]
    ap, recall, _ = average_precision(detections, {s: truths[s] for s in stems})
    ious = [iou_matrix(truths[s], found[s][0]).max(1) for s in stems if len(found[s][0]) and len(truths[s])]
    best = np.concatenate(ious) if ious else np.zeros(0)
    return {"face_ap": ap, "recall": float(recall[-1]), "median_iou": float(np.median(best[best >= 0.3]))}


def end_to_end(
    root: Path, stems: list[str], found: dict, shapes: tuple[LandmarkBoxShape, LandmarkBoxShape], pipeline: MaskPipeline
) -> dict:
    """3-class mAP and ``mask_incorrect`` AP of ``stems`` with the cached detections' boxes reshaped by ``shapes[0]``
    and cut for the classifier at ``shapes[1]``, classified as ``detect`` does on photos."""
    truth, _ = load_ground_truth(root / "images", root / "annotations")
    predictions = {}
    for stem in stems:
        image = load_rgb(truth[stem][0])
        faces = reshaped(Detections(*found[stem]), image.shape[:2], *shapes)
        predictions[stem] = [face.to_json() for face in pipeline.classify_faces(image, faces).faces]
    report = score_scenes({stem: truth[stem][1] for stem in stems}, predictions)
    return {"map_3class": report["map_3class"], "incorrect_ap": report["class"]["mask_incorrect"]["ap"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", type=Path, nargs="+", help="annotated sets (images/ and annotations/ each)")
    parser.add_argument("--splits", type=Path, required=True, help="manifest: the fit uses train-split photos only")
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--cache", type=Path, help="npz of the detections (written once, read after)")
    parser.add_argument("--min-iou", type=float, default=0.3, help="pairs the fit learns from")
    parser.add_argument("--ridge", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--classify", choices=("val", "test"), help="also score this split's photos end to end")
    parser.add_argument("--print-constant", action="store_true", help="print the fit as Python, for runtime/boxes.py")
    parser.add_argument("--by-class", action="store_true", help="faces matched at IoU 0.5 per class and at the edge")
    args = parser.parse_args()
    split_of = {
        (r.sample.source, Path(r.sample.path).stem): r.split for r in read_manifest(args.splits) if r.sample.box is not None
    }
    sets = cached_detections(args.scenes, args.size, args.cache)
    truths, labels, sizes = {}, {}, {}
    for root in args.scenes:
        truth, _ = load_ground_truth(root / "images", root / "annotations")
        truths[root.name] = {s: np.array([b for _, b in objs], np.float64).reshape(-1, 4) for s, (_, objs) in truth.items()}
        labels[root.name] = {s: [label for label, _ in objs] for s, (_, objs) in truth.items()}
        sizes[root.name] = {s: Image.open(path).size for s, (path, _) in truth.items()}  # (width, height)
    stems_of = {
        (name, split): sorted(s for s in truths[name] if split_of.get((name, s)) == split)
        for name in truths
        for split in ("train", "val", "test")
    }
    pairs = [matched(sets[name], truths[name], stems_of[(name, "train")], args.min_iou) for name in truths]
    annotated, detected, landmarks = (np.concatenate([p[i] for p in pairs]) for i in range(3))
    fitted = fit_landmark_box_shape(annotated, detected, landmarks, ridge=args.ridge)
    print(f"landmark fit on {len(annotated)} matched train-split faces of {', '.join(truths)} (and their mirror images)")
    if args.print_constant:
        rows = ",\n".join(f"        ({', '.join(f'{v:.5f}' for v in row)})" for row in fitted.coef)
        print(
            f"LandmarkBoxShape(\n    coef=(\n{rows},\n    ),\n    intercept=({', '.join(f'{v:.5f}' for v in fitted.intercept)}),"
        )
    plain = LandmarkBoxShape.from_box_shape(CENTERFACE_TO_ANNOTATED)
    variants = {
        "as detected": None,
        "fixed correction": plain,
        "landmark map (shipped)": CENTERFACE_TO_ANNOTATED_BY_LANDMARKS,
        "landmark fit (this run)": fitted,
    }
    results: dict = {}
    print("\n| set | split | variant | face AP | recall at IoU 0.5 | median IoU (matched at 0.3) |\n|---|---|---|---|---|---|")
    for name in truths:
        for split in ("val", "test"):
            stems = stems_of[(name, split)]
            for variant, shape in variants.items():
                found = {s: sets[name][s] if shape is None else placed(sets[name][s], sizes[name][s], shape) for s in stems}
                row = figures(found, truths[name], stems)
                results.setdefault(name, {}).setdefault(split, {})[variant] = row
                print(
                    f"| {name} | {split} ({len(stems)}) | {variant} | {row['face_ap']:.4f} | {row['recall']:.4f} "
                    f"| {row['median_iou']:.3f} |"
                )
    photos = [(name, stem) for name in truths for stem in truths[name]]
    faces = sum(len(sets[name][stem][0]) for name, stem in photos)
    for variant in ("fixed correction", "landmark map (shipped)"):
        started = time.perf_counter()
        for name, stem in photos:
            placed(sets[name][stem], sizes[name][stem], variants[variant])
        ms = 1e3 * (time.perf_counter() - started) / len(photos)
        print(f"{variant}: {ms:.3f} ms per photo ({faces / len(photos):.1f} detections per photo, {len(photos)} photos)")
    if args.by_class:
        shapes = {
            "fixed correction": plain,
            "raw landmark map": CENTERFACE_TO_ANNOTATED_BY_LANDMARKS,
            "landmark map (shipped)": CENTERFACE_TO_ANNOTATED_BY_LANDMARKS,
        }
        print(f"\n| set | split | faces | matched at IoU 0.5: {' / '.join(shapes)} |\n|---|---|---|---|")
        for name in truths:
            for split in ("train", "val", "test"):
                counts = matched_at_half(sets[name], truths[name], labels[name], sizes[name], stems_of[(name, split)], shapes)
                for group, row in sorted(counts.items()):
                    print(f"| {name} | {split} | {group}: {row['faces']} | {' / '.join(str(row[k]) for k in shapes)} |")
    if args.classify:
        pipeline = MaskPipeline(
            PipelineConfig(detector_size=args.size, flip=still_image_defaults(True, args.size, None, None)[1])
        )
        print(
            f"\n| set | {args.classify} photos, end to end | variant | 3-class mAP | mask_incorrect AP |\n|---|---|---|---|---|"
        )
        for root in args.scenes:
            stems = stems_of[(root.name, args.classify)]
            for variant, shapes in {
                "fixed correction": (plain, plain),
                "landmark map, crops cut there too": (CENTERFACE_TO_ANNOTATED_BY_LANDMARKS,) * 2,
                "landmark map, crops cut at the fixed correction (shipped)": (CENTERFACE_TO_ANNOTATED_BY_LANDMARKS, plain),
            }.items():
                row = end_to_end(root, stems, sets[root.name], shapes, pipeline)
                results[root.name][args.classify].setdefault(variant, {}).update(row)
                print(f"| {root.name} | {len(stems)} | {variant} | {row['map_3class']:.4f} | {row['incorrect_ap']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
