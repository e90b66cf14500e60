"""Command-line arguments shared by the benchmarks that pool the photos of several scene sets' split."""

from __future__ import annotations

import argparse
from pathlib import Path


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
