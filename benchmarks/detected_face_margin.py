"""How much margin should a face the detector found get before the classifier sees it? (`--extra-margin`)

Runs the detector once per photo (the photo default: 960 px, reshaped, mirrored and 640 px passes; or a one-pass
video setting), then classifies every detected face again at several extra margins on top of the model's, and scores
each with the same end-to-end scorer as `maskwatch evaluate-scenes` (IoU 0.5, VOC AP). The photos of both shared
scene sets' split are pooled into one set, so one figure decides. Choose on val; report test separately.

    python benchmarks/detected_face_margin.py ../shared/data/scenes ../shared/data/scenes-ilc --split val
    python benchmarks/detected_face_margin.py ../shared/data/scenes ../shared/data/scenes-ilc --split val --size 320 --one-pass
    python benchmarks/detected_face_margin.py ../shared/data/scenes ../shared/data/scenes-ilc --split val --unmirrored-classifier
"""

from __future__ import annotations

import numpy as np
from scene_args import pipeline_config, scene_set_parser

from maskwatch.crop import crop_face
from maskwatch.imaging import load_rgb
from maskwatch.runtime.pipeline import MaskPipeline
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import pooled_ground_truth

EXTRA_MARGINS = (0.0, 0.03, 0.05, 0.07, 0.10, 0.15)


def detected_faces(truth: dict, pipeline: MaskPipeline) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """key -> (boxes, face scores) of the faces the pipeline would classify."""
    found = {}
    for key, (path, _) in truth.items():
        faces = pipeline(load_rgb(path)).faces
        found[key] = (np.array([f.box for f in faces]).reshape(-1, 4), np.array([f.face_score for f in faces]))
    return found


def records_at(truth: dict, found: dict, pipeline: MaskPipeline, extra: float, mirrored: bool) -> dict[str, list[dict]]:
    """`detect --json` face records with every face classified again at the model's margin + ``extra``."""
    classifier, info = pipeline.classifier, pipeline.classifier.info
    records = {}
    for key, (path, _) in truth.items():
        boxes, scores = found[key]
        if not len(boxes):
            records[key] = []
            continue
        image = load_rgb(path)
        crops = [crop_face(image, box, margin=info.margin + extra, size=info.input_size) for box in boxes]
        probs = classifier.predict_proba(crops, mirrored=mirrored)
        records[key] = [
            {"box": box.tolist(), "label": classifier.labels[int(p.argmax())], "score": float(p.max()), "face_score": float(s)}
            for box, s, p in zip(boxes, scores, probs)
        ]
    return records


def main() -> None:
    parser = scene_set_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--unmirrored-classifier", action="store_true", help="Photo default's boxes, but one classifier pass per face."
    )
    args = parser.parse_args()
    refined = not args.one_pass
    config = pipeline_config(args)
    pipeline = MaskPipeline(config)
    truth = pooled_ground_truth(args.roots, args.splits, args.split)
    found = detected_faces(truth, pipeline)
    faces = sum(len(objects) for _, objects in truth.values())
    setting = "one pass" if args.one_pass else "photo default" + (", classifier one pass" if args.unmirrored_classifier else "")
    print(
        f"{args.split} photos: {len(truth)} ({faces} faces), detector {args.size} px, {setting}; model margin {pipeline.classifier.info.margin}"
    )
    print("| extra margin | 3-class mAP | AP with_mask | AP without_mask | AP mask_incorrect |\n|---|---|---|---|---|")
    for extra in EXTRA_MARGINS:
        report = score_scenes(
            {k: v[1] for k, v in truth.items()},
            records_at(truth, found, pipeline, extra, refined and not args.unmirrored_classifier),
        )
        ap = [report["class"][label]["ap"] for label in ("with_mask", "without_mask", "mask_incorrect")]
        print(f"| +{extra:.2f} | {report['map_3class']:.4f} | " + " | ".join(f"{a:.4f}" for a in ap) + " |", flush=True)


if __name__ == "__main__":
    main()
