"""Finish a run that was cut off before its report (e.g. a GPU run stopped by a time limit).

Fits the temperature on the val split, scores the test split per source, draws the pictures and writes report.json,
exactly as the end of `maskwatch train` does, from the run's best.safetensors, splits.csv and history.json.

    python recipes/finish_run.py runs/gpu160
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from maskwatch.data.transforms import eval_transform
from maskwatch.fileio import write_json
from maskwatch.training.checkpoint import load_checkpoint
from maskwatch.training.config import TrainConfig
from maskwatch.training.models import count_parameters
from maskwatch.training.train import _reuse_splits, finish, selection_score, split_positions, to_batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    model, meta = load_checkpoint(args.run / "best.safetensors")
    config = replace(
        TrainConfig(),
        splits=str(args.run / "splits.csv"),
        out=str(args.run),
        input_size=meta["input_size"],
        margin=meta["margin"],
        whole_image=meta.get("whole_image", "stretch"),
    )
    loaded, splits, _ = _reuse_splits(config)
    y, idx = split_positions(loaded, splits)
    inputs = to_batch(loaded.crops, eval_transform())
    report = finish(model, meta, inputs, y, idx, loaded, False, args.run)
    history = json.loads((args.run / "history.json").read_text())
    floor = json.loads((args.run / "config.json").read_text()).get("incorrect_recall_floor", 0.0)
    best = max(history, key=lambda row: selection_score(row, floor))  # the rule that kept best.safetensors
    report.update(
        best_epoch=best["epoch"],
        train_seconds=None,
        parameters=count_parameters(model),
        split_sizes={k: int(len(v)) for k, v in idx.items()},
        problems=0,
    )
    write_json(args.run / "report.json", report)


if __name__ == "__main__":
    main()
