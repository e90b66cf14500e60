"""End to end, is one classifier better than another, or are they within the noise of the photos?

The val check a retrained model passes before it replaces the shipped one (docs/model-history.md, "How the epoch was chosen").
Detects the faces of one split's scene photos once (the photo default, or one pass), classifies every detected face
with each model, scores both with the scorer of `maskwatch evaluate-scenes` (IoU 0.5, VOC AP), and bootstraps the
photos: each round draws as many photos as there are, with replacement, and scores both models on the same draw. It
prints each model's figures and, for the second minus the first, the difference on all photos, its 95 % interval over
the rounds and the share of rounds in which the second is ahead. An interval that spans 0 means the photos cannot tell
the two models apart. ``--changes`` lists the detected faces the two models label differently, with the class of the
annotated face each covers at IoU 0.5: whether a gap comes from a few faces, and which. Several files after ``--other``
are compared as one ensemble: the mean of their calibrated probabilities (each file's own temperature and mirrored
average), the first file's crop settings.

    python benchmarks/compare_classifiers.py ../shared/data/scenes ../shared/data/scenes-ilc --split val \\
        --model src/maskwatch/assets/maskwatch_mobilenet_v2_int8.onnx --other runs/x/candidate_int8.onnx [--changes]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from detected_face_margin import detected_faces, records_at
from scene_args import pipeline_config, scene_set_parser

from maskwatch.runtime.boxes import iou_matrix
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.runtime.pipeline import MaskPipeline
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import pooled_ground_truth

FIGURES = ("map_3class", "mask_incorrect_ap")


class AveragedClassifier(OnnxMaskClassifier):
    """Several ONNX classifiers as one: the mean of their calibrated probabilities; crop settings from the first."""

    def __init__(self, paths: list[Path]):
        super().__init__(paths[0])
        self.members = [self, *(OnnxMaskClassifier(path) for path in paths[1:])]
        if any(member.labels != self.labels for member in self.members):
            raise SystemExit("--other: the files do not share one label order")
        self.path = " + ".join(str(path) for path in paths)

    def predict_proba(self, crops, *, mirrored: bool = False) -> np.ndarray:
        return np.mean([OnnxMaskClassifier.predict_proba(m, crops, mirrored=mirrored) for m in self.members], axis=0)


def figures(truth: dict, records: dict, keys: list[str]) -> dict[str, float]:
    """3-class mAP and `mask_incorrect` AP over ``keys`` (a photo drawn twice counts twice, under distinct names)."""
    drawn_truth = {f"{key}#{i}": truth[key] for i, key in enumerate(keys)}
    drawn_records = {f"{key}#{i}": records[key] for i, key in enumerate(keys)}
    report = score_scenes(drawn_truth, drawn_records)
    return {"map_3class": report["map_3class"], "mask_incorrect_ap": report["class"]["mask_incorrect"]["ap"]}


def bootstrap(truth: dict, first: dict, second: dict, rounds: int, seed: int) -> dict[str, np.ndarray]:
    """Per figure, second minus first on each of ``rounds`` draws of the photos with replacement."""
    keys = sorted(truth)
    rng = np.random.default_rng(seed)
    differences: dict[str, list[float]] = {name: [] for name in FIGURES}
    for _ in range(rounds):
        draw = [keys[i] for i in rng.integers(0, len(keys), len(keys))]
        a, b = figures(truth, first, draw), figures(truth, second, draw)
        for name in FIGURES:
            differences[name].append(b[name] - a[name])
    return {name: np.array(values) for name, values in differences.items()}


def label_changes(objects: dict, first: dict, second: dict, iou: float = 0.5) -> list[dict]:
    """The faces (same detections, same order in both) whose label differs, most confident detections first; ``truth``
    is the class of the annotated face the box covers most at ``iou`` or more, None where it covers none."""
    rows = []
    for key in sorted(first):
        annotated = objects.get(key, [])
        boxes = np.array([box for _, box in annotated], np.float64).reshape(-1, 4)
        for a, b in zip(first[key], second[key], strict=True):
            if a["label"] == b["label"]:
                continue
            overlap = np.nan_to_num(iou_matrix(np.array([a["box"]], np.float64), boxes)[0], nan=0.0)
            covered = overlap.size and overlap.max() >= iou
            truth = annotated[int(overlap.argmax())][0] if covered else None
            rows.append({"photo": key, "face_score": a["face_score"], "truth": truth, "first": a, "second": b})
    return sorted(rows, key=lambda row: -row["face_score"])


def print_changes(rows: list[dict]) -> None:
    annotated = [row for row in rows if row["truth"] is not None]
    right = [sum(row[model]["label"] == row["truth"] for row in annotated) for model in ("first", "second")]
    print(
        f"label changes: {len(rows)} faces, {len(annotated)} of them annotated (first right on {right[0]}, second on"
        f" {right[1]}); truth '-' = no annotated face at IoU 0.5"
    )
    print("| photo | face score | truth | first: label (p) | second: label (p) |\n|---|---|---|---|---|")
    for row in rows:
        first, second = (f"{row[m]['label']} ({row[m]['score']:.2f})" for m in ("first", "second"))
        print(f"| {row['photo']} | {row['face_score']:.2f} | {row['truth'] or '-'} | {first} | {second} |")


def main() -> None:
    parser = scene_set_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--other", type=Path, nargs="+", required=True, help="ONNX classifier to compare with --model (several: their mean)."
    )
    parser.add_argument("--rounds", type=int, default=2000, help="Bootstrap draws of the photos.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--changes", action="store_true", help="List the faces the two models label differently.")
    args = parser.parse_args()
    refined = not args.one_pass
    config = pipeline_config(args)
    pipeline = MaskPipeline(config)
    other = MaskPipeline(config, detector=pipeline.detector, classifier=AveragedClassifier(args.other))
    truth = pooled_ground_truth(args.roots, args.splits, args.split)
    found = detected_faces(truth, pipeline)
    objects = {key: item[1] for key, item in truth.items()}
    records = [records_at(truth, found, each, 0.0, refined) for each in (pipeline, other)]
    names = [pipeline.classifier.path, other.classifier.path]
    print(f"{args.split} photos: {len(truth)}, detector {args.size} px, {'one pass' if args.one_pass else 'photo default'}")
    whole = [figures(objects, each, sorted(truth)) for each in records]
    for name, row in zip(names, whole):
        print(f"  {name}: 3-class mAP {row['map_3class']:.4f}, mask_incorrect AP {row['mask_incorrect_ap']:.4f}")
    if args.changes:
        print_changes(label_changes(objects, records[0], records[1]))
    differences = bootstrap(objects, records[0], records[1], args.rounds, args.seed)
    print(f"second minus first ({args.rounds} draws of the photos; draws without a face of some class have no AP):")
    for figure, values in differences.items():
        values = values[~np.isnan(values)]  # a draw without any face of a class has no AP for it
        if not len(values):
            print(f"  {figure}: no draw holds a face of every class")
            continue
        low, high = np.percentile(values, [2.5, 97.5])
        print(
            f"  {figure}: {whole[1][figure] - whole[0][figure]:+.4f} on all photos, 95 % interval "
            f"[{low:+.4f}, {high:+.4f}], second ahead in {int((values > 0).sum())} of {len(values)} draws "
            f"({np.mean(values > 0):.1%})"
        )


if __name__ == "__main__":
    main()
