"""Which detected faces are too small to keep? (`--min-face-size`)

Tiny detections are mostly not faces anyone annotated (on scenes-ilc val, unmatched detections have a median shorter
side of 14 px against 42 px for matched ones), and each one ranks some true faces down in every class's AP. This runs
the pipeline once per photo with no size floor, then scores the same face records with floors of several sizes (the
shorter side of the box, in image pixels) with the scorer of `maskwatch evaluate-scenes` (IoU 0.5, VOC AP). The
photos of both shared scene sets' split are pooled, so one figure decides. Choose on val; report test separately.

    python benchmarks/min_face_size.py ../shared/data/scenes ../shared/data/scenes-ilc --split val
    python benchmarks/min_face_size.py ../shared/data/scenes ../shared/data/scenes-ilc --split val --size 320 --one-pass
"""

from __future__ import annotations

import numpy as np
from scene_args import scene_set_parser

from maskwatch.imaging import load_rgb
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig, extra_sizes_for, still_image_defaults
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import pooled_ground_truth

FLOORS = (0, 4, 6, 8, 10, 12, 14, 16, 20)


def shorter_side(box: list[float]) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def main() -> None:
    parser = scene_set_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    still = not args.one_pass  # what `detect` does for a photo at this size, or for video
    box_shape, flip = still_image_defaults(still, args.size, None, None)
    extra_sizes = extra_sizes_for(still, args.size, None)
    pipeline = MaskPipeline(
        PipelineConfig(
            model=args.model,
            detector_size=args.size,
            min_face_size=0.0,
            box_shape=box_shape,
            flip=flip,
            extra_detector_sizes=extra_sizes,
        )
    )
    truth = pooled_ground_truth(args.roots, args.splits, args.split)
    records = {key: [face.to_json() for face in pipeline(load_rgb(path)).faces] for key, (path, _) in truth.items()}
    objects = {key: item[1] for key, item in truth.items()}
    annotated = np.array([shorter_side(list(box)) for faces in objects.values() for _, box in faces])
    setting = "one pass" if args.one_pass else "as detect does photos"
    print(f"{args.split} photos: {len(truth)} ({len(annotated)} faces), detector {args.size} px, {setting}")
    print(
        "annotated faces, shorter side: "
        + ", ".join(f"{q}% {np.percentile(annotated, q):.0f} px" for q in (1, 5, 10, 50))
        + f"; below 10 px: {int((annotated < 10).sum())}"
    )
    print(
        "| floor (px) | detections | face AP | face recall | 3-class mAP | AP with_mask | AP without_mask | AP mask_incorrect |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for floor in FLOORS:
        kept = {key: [r for r in faces if shorter_side(r["box"]) >= floor] for key, faces in records.items()}
        report = score_scenes(objects, kept)
        ap = [report["class"][label]["ap"] for label in ("with_mask", "without_mask", "mask_incorrect")]
        print(
            f"| {floor} | {sum(map(len, kept.values()))} | {report['face_ap']:.4f} | {report['face_recall']:.4f} | "
            f"{report['map_3class']:.4f} | " + " | ".join(f"{a:.4f}" for a in ap) + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
