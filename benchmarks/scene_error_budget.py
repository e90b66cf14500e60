"""Where does end-to-end 3-class mAP go: the detector or the classifier?

Runs the photo pipeline (960 px default refinements; ``--size``/``--one-pass`` as in the other scene benchmarks) on
one split's photos of one or more scene sets and scores it twice: as it is, and with every detection that matches an
annotated face (IoU >= 0.5) given that face's true class at probability 1 (a perfect classifier on the same boxes). The gap between the two is what the classifier costs; the rest (face AP) is
the detector's. Also prints the confusion of matched faces (rows: truth; last column: faces no detection matched) and
the sizes of matched, unmatched and missed boxes.

The classifier's cost splits in two, scored a third way: matched faces keep the labels the classifier gave them but
at probability 1. What that gains is the cost of their confidence (a right label at p 0.6 ranks below a wrong
detection at p 0.9); the rest, up to the perfect classifier, is the cost of their wrong labels. It also prints how well
the matched faces' probabilities are calibrated (log loss, expected calibration error) and the power k that, applied
to them (p ** k, renormalised), gives the lowest log loss: k near 1 means a temperature fitted on these faces would
not change them.

It also classifies the matched faces a second time, cut at their annotated boxes instead of the detected ones, and
scores the photos again with those probabilities in place of the detected cut's (every other detection unchanged): if
the figures hardly move, the loss is the classifier's class boundary on real faces, not the detector's box geometry.

    python benchmarks/scene_error_budget.py ../shared/data/scenes-ilc --split val
"""

from __future__ import annotations

import numpy as np
from scene_args import pipeline_config, scene_set_parser

from maskwatch.crop import crop_face
from maskwatch.imaging import load_rgb
from maskwatch.labels import LABELS
from maskwatch.metrics import classification_report
from maskwatch.runtime.boxes import iou_matrix
from maskwatch.runtime.pipeline import MaskPipeline
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import pooled_ground_truth


def shorter_side(box) -> float:
    return float(min(box[2] - box[0], box[3] - box[1]))


def perfect_labels(objects: list, faces: list[dict], sizes: dict, confusion: np.ndarray, matched: list) -> list[dict]:
    """Faces of one photo with matched ones relabelled to the truth (greedy by face score, as the scorer matches);
    counts the classifier's confusion on matched faces and the sizes of matched / unmatched / missed boxes, and
    appends (annotated face index, position in the returned list) of each match to ``matched``."""
    truth = np.array([box for _, box in objects]).reshape(-1, 4)
    used = np.zeros(len(truth), bool)
    out = []
    for face in sorted(faces, key=lambda f: -f["face_score"]):
        face = dict(face)
        ious = iou_matrix(np.array(face["box"])[None], truth)[0] if len(truth) else np.zeros(0)
        j = int(ious.argmax()) if len(ious) else -1
        if j >= 0 and ious[j] >= 0.5 and not used[j]:
            used[j] = True
            confusion[LABELS.index(objects[j][0]), LABELS.index(face["label"])] += 1
            matched.append((j, len(out)))
            sizes["matched"].append(shorter_side(face["box"]))
            face.update(label=objects[j][0], score=1.0, probs={label: float(label == objects[j][0]) for label in LABELS})
        else:
            sizes["unmatched"].append(shorter_side(face["box"]))
        out.append(face)
    for j in np.nonzero(~used)[0]:
        confusion[LABELS.index(objects[j][0]), len(LABELS)] += 1
        sizes["missed"].append(shorter_side(truth[j]))
    return out


def main() -> None:
    parser = scene_set_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    truth = pooled_ground_truth(args.roots, args.splits, args.split)
    pipeline = MaskPipeline(pipeline_config(args))
    found = {stem: [f.to_json() for f in pipeline(load_rgb(path)).faces] for stem, (path, _) in truth.items()}
    confusion = np.zeros((len(LABELS), len(LABELS) + 1), int)
    sizes: dict[str, list[float]] = {"matched": [], "unmatched": [], "missed": []}
    matched: dict[str, list] = {stem: [] for stem in truth}
    perfect = {
        stem: perfect_labels(objects, found[stem], sizes, confusion, matched[stem]) for stem, (_, objects) in truth.items()
    }
    objects = {stem: item[1] for stem, item in truth.items()}
    confident = confident_as_labelled(found, matched)
    for name, predictions in (
        ("as shipped", found),
        ("matched faces at p 1, labels as classified", confident),
        ("perfect classifier on the same boxes", perfect),
    ):
        report = score_scenes(objects, predictions)
        aps = " / ".join(f"{report['class'][label]['ap']:.4f}" for label in LABELS)
        print(f"{name}: face AP {report['face_ap']:.4f}, 3-class mAP {report['map_3class']:.4f} (AP {aps})")
    print(f"\n{args.split} photos: {len(truth)}; matched faces, rows = truth, columns = {', '.join(LABELS)}, missed")
    for label, row in zip(LABELS, confusion):
        print(f"  {label:15s} {row.tolist()}")
    for kind, values in sizes.items():
        if values:
            print(f"{kind} boxes: {len(values)}, shorter side median {np.median(values):.0f} px")
    print_calibration(truth, found, matched)
    compare_cuts(pipeline, truth, found, matched)


