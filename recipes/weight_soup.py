"""Average the kept checkpoints of several runs of one recipe (a uniform model soup) and score it and them on val.

    python recipes/weight_soup.py runs/box_cut_copies runs/box_cut_copies_seed7 runs/box_cut_copies_seed8 \
        --out runs/box_cut_soup
    python recipes/ship_default.py runs/box_cut_soup --splits recipes/default_splits.csv.gz --candidate

Each RUN gives RUN/best.safetensors (or pass the .safetensors file itself). The members must share their input (model,
labels, size, margin, geometry, normalisation); ``maskwatch.training.soup`` says why averaging fine-tunes of one start
is sound. The BatchNorm statistics of the soup's trainable blocks are the members' average (``--batchnorm measured``
measures them again on clean train crops instead, which did worse on val the one time both were measured: see
``maskwatch.training.soup``), and its temperature is refitted on the val faces, as training does for a kept epoch. Writes OUT/best.safetensors and
OUT/soup_val.json (one pass, fp32: every member's val figures and the soup's). The test split is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from maskwatch.fileio import write_json
from maskwatch.metrics import fit_temperature
from maskwatch.training.checkpoint import load_checkpoint, save_checkpoint
from maskwatch.training.soup import average_checkpoints, recompute_batchnorm, score_logits, split_faces
from maskwatch.training.train import predict_logits


def checkpoint_of(run: Path) -> Path:
    return run if run.suffix == ".safetensors" else run / "best.safetensors"


def val_logits(model: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return predict_logits(model, inputs, on_features=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path, nargs="+", help="run folders (or checkpoints) of one recipe")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--splits", type=Path, default=Path("recipes/default_splits.csv.gz"))
    parser.add_argument("--exclude", default="recipes/exclusions.txt")
    parser.add_argument(
        "--batchnorm",
        choices=("measured", "averaged"),
        default="averaged",
        help="statistics of the trainable blocks: the members' averaged, or measured again on clean train crops",
    )
    args = parser.parse_args()

    paths = [checkpoint_of(run) for run in args.runs]
    soup, meta = average_checkpoints(paths)
    faces = split_faces(args.splits, args.exclude, meta)
    print(f"val faces: {len(faces.truth)} ({dict(zip(*np.unique(faces.sources, return_counts=True)))})")
    rows = []

    def report(name: str, model: torch.nn.Module) -> None:
        rows.append({"member": name, **score_logits(val_logits(model, faces.inputs), faces)})
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()), flush=True)

    for path in paths:
        report(str(path), load_checkpoint(path)[0])
    if args.batchnorm == "measured":
        report("soup, members' BatchNorm statistics averaged (for the record)", soup)
        train = split_faces(args.splits, args.exclude, meta, split="train")
        recompute_batchnorm(soup, train.inputs)
        print(f"BatchNorm statistics of the {len(soup.top)} trainable blocks measured on {len(train.truth)} train faces")
        del train
    meta["soup"]["batchnorm"] = args.batchnorm
    report("soup", soup)
    meta["temperature"] = fit_temperature(val_logits(soup, faces.inputs), faces.truth, meta.get("logit_offsets"))
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(soup, meta, args.out / "best.safetensors")
    write_json(args.out / "soup_val.json", {"members": [str(p) for p in paths], "rows": rows}, indent=1)
    print(f"soup of {len(paths)} (temperature {meta['temperature']:.3f}) -> {args.out / 'best.safetensors'}")


if __name__ == "__main__":
    main()
