"""Command-line arguments shared by the benchmarks that pool the photos of several scene sets' split."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskwatch.runtime.pipeline import MULTI_SCALE_SIZE, PipelineConfig


def scene_set_parser(description: str) -> argparse.ArgumentParser:
    """Scene folders, split manifest and split, detector size, one-pass (video) setting and classifier."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("roots", type=Path, nargs="+", help="Scene folders (images/ + annotations/).")
    parser.add_argument("--splits", type=Path, default=Path("recipes/default_splits.csv.gz"))
    parser.add_argument("--split", default="val", choices=("train", "val", "test", "all"))
    parser.add_argument("--size", type=int, default=960, help="Detector input size.")
    parser.add_argument("--one-pass", action="store_true", help="No reshaping, mirrored or extra passes (as on video).")
    parser.add_argument("--model", help="ONNX classifier (default: the shipped one).")
    return parser


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The photo default at ``--size`` (reshaped boxes, mirrored pass, a 640 px pass when larger) or, with
    ``--one-pass``, one pass as on video; ``--model``'s classifier."""
    refined = not args.one_pass
    return PipelineConfig(
        model=args.model,
        detector_size=args.size,
        box_shape=refined,
        flip=refined,
        extra_detector_sizes=(MULTI_SCALE_SIZE,) if refined and args.size > MULTI_SCALE_SIZE else (),
    )
