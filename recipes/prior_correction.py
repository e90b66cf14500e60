"""Give a checkpoint trained before the prior correction existed its logit offsets, and fit its temperature again.

    python recipes/prior_correction.py runs/sixth_run/best.safetensors --config recipes/box_cut_copies.yaml \\
        --out runs/prior_correction
    python recipes/ship_default.py runs/prior_correction --splits recipes/default_splits.csv.gz --candidate

Training records ``logit_offsets`` itself when asked (``prior_correction: true`` in the config, off by default; see
``maskwatch.metrics.prior_offsets``). This script does the same for an older run: it recomputes the class weights that
``--config`` trained with from its split manifest (exclusions left out, box-exact copies of train scene faces counted as
training adds them), writes the checkpoint with those offsets and a temperature fitted with them on the val faces to
OUT/best.safetensors, and prints the val figures (fp32, one pass) with and without the correction. The weights are
unchanged; the test split is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from maskwatch.data.splits import read_manifest
from maskwatch.fileio import write_json
from maskwatch.labels import LABELS
from maskwatch.metrics import expected_calibration_error, fit_temperature, prior_offsets, softmax
from maskwatch.training.checkpoint import load_checkpoint, save_checkpoint
from maskwatch.training.config import TrainConfig, load_config
from maskwatch.training.soup import score_logits, split_faces
from maskwatch.training.train import class_weights, predict_logits, read_exclusions


def train_labels(config: TrainConfig) -> np.ndarray:
    """Class indices of the train faces as ``maskwatch train`` builds them from ``config.splits``."""
    excluded = set().union(*read_exclusions(config.exclude).values()) if config.exclude else set()
    samples = [
        row.sample
        for row in read_manifest(Path(config.splits))
        if row.split == "train" and Path(row.sample.path).resolve() not in excluded
    ]
    copies = [s for s in samples if s.box is not None] if config.box_cut_copies else []
    print(f"train faces: {len(samples)}, box-exact copies: {len(copies)}")
    return np.array([LABELS.index(s.label) for s in samples + copies])


def log_likelihood(logits: np.ndarray, truth: np.ndarray, temperature: float, offsets) -> float:
    p = softmax(logits, temperature, offsets)
    return float(np.mean(np.log(np.clip(p[np.arange(len(truth)), truth], 1e-12, None))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the run's best.safetensors")
    parser.add_argument("--config", type=Path, required=True, help="the recipe the checkpoint was trained with")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = load_config(args.config)
    if config.splits is None:
        raise SystemExit(f"{args.config}: no splits manifest; the train faces cannot be rebuilt")

    labels = train_labels(config)
    counts = np.bincount(labels, minlength=len(LABELS))
    weights = class_weights(labels, len(LABELS), config.class_weighting).numpy()
    offsets = prior_offsets(weights)
    print(
        f"train class counts {dict(zip(LABELS, counts.tolist()))}, {config.class_weighting} weights "
        f"{np.round(weights, 4).tolist()} -> logit offsets {offsets}"
    )

    model, meta = load_checkpoint(args.checkpoint)
    faces = split_faces(Path(config.splits), config.exclude, meta)
    with torch.no_grad():
        logits = predict_logits(model, faces.inputs, on_features=False)
    before = float(meta.get("temperature", 1.0))
    after = fit_temperature(logits, faces.truth, offsets)
    rows = {}
    for name, temperature, shift in (("plain", before, None), ("corrected", after, offsets)):
        adjusted = np.log(softmax(logits, temperature, shift))  # argmax and figures as the runtime will see them
        rows[name] = {
            "temperature": temperature,
            "val_nll": -log_likelihood(logits, faces.truth, temperature, shift),
            "val_ece": expected_calibration_error(softmax(logits, temperature, shift), faces.truth),
            **score_logits(adjusted, faces),
        }
        print(f"val {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)

    meta = {
        **meta,
        "temperature": after,
        "logit_offsets": offsets,
        "prior_correction": {"from": str(args.checkpoint), "train_class_counts": counts.tolist()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, meta, args.out / "best.safetensors")
    write_json(args.out / "prior_correction_val.json", {"offsets": offsets, "rows": rows}, indent=1)
    print(f"-> {args.out / 'best.safetensors'} (temperature {before:.3f} -> {after:.3f})")


if __name__ == "__main__":
    main()
