"""Issue 9's figures on one split for several classifiers in one run: how far apart are runs of one recipe?

For each ``--classifier NAME=FILE`` (int8 ONNX files, as shipped): per source of the committed manifest, accuracy, macro-F1
and `mask_incorrect` recall of the face crops, mirrored as ``maskwatch evaluate`` does by default; then, per scene set,
3-class mAP and `mask_incorrect` AP of the split's photos end to end, with the photo default of ``maskwatch
evaluate-scenes`` (the detector runs once per photo and every model classifies the same detected faces). One row per
model. The figures are those of ``evaluate`` and ``evaluate-scenes`` with ``--splits``/``--split``.

    python benchmarks/split_figures.py ../shared/data/scenes-ilc ../shared/data/scenes --split test \\
        --classifier sixth=runs/sixth_run/int8.onnx --classifier seed7=runs/box_cut_copies_seed7/candidate_int8.onnx
"""

from __future__ import annotations

import numpy as np
from detected_face_margin import detected_faces, records_at
from scene_args import pipeline_config, scene_set_parser

from maskwatch.data.loading import load_samples
from maskwatch.data.splits import read_manifest
from maskwatch.labels import LABELS
from maskwatch.metrics import classification_report
from maskwatch.runtime.classifier import ModelFileError, OnnxMaskClassifier
from maskwatch.runtime.pipeline import MaskPipeline
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import pooled_ground_truth


def crop_cells(classifier: OnnxMaskClassifier, samples: list) -> dict[str, str]:
    """source -> 'accuracy / macro-F1 (mask_incorrect recall)' of the mirrored crops."""
    info = classifier.info
    loaded = load_samples(samples, size=info.input_size, margin=info.margin, whole_image=info.whole_image, hash_files=False)
    truth = np.array([LABELS.index(s.label) for s in loaded.samples])
    sources = np.array([s.source for s in loaded.samples])
    predicted = classifier.predict_proba(list(loaded.crops), mirrored=True).argmax(1)
    incorrect = LABELS.index("mask_incorrect")
    cells = {}
    for source in sorted(set(sources)):
        part = sources == source
        report = classification_report(truth[part], predicted[part], LABELS)
        real = truth[part] == incorrect
        recall = f" ({np.mean(predicted[part][real] == incorrect):.3f})" if real.any() else ""
        cells[source] = f"{report['accuracy']:.4f} / {report['macro_f1']:.3f}{recall}"
    return cells


def main() -> None:
    parser = scene_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--classifier", action="append", required=True, help="NAME=FILE (ONNX); repeat.")
    args = parser.parse_args()
    if args.model:
        parser.error("name each classifier: --classifier NAME=FILE (repeat it)")
    models = {}
    for spec in args.classifier:
        name, _, path = spec.partition("=")
        if not name or not path or name in models:
            parser.error(f"--classifier {spec}: give NAME=FILE, each NAME once")
        try:
            models[name] = OnnxMaskClassifier(path)
        except ModelFileError as error:
            parser.error(str(error))
    samples = [row.sample for row in read_manifest(args.splits) if row.split == args.split]
    rows = {name: crop_cells(classifier, samples) for name, classifier in models.items()}
    print(f"{args.split} crops: {len(samples)}", flush=True)

    args.model = next(iter(models.values())).path
    detecting = MaskPipeline(pipeline_config(args))
    for root in args.roots:
        truth = pooled_ground_truth([root], args.splits, args.split)
        found = detected_faces(truth, detecting)
        objects = {key: item[1] for key, item in truth.items()}
        for name, classifier in models.items():
            pipeline = MaskPipeline(pipeline_config(args), detector=detecting.detector, classifier=classifier)
            report = score_scenes(objects, records_at(truth, found, pipeline, 0.0, not args.one_pass))
            ap = report["class"]["mask_incorrect"]["ap"]
            rows[name][f"{root.name} photos ({len(truth)})"] = f"{report['map_3class']:.4f}, {ap:.3f}"
        print(f"{root.name}: {len(truth)} photos scored", flush=True)

    columns = sorted({column for cells in rows.values() for column in cells}, key=lambda c: ("photos" in c, c))
    print("\n| model | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")
    print("\ncrops: accuracy / macro-F1 (mask_incorrect recall), mirrored; photos: 3-class mAP, mask_incorrect AP")


if __name__ == "__main__":
    main()
