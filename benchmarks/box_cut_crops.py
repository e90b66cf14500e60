"""How does the classifier score faces cut exactly at their annotated box, as the maintainers' private crop sets are?

`maskwatch evaluate MANIFEST` cuts each scene face from its photo with the runtime's margin (15 %) and the photo's
own pixels around it. The private crop sets are files cut exactly at the annotated box, without margin; `evaluate
DIR` turns such a file into a crop with the same geometry, but the margin is then made of replicated border pixels.
This writes one split's scene faces as such files (a class-folder tree per source, JPEG quality 92 like the shared
data) and scores each tree with `maskwatch evaluate`'s code next to the in-photo cut of the same faces, for one or
more classifiers (mirrored, the default of `evaluate`). Training's box-exact copies (``box_cut_copies``) are cut the
same way (`maskwatch.data.loading.cut_at_box`) but not re-encoded as JPEG.

    python benchmarks/box_cut_crops.py --split val --out /tmp/box_cut \
        --model shipped=src/maskwatch/assets/maskwatch_mobilenet_v2_int8.onnx --model other=OTHER.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from maskwatch.data.loading import cut_at_box, decoded_photos
from maskwatch.data.splits import read_manifest
from maskwatch.metrics import classification_report
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.runtime.evaluate import by_source, evaluate_source


def write_box_cuts(manifest: Path, split: str, out: Path) -> dict[str, int]:
    """OUT/SOURCE/LABEL/NNNNN.jpg for every boxed face of ``split`` (:func:`cut_at_box`); returns the count per source."""
    counts: dict[str, int] = {}
    samples = [row.sample for row in read_manifest(manifest) if row.split == split and row.sample.box]
    problems: list[str] = []
    for _, image, indices in decoded_photos(samples, lambda sample: True, "box-exact files", problems):
        for i in indices:
            face = cut_at_box(image, samples[i].box)
            if face is None:
                continue
            n = counts.get(samples[i].source, 0)
            target = out / samples[i].source / samples[i].label / f"{n:05d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), cv2.cvtColor(face, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            counts[samples[i].source] = n + 1
    for problem in problems:
        print(problem)
    return counts


def figures(report: dict) -> str:
    incorrect = report["per_class"]["mask_incorrect"]
    recall = f"{incorrect['recall']:.3f} ({incorrect['support']})" if incorrect["support"] else "-"
    return f"{report['accuracy']:.4f} / {report['macro_f1']:.4f} / {recall}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=Path, default=Path("recipes/default_splits.csv.gz"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the box-exact files (made if missing).")
    parser.add_argument("--model", action="append", default=[], help="NAME=ONNX (repeatable; default: the shipped one).")
    args = parser.parse_args()
    models = [spec.split("=", 1) for spec in args.model] or [["shipped", None]]
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out}: not empty; give a new folder (files left there would be scored too)")
    counts = write_box_cuts(args.splits, args.split, args.out)
    print(f"{args.split} split, box-exact files: {counts}")
    print("| model | source | in-photo cut: accuracy / macro-F1 / mask_incorrect recall | box-exact file: the same |")
    print("|---|---|---|---|")
    for name, path in models:
        classifier = OnnxMaskClassifier(path)
        labels = list(classifier.labels)
        in_photo, in_photo_scored, _ = evaluate_source(args.splits, classifier, split=args.split, mirrored=True)
        in_photo_by_source = by_source(in_photo)
        pooled: dict[str, tuple[list, list]] = {"in_photo": ([], []), "box_cut": ([], [])}
        for sample, truth, probs in zip(in_photo_scored.samples, in_photo_scored.truth, in_photo_scored.probs):
            if sample.source in counts:
                pooled["in_photo"][0].append(truth)
                pooled["in_photo"][1].append(int(probs.argmax()))
        for source in sorted(counts):
            box_cut, scored, problems = evaluate_source(args.out / source, classifier, mirrored=True)
            if problems:
                print(f"{source}: {len(problems)} files skipped, e.g. {problems[0]}")
            pooled["box_cut"][0].extend(scored.truth)
            pooled["box_cut"][1].extend(int(p.argmax()) for p in scored.probs)
            print(f"| {name} | {source} | {figures(in_photo_by_source[source])} | {figures(box_cut)} |")
        both = {kind: classification_report(truth, predicted, labels) for kind, (truth, predicted) in pooled.items()}
        print(f"| {name} | both | {figures(both['in_photo'])} | {figures(both['box_cut'])} |")


if __name__ == "__main__":
    main()