def confident_as_labelled(found: dict[str, list[dict]], matched: dict[str, list]) -> dict[str, list[dict]]:
    """Every photo's faces with the matched ones at probability 1 for the label the classifier gave them."""
    out = {}
    for stem, faces in found.items():
        ordered = [dict(face) for face in in_score_order(faces)]
        for _, position in matched[stem]:
            face = ordered[position]
            face.update(score=1.0, probs={label: float(label == face["label"]) for label in LABELS})
        out[stem] = ordered
    return out


def print_calibration(truth: dict, found: dict[str, list[dict]], matched: dict[str, list]) -> None:
    """Log loss and 10-bin expected calibration error of the matched faces' probabilities, and the power that
    minimises the log loss (1: already calibrated on these faces)."""
    probs, y_true = [], []
    for stem, pairs in matched.items():
        ordered = in_score_order(found[stem])
        for j, position in pairs:
            probs.append([ordered[position]["probs"][label] for label in LABELS])
            y_true.append(LABELS.index(truth[stem][1][j][0]))
    if not probs:
        return
    p, y = np.clip(np.array(probs), 1e-6, 1.0), np.array(y_true)

    def log_loss(power: float) -> float:
        q = p**power
        q /= q.sum(1, keepdims=True)
        return float(-np.mean(np.log(q[np.arange(len(y)), y])))

    confidence, right = p.max(1), p.argmax(1) == y
    bins = np.minimum((confidence * 10).astype(int), 9)
    ece = sum(np.mean(bins == b) * abs(right[bins == b].mean() - confidence[bins == b].mean()) for b in np.unique(bins))
    powers = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    best = powers[int(np.argmin([log_loss(k) for k in powers]))]
    print(
        f"\ncalibration of the {len(y)} matched faces: log loss {log_loss(1.0):.4f}, ECE {ece:.4f}, mean confidence "
        f"{confidence.mean():.3f}, accuracy {right.mean():.3f}; lowest log loss at p ** {best:.2f} ({log_loss(best):.4f})"
    )


def in_score_order(faces: list[dict]) -> list[dict]:
    """The order :func:`perfect_labels` walks a photo's faces in (its ``matched`` positions refer to it)."""
    return sorted(faces, key=lambda f: -f["face_score"])


def compare_cuts(pipeline: MaskPipeline, truth: dict, found: dict[str, list[dict]], matched: dict[str, list]) -> None:
    """The matched faces classified as detected and cut at their annotated boxes (same classifier, same mirrored
    averaging): macro-F1 and `mask_incorrect` recall of each cut, and end-to-end AP with the annotated cut's
    probabilities put in place of the detected cut's."""
    y_true, as_detected, crops, places = [], [], [], []
    for stem, pairs in matched.items():
        if not pairs:
            continue
        path, objects = truth[stem]
        image, ordered = load_rgb(path), in_score_order(found[stem])
        for j, position in pairs:
            y_true.append(LABELS.index(objects[j][0]))
            as_detected.append(LABELS.index(ordered[position]["label"]))
            crops.append(crop_face(image, objects[j][1], margin=pipeline.margin, size=pipeline.classifier.info.input_size))
            places.append((stem, position))
    if not crops:
        print("\nno detected face matches an annotated one: nothing to compare")
        return
    probs = pipeline.classifier.predict_proba(crops, mirrored=pipeline.config.flip)
    labels = pipeline.classifier.labels
    as_annotated = [LABELS.index(labels[i]) for i in probs.argmax(1)]
    print(f"\nthe {len(y_true)} matched faces, classified on two cuts:")
    for name, predicted in (("detected boxes", as_detected), ("annotated boxes", as_annotated)):
        report = classification_report(y_true, predicted, LABELS)
        recall = report["per_class"]["mask_incorrect"]["recall"]
        print(f"  {name:15s} macro-F1 {report['macro_f1']:.4f}, mask_incorrect recall {recall:.3f}")
    swapped = {stem: [dict(face) for face in in_score_order(faces)] for stem, faces in found.items()}
    for (stem, position), row in zip(places, probs):
        best = int(row.argmax())
        swapped[stem][position].update(
            label=labels[best], score=float(row[best]), probs={label: float(p) for label, p in zip(labels, row)}
        )
    report = score_scenes({stem: item[1] for stem, item in truth.items()}, swapped)
    aps = " / ".join(f"{report['class'][label]['ap']:.4f}" for label in LABELS)
    print(f"end to end, matched faces classified on their annotated cut: 3-class mAP {report['map_3class']:.4f} (AP {aps})")


if __name__ == "__main__":
    main()
