"""Write the shipped model's card from a training run's report (so every number has one source).

python recipes/make_model_card.py runs/default [--focus runs/focus.json] [--onnx-test runs/default/onnx_test.json]
    > src/maskwatch/assets/MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(per_source: dict) -> str:
    lines = [
        "| test source | n | accuracy | macro-F1 | per-class recall | confusion matrix (rows = truth) |",
        "|---|---|---|---|---|---|",
    ]
    for source, r in per_source.items():
        recall = ", ".join(f"{k} {v['recall']:.3f}" for k, v in r["per_class"].items() if v["support"])
        lines.append(
            f"| {source} | {r['n']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {recall} | `{r['confusion_matrix']}` |"
        )
    return "\n".join(lines)


def incorrect_note(config: dict, run: Path) -> str:
    """How many real incorrectly worn masks the training split holds, counted from the manifest the run used: its own
    ``splits.csv`` when there is one (the labels it trained on; the committed manifest may have been corrected since)."""
    from collections import Counter

    from maskwatch.data.splits import read_manifest

    own = run / "splits.csv"
    manifest = own if own.is_file() else (config.get("splits") or "recipes/default_splits.csv.gz")
    counts = Counter(
        r.sample.source for r in read_manifest(Path(manifest)) if r.split == "train" and r.sample.label == "mask_incorrect"
    )
    real = {k: v for k, v in counts.items() if k not in ("maskedface-net",) and any(k in str(d) for d in config.get("data", []))}
    return (
        f"Real incorrectly worn masks in the training split: {', '.join(f'{v} from {k}' for k, v in sorted(real.items()))}\n"
        f"  (plus {counts.get('maskedface-net', 0)} synthetic MaskedFace-Net ones); `mask_incorrect` stays the class with the fewest real examples\n"
        "  and the widest error bars."
    )


def offsets_note(report: dict) -> str:
    """The prior correction, for a model that carries one (``prior_correction: true``); nothing otherwise."""
    offsets = report.get("logit_offsets") or []
    if not any(offsets):
        return ""
    return f", with per-class logit offsets {offsets} that undo the training's class weights"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--focus", type=Path)
    parser.add_argument("--int8", type=Path, help="JSON from recipes/ship_default.py with int8 test scores")
    parser.add_argument("--onnx-test", type=Path, help="onnx_test.json from recipes/ship_default.py (fp32 and int8 per source)")
    parser.add_argument(
        "--mirrored",
        type=Path,
        help="`maskwatch evaluate recipes/default_splits.csv.gz --split test --json` (mirrored, the default)",
    )
    parser.add_argument("--parity", default="", help="a sentence on int8 vs fp32 across CPU paths")
    parser.add_argument("--scenes", type=Path, nargs="*", default=[], help="evaluate-scenes JSON files (all images, test images)")
    parser.add_argument("--scenes-note", default="", help="a line under the end-to-end table (e.g. the one-pass figures)")
    parser.add_argument("--time-note", default="", help="a remark on how and where it ran")
    parser.add_argument("--command", default="maskwatch train --config recipes/default.yaml")
    parser.add_argument("--origin", default="", help="for a run started with --init: how that checkpoint was made")
    parser.add_argument("--limit", action="append", default=[], help="an extra line for the Limits section (repeatable)")
    args = parser.parse_args()
    report = json.loads((args.run / "report.json").read_text())
    config = json.loads((args.run / "config.json").read_text())
    uses_ilc = any("scenes-ilc" in str(d) for d in config.get("data", []))
    ilc = (
        " and the real photos of `scenes-ilc` (masks worn correctly, not at all, and under the nose or on the chin; "
        "**licence not stated** - a web-scraped academic set (ILC 2021): treat the model as for research use until that is settled)"
        if uses_ilc
        else ""
    )
    excluded = (
        f" Files listed in `{', '.join(config['exclude'])}` (clearly wrong labels, with reasons) were left out of training."
        if config.get("exclude")
        else ""
    )
    frozen = 19 - config["trainable_blocks"] if config["trainable_blocks"] < 19 else 0
    head = "the 3-way head" if config.get("init") else "a new 3-way head"
    if config["cache_views"] > 0:
        regime = (
            f"the first {frozen} blocks frozen; the last {config['trainable_blocks']} blocks and {head} trained on cached "
            f"trunk features of {config['cache_views']} augmented view{'s' if config['cache_views'] != 1 else ''} per training face"
        )
    else:
        regime = f"every block fine-tuned ({head}) with fresh augmentation every epoch"
    start = (
        f"Started from `{config['init']}`: {args.origin}"
        if config.get("init")
        else "MobileNetV2 with torchvision's ImageNet weights"
    )
    guidance = ""
    if config.get("focus_weight", 0) > 0:
        guidance = (
            f"\nFocus guidance (weight {config['focus_weight']}): each training face costs extra loss while its Grad-CAM has less than "
            f"{config['focus_goal']:.0%} of its mass on the nose-mouth-chin region or that region holds less than "
            f"{config['focus_min_evidence']} logit of evidence for the true class (`maskwatch/training/focus_guidance.py`)."
        )
    minutes = "" if report.get("train_seconds") is None else f" {report['train_seconds'] / 60:.0f} min of training by its report."
    how = (
        f"`{args.command}`{args.time_note}; best epoch {report['best_epoch']}.{minutes}\n"
        f"{start}.\nThen {regime} (random resized crop, flip, rotation, colour jitter,\n"
        f"low-resolution round trip); Adam (lr {config['lr']}, cosine schedule), cross-entropy with {config['class_weighting'].replace('_', '-')} class weights\n"
        f"and label smoothing {config['label_smoothing']}.{guidance} {report['parameters'] / 1e6:.2f} M parameters."
    )
    print(f"""# Model card: maskwatch MobileNetV2 mask classifier

