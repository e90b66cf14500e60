"""Can the photo default rank its faces better than by CenterFace's score alone?

Face AP on the scenes-ilc photos stays near 0.8 while recall is 0.9: detections that no annotator drew (mostly small)
rank among true faces. The fused photo default knows more than the best pass's score: how many of its passes saw the
face and how sure each was, how large the face is in pixels and against the image, and where its landmarks sit in
the box. This study detects every photo once with the photo default's passes (960 px, mirrored, 640 px; cached with
the classifier's probabilities of each fused face), fits on the train-split photos a logistic regression from those
features to "an annotated face covers this box at IoU 0.5", and reports on val and test, per set, face AP and the
end-to-end 3-class mAP and ``mask_incorrect`` AP with the faces ranked by the detector's score (as now) or by the fit.

    python benchmarks/face_rescoring.py ../shared/data/scenes ../shared/data/scenes-ilc \
        --splits recipes/default_splits.csv.gz --cache runs/face_passes.npz
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from maskwatch.data.splits import read_manifest
from maskwatch.imaging import load_rgb
from maskwatch.labels import LABELS
from maskwatch.progress import track
from maskwatch.results import Face
from maskwatch.runtime.boxes import iou_matrix
from maskwatch.runtime.detectors import Detections
from maskwatch.runtime.face_ranking import RANKING_FEATURES, FaceRanking, fit_face_ranking, ranking_features
from maskwatch.runtime.pipeline import (
    FIXED_BOX_SHAPE,
    MaskPipeline,
    PipelineConfig,
    box_shape_for,
    extra_sizes_for,
    fused_passes,
    reshaped,
    still_image_defaults,
)
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import load_ground_truth

PARTS = ("boxes", "scores", "landmarks")


def photo_pipeline(size: int) -> MaskPipeline:
    """The pipeline ``detect`` builds for photos at ``size``."""
    box_shape, flip = still_image_defaults(True, size, None, None)
    extra = extra_sizes_for(True, size, None)
    # No size floor here, so that every fused face gets its probabilities; predictions() applies the runtime's.
    config = PipelineConfig(detector_size=size, flip=flip, box_shape=box_shape, extra_detector_sizes=extra, min_face_size=0.0)
    return MaskPipeline(config)


def detect_set(root: Path, pipeline: MaskPipeline) -> dict[str, dict]:
    """stem -> {"passes": [Detections...], "probs": classifier probabilities of the fused, reshaped faces, "shape"}."""
    truth, _ = load_ground_truth(root / "images", root / "annotations")
    found = {}
    for stem, (path, _) in track(truth.items(), description=root.name, total=len(truth)):
        image = load_rgb(path)
        passes = pipeline.detector_passes(image)
        faces = placed(passes, image.shape[:2], pipeline.config.detector_size)
        result = pipeline.classify_faces(
            image, Detections(faces.boxes, np.ones(len(faces.boxes)), faces.landmarks, faces.crop_boxes)
        )
        probs = np.array([[face.probs[label] for label in LABELS] for face in result.faces]).reshape(-1, len(LABELS))
        found[stem] = {"passes": passes, "probs": probs, "shape": np.array(image.shape[:2])}
    return found


def placed(passes: list[Detections], shape: tuple[int, int], size: int) -> Detections:
    """The passes fused and reshaped as the runtime does for photos."""
    return reshaped(fused_passes(passes), shape, box_shape_for(size), crop_shape=FIXED_BOX_SHAPE)


def cached_sets(roots: list[Path], size: int, cache: Path | None) -> dict[str, dict]:
    """Per set name, :func:`detect_set`'s results: read from ``cache`` when it holds them at this size, else made (with
    the shipped classifier; delete the cache after changing it) and written there."""
    if cache is not None and cache.exists():
        flat = dict(np.load(cache, allow_pickle=False))
        if int(flat.pop("detector_size", -1)) != size:
            raise SystemExit(f"{cache}: made at another detector size than {size}; give another --cache")
        sets: dict[str, dict] = {}
        for key, value in flat.items():
            name, stem, part = key.split("|", 2)
            sets.setdefault(name, {}).setdefault(stem, {})[part] = value
        out: dict[str, dict] = {}
        for name, stems in sets.items():
            out[name] = {}
            for stem, parts in stems.items():
                count = len([k for k in parts if k.endswith("|boxes")])
                passes = [Detections(*(parts[f"{i}|{p}"] for p in PARTS)) for i in range(count)]
                out[name][stem] = {"passes": passes, "probs": parts["probs"], "shape": parts["shape"]}
        return out
    pipeline = photo_pipeline(size)
    sets = {root.name: detect_set(root, pipeline) for root in roots}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        flat = {"detector_size": np.array(size)}
        for name, stems in sets.items():
            for stem, item in stems.items():
                flat[f"{name}|{stem}|probs"] = item["probs"]
                flat[f"{name}|{stem}|shape"] = item["shape"]
                for i, found in enumerate(item["passes"]):
                    for part in PARTS:
                        flat[f"{name}|{stem}|{i}|{part}"] = getattr(found, part)
        np.savez_compressed(cache, **flat)
    return sets


def covered(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Whether an annotated face covers each box at IoU 0.5."""
    if not len(boxes) or not len(truth):
        return np.zeros(len(boxes), bool)
    return iou_matrix(boxes, truth).max(1) >= 0.5


