"""Which square crop should a whole-face file (a class-folder image, a crop cut at an annotated box) become?

A linear probe on frozen ImageNet MobileNetV2 features (no fine-tuning, so no geometry is favoured by earlier training):
logistic regression is fitted on chandrika + MaskedFace-Net train files turned into crops by each geometry, then scored
on validation faces of the scene photos (scenes + scenes-ilc), given two ways:
  runtime  - cut from the photo by the runtime's crop (box + margin, squared): what `detect` classifies;
  box-cut  - cut exactly at the annotated box (as the maintainers' private crop sets are) and then turned into a crop by
             the same geometry: what `maskwatch evaluate DIR` classifies;
and on chandrika val files through the same geometry.

    python benchmarks/crop_geometry.py recipes/default_splits.csv.gz --json docs/study/crop_geometry.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from maskwatch.crop import DEFAULT_MARGIN, crop_face, crop_whole_image, resize_square
from maskwatch.data.splits import read_manifest
from maskwatch.data.transforms import eval_transform
from maskwatch.imaging import load_rgb
from maskwatch.labels import LABELS
from maskwatch.training.models import build_model

SIZE = 160


def centre_square(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize_square(image[top : top + side, left : left + side], size)


GEOMETRIES = {
    "stretch": lambda image: resize_square(image, SIZE),
    "crop (box + 15 % margin, replicated border)": lambda image: crop_whole_image(image, margin=DEFAULT_MARGIN, size=SIZE),
    "pad (box squared, no margin)": lambda image: crop_whole_image(image, margin=0.0, size=SIZE),
    "centre square": lambda image: centre_square(image, SIZE),
}


def box_cut(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return image[max(0, y1) : max(y2, y1 + 1), max(0, x1) : max(x2, x1 + 1)]


@torch.no_grad()
def features(model, crops: list[np.ndarray]) -> np.ndarray:
    transform = eval_transform()
    out = []
    for start in range(0, len(crops), 64):
        batch = torch.stack([transform(c) for c in crops[start : start + 64]])
        out.append(model.top(model.trunk(batch)).mean(dim=(2, 3)).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--train-files", type=int, default=1600, help="class-folder train files to fit on (random subset)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = read_manifest(args.manifest)
    rng = np.random.default_rng(0)
    train = [r for r in rows if r.split == "train" and r.sample.box is None]
    train = [train[i] for i in sorted(rng.choice(len(train), min(args.train_files, len(train)), replace=False))]
    chandrika_val = [r for r in rows if r.split == "val" and r.sample.source == "chandrika"]
    scene_val = [r for r in rows if r.split == "val" and r.sample.box is not None]

    model = build_model("mobilenet_v2", len(LABELS), pretrained=True, trainable_blocks=0).eval()
    label = {name: i for i, name in enumerate(LABELS)}
    images = {}

    def image_of(path: Path) -> np.ndarray:
        if path not in images:
            images[path] = load_rgb(path)
        return images[path]

    y_train = np.array([label[r.sample.label] for r in train])
    y_scene = np.array([label[r.sample.label] for r in scene_val])
    y_chandrika = np.array([label[r.sample.label] for r in chandrika_val])
    runtime = features(model, [crop_face(image_of(r.sample.path), r.sample.box, size=SIZE) for r in scene_val])
    cuts = [box_cut(image_of(r.sample.path), r.sample.box) for r in scene_val]
    results = {}
    for name, geometry in GEOMETRIES.items():
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000, class_weight="balanced"))
        probe.fit(features(model, [geometry(load_rgb(r.sample.path)) for r in train]), y_train)
        scored = {
            "scene val, runtime crops": (runtime, y_scene),
            "scene val, box-cut files": (features(model, [geometry(c) for c in cuts]), y_scene),
            "chandrika val": (features(model, [geometry(load_rgb(r.sample.path)) for r in chandrika_val]), y_chandrika),
        }
        results[name] = {}
        for what, (x, y) in scored.items():
            predicted = probe.predict(x)
            results[name][what] = {
                "n": int(len(y)),
                "accuracy": float(accuracy_score(y, predicted)),
                "macro_f1": float(f1_score(y, predicted, average="macro")),
            }
        print(name, json.dumps(results[name]), flush=True)
    print(f"\n| training geometry | {' | '.join(next(iter(results.values())))} |")
    print("|---|" + "---|" * len(next(iter(results.values()))))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{v['accuracy']:.4f} / {v['macro_f1']:.4f}" for v in row.values()) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