**Files**: `maskwatch_mobilenet_v2_int8.onnx` (the runtime default, int8 QDQ) and
`maskwatch_mobilenet_v2.safetensors` (fp32 weights for fine-tuning, export and Grad-CAM).
**Labels**: {", ".join(report["test"]["all"]["labels"])}. **Input**: {config["input_size"]}x{config["input_size"]} RGB face crop,
square around the face box with a {config["margin"]} margin (see `maskwatch.crop`), ImageNet mean/std.
Probabilities are calibrated by a temperature fitted on the validation split
(T = {report["temperature"]:.3f}; validation ECE {report["val_ece_before"]:.4f} before, {report["val_ece_after"]:.4f} after){offsets_note(report)}.

## How it was made
{how}

## Data
`../shared/data` (see its README): chandrika face crops (MIT), MaskedFace-Net crops (**CC BY-NC-SA 4.0** - the
model is trained partly on non-commercial data; check that licence before commercial use), the faces of the
Kaggle face-mask scene photos (CC0){ilc}, cropped from their VOC boxes (boxes under {config["min_face"]} px skipped).
Whole-face files (class folders) are cut as `{config.get("whole_image", "stretch")}` (`maskwatch.crop.whole_image_crop`).
Leak-free splits: near-duplicate images (perceptual hash) and all faces of one photo share a split; the manifest is
`recipes/default_splits.csv.gz`. Split sizes: {report["split_sizes"]}.{excluded}

