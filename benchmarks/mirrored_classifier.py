"""Does averaging the classifier over a face crop and its mirror image help, per source?

Scores the shipped int8 classifier (or ``--model``) on one split of the committed manifest, one pass and mirrored
(probabilities of the crop and of its mirror averaged, as ``detect`` does on still images and ``evaluate`` by
default): accuracy, macro-F1 and `mask_incorrect` recall per source. The decision to average was taken on the val
split; the test split is for the report.

    python benchmarks/mirrored_classifier.py --split val
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from maskwatch.data.loading import load_samples
from maskwatch.data.splits import read_manifest
from maskwatch.labels import LABELS
from maskwatch.metrics import classification_report
from maskwatch.runtime.classifier import OnnxMaskClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=Path, default=Path("recipes/default_splits.csv.gz"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", help="ONNX classifier (default: the shipped int8 model)")
    args = parser.parse_args()
    classifier = OnnxMaskClassifier(args.model)
    samples = [row.sample for row in read_manifest(args.splits) if row.split == args.split]
    loaded = load_samples(
        samples,
        size=classifier.info.input_size,
        margin=classifier.info.margin,
        whole_image=classifier.info.whole_image,
        hash_files=False,
    )
    truth = np.array([LABELS.index(s.label) for s in loaded.samples])
    sources = np.array([s.source for s in loaded.samples])
    crops = list(loaded.crops)
    incorrect = LABELS.index("mask_incorrect")
    print(f"{args.split} split: {len(crops)} faces")
    print("| source | faces | one pass: accuracy / macro-F1 / mask_incorrect recall | mirrored: the same |\n|---|---|---|---|")
    passes = {"one pass": classifier.predict_proba(crops), "mirrored": classifier.predict_proba(crops, mirrored=True)}
    for source in ["all", *sorted(set(sources))]:
        part = np.ones(len(truth), bool) if source == "all" else sources == source
        cells = []
        for probs in passes.values():
            predicted = probs[part].argmax(1)
            report = classification_report(truth[part], predicted, LABELS)
            wrongly_worn = truth[part] == incorrect
            recall = f"{np.mean(predicted[wrongly_worn] == incorrect):.4f}" if wrongly_worn.any() else "-"
            cells.append(f"{report['accuracy']:.4f} / {report['macro_f1']:.4f} / {recall}")
        print(f"| {source} | {int(part.sum())} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