def predictions(item: dict, size: int, ranking: FaceRanking | np.ndarray | None) -> list[dict]:
    """Face records as ``detect --json`` writes them, ``face_score`` from ``ranking`` when given (or, given the
    annotated boxes, the oracle: every covered face ranked above every other, each group by the detector's score)."""
    passes, shape = item["passes"], tuple(int(v) for v in item["shape"])
    fused = fused_passes(passes)
    faces = placed(passes, shape, size)
    if ranking is None:
        scores = fused.scores
    elif isinstance(ranking, FaceRanking):
        scores = ranking.score(fused, passes, shape)
    else:
        scores = (covered(faces.boxes, ranking) + fused.scores) / 2
    floors = PipelineConfig()  # the runtime's --min-face-score (on the detector's score) and --min-face-size
    sides = np.minimum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    keep = (fused.scores >= floors.min_face_score) & (sides >= floors.min_face_size)
    records = []
    for i in np.nonzero(keep)[0]:
        row = item["probs"][i]
        best = int(row.argmax())
        face = Face(faces.boxes[i], LABELS[best], float(row[best]), dict(zip(LABELS, map(float, row))), float(scores[i]))
        records.append(face.to_json())  # rounded as `detect --json` writes it
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenes", type=Path, nargs="+", help="annotated sets (images/ and annotations/ each)")
    parser.add_argument("--splits", type=Path, required=True, help="manifest: the fit uses train-split photos only")
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--cache", type=Path, help="npz of the passes and probabilities (written once, read after)")
    parser.add_argument("--regularisation", type=float, default=1.0, help="inverse L2 strength of the fit")
    parser.add_argument("--print-constant", action="store_true", help="print the fit as Python")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--test", action="store_true", help="also report the test split (after every choice is made)")
    args = parser.parse_args()
    split_of = {
        (r.sample.source, Path(r.sample.path).stem): r.split for r in read_manifest(args.splits) if r.sample.box is not None
    }
    sets = cached_sets(args.scenes, args.size, args.cache)
    truths = {}
    for root in args.scenes:
        truth, _ = load_ground_truth(root / "images", root / "annotations")
        truths[root.name] = {s: objs for s, (_, objs) in truth.items()}

    def stems(name: str, split: str) -> list[str]:
        return sorted(s for s in sets[name] if split_of.get((name, s)) == split)

    features, targets = [], []
    for name in sets:
        for stem in stems(name, "train"):
            item = sets[name][stem]
            shape = tuple(int(v) for v in item["shape"])
            fused = fused_passes(item["passes"])
            truth = np.array([b for _, b in truths[name][stem]], np.float64).reshape(-1, 4)
            features.append(ranking_features(fused, item["passes"], shape))
            targets.append(covered(placed(item["passes"], shape, args.size).boxes, truth))
    x, y = np.concatenate(features), np.concatenate(targets)
    fitted = fit_face_ranking(x, y, regularisation=args.regularisation)
    print(f"fit on {len(y)} train-split detections ({int(y.sum())} annotated faces)")
    if args.print_constant:
        weights = "".join(f"\n        {w:.6g},  # {name}" for w, name in zip(fitted.weights, RANKING_FEATURES))
        print(f"FaceRanking(\n    weights=({weights}\n    ),\n    intercept={fitted.intercept:.6g},\n)")
    timed = [sets[name][s] for name in sets for s in stems(name, "val")]
    start = time.perf_counter()
    for item in timed:
        fitted.score(fused_passes(item["passes"]), item["passes"], tuple(int(v) for v in item["shape"]))
    per_photo = (time.perf_counter() - start) * 1e3 / max(len(timed), 1)
    print(f"ranking cost: {per_photo:.2f} ms per photo (fusion included), over {len(timed)} val photos")
    results: dict = {"ranking_ms_per_photo": round(per_photo, 3)}
    for split in ("val", "test") if args.test else ("val",):
        for name in sets:
            chosen = stems(name, split)
            row = {}
            for how in ("detector score", "fitted ranking", "oracle ranking"):
                preds = {}
                for s in chosen:
                    annotated = np.array([b for _, b in truths[name][s]], np.float64).reshape(-1, 4)
                    ranking = {"detector score": None, "fitted ranking": fitted, "oracle ranking": annotated}[how]
                    preds[s] = predictions(sets[name][s], args.size, ranking)
                report = score_scenes({s: truths[name][s] for s in chosen}, preds)
                row[how] = {
                    "face_ap": round(report["face_ap"], 4),
                    "face_recall": round(report["face_recall"], 4),
                    "map_3class": round(report["map_3class"], 4),
                    "incorrect_ap": round(report["class"]["mask_incorrect"]["ap"], 3),
                }
            results[f"{name} {split}"] = row
            print(f"{name} {split} ({len(chosen)} photos): " + "; ".join(f"{k}: {v}" for k, v in row.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