## Test split (fp32 checkpoint in PyTorch; numbers from the run's `report.json`)
{table(report["test"])}
""")
    if args.onnx_test and args.onnx_test.exists():
        scores = json.loads(args.onnx_test.read_text())
        for kind in ("int8", "fp32"):
            print(
                f"## Test split, {kind} ONNX model, one pass (`recipes/ship_default.py`; `maskwatch evaluate "
                f"recipes/default_splits.csv.gz --split test --no-flip{' --model FP32.onnx' if kind == 'fp32' else ''}`; "
                "every row of the committed split, excluded files included)\n"
            )
            print(table(scores[kind]))
            print()
        if args.parity:
            print(args.parity + "\n")
    if args.mirrored and args.mirrored.exists():
        from maskwatch.runtime.evaluate import by_source

        print(
            "## Test split, int8 ONNX model, mirrored (`maskwatch evaluate recipes/default_splits.csv.gz --split test`: "
            "each face's probabilities averaged with its mirror image's, as `detect` does on still images)\n"
        )
        print(table(by_source(json.loads(args.mirrored.read_text()))))
        print()
    if args.int8 and args.int8.exists():
        int8 = json.loads(args.int8.read_text())
        print("## Test split, shipped int8 model (`recipes/ship_default.py`, the runtime's ONNX classifier on the same crops)\n")
        print("| test source | n | accuracy | macro-F1 |\n|---|---|---|---|")
        for source, r in int8.items():
            print(f"| {source} | {r['n']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} |")
        print()
    if args.scenes:
        print(
            "## End to end on the shared scenes (CenterFace at 960 px, boxes placed by the landmarks, mirrored pass, 640 px pass, faces ranked from all passes; this classifier; IoU 0.5)\n"
        )
        print(
            "`maskwatch evaluate-scenes IMAGES ANNOTATIONS --json ...` (the same numbers come from `maskwatch detect FOLDER --json` scored with `--predictions`).\n"
        )
        print(
            "| images | face AP | face recall | 3-class mAP | compliance mAP | AP with / without / incorrect |\n|---|---|---|---|---|---|"
        )
        for path in args.scenes:
            r = json.loads(path.read_text())
            aps = " / ".join(f"{r['class'][k]['ap']:.3f}" for k in ("with_mask", "without_mask", "mask_incorrect"))
            print(
                f"| {r['images']} ({path.stem}) | {r['face_ap']:.4f} | {r['face_recall']:.4f} | {r['map_3class']:.4f} | {r['map_compliance']:.4f} | {aps} |"
            )
        if args.scenes_note:
            print(f"\n{args.scenes_note}")
        print("\nThe 75 test-split photos are the honest figure: the classifier trained on faces of the other photos.\n")
    if report.get("test_focus") and not (args.focus and args.focus.exists()):
        print("## Where it looks (Grad-CAM focus on the lower face, test split, fp32; the run's `report.json`)\n")
        print("Median share of the predicted class's Grad-CAM mass inside the nose-mouth-chin region.\n")
        print("| source | class | n | median focus | mean focus |\n|---|---|---|---|---|")
        for source, per_class in report["test_focus"].items():
            for label, row in per_class.items():
                print(f"| {source} | {label} | {row['n']} | {row['median_focus']:.3f} | {row['mean_focus']:.3f} |")
        print()
    if args.focus and args.focus.exists():
        focus = json.loads(args.focus.read_text())
        print("## Where it looks (Grad-CAM focus on the lower face, test split)\n")
        print(
            "Share of the Grad-CAM mass inside the nose-mouth-chin region "
            "(`maskwatch explain --report recipes/default_splits.csv.gz --split test --json ...`).\n"
        )
        print("| source | class | n | median focus | mean focus |\n|---|---|---|---|---|")
        for source, per_class in focus["per_source"].items():
            for label, row in per_class.items():
                print(f"| {source} | {label} | {row['n']} | {row['median_focus']:.3f} | {row['mean_focus']:.3f} |")
        print()
        if "occlusion" in focus:
            print(
                "A check that does not use Grad-CAM (same command): how often the prediction changes when a flat grey patch hides\n"
                "the lower face, or the same-sized band right above it (eyes, brows). Changed predictions become `with_mask`\n"
                "either way - a flat patch on a face reads as a mask wherever it sits - so `with_mask` faces cannot change, and for\n"
                "the other classes the check shows that the lower face matters far more, not that nothing else does.\n"
            )
            print("| class | n | changed, lower face hidden | changed, band above hidden |\n|---|---|---|---|")
            for label, row in focus["occlusion"].items():
                print(f"| {label} | {row['n']} | {row['changed_lower_hidden']:.1%} | {row['changed_upper_hidden']:.1%} |")
            print()
    print(
        """## Limits
- Trained on frontal and near-frontal faces; strong profile views, heavy occlusion (hands, scarves) and faces under
  about 16 px are classified less reliably. {incorrect_note}
- Test sets are small (scenes `mask_incorrect`: about a dozen faces), so per-class figures there move by several points
  between seeds.
- Known shortcut seen in Grad-CAM and errors: studio portraits on white backgrounds lean towards `with_mask` (the chandrika
  source has many such stock photos of masked people).
- Grad-CAM of the last block is a 5x5 grid at 160 px, so a map can only say "lower middle of the crop", not "left
  mouth corner". The focus score was trained for (focus guidance), so read it with the occlusion check of `maskwatch explain --report`.
  The lowest-scoring faces (gallery from `maskwatch explain --report`) are dataset "crops" that are really whole photos
  with several faces, where the scored region is one small face and the map covers another person or a mask drawing.
- `recipes/exclusions.txt` lists files whose labels are clearly wrong, with the reason: one chandrika test image (a
  beauty face-sheet with open nose and mouth, labelled with_mask), found while reading test errors, which the ONNX
  tables above still count; and scenes-ilc photos found by screening the train and val splits only.
- Not a face-recognition model; it stores nothing about identities.""".replace(
            "{incorrect_note}", incorrect_note(config, args.run)
        )
    )
    for line in args.limit:
        print(f"- {line}")
    print()


if __name__ == "__main__":
    main()
