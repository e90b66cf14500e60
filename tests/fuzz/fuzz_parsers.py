"""Coverage-guided fuzzing (atheris / libFuzzer) of the parsers that read untrusted input.

    pip install atheris                      # Linux wheels; see tests/fuzz/README.md
    python tests/fuzz/make_corpus.py tests/fuzz/corpus
    python tests/fuzz/fuzz_parsers.py tests/fuzz/corpus -max_total_time=60

The first byte of each input picks the target; every target may raise only its documented error. Anything else
is a crash that libFuzzer saves as ``crash-<hash>`` (replay: ``python tests/fuzz/fuzz_parsers.py crash-<hash>``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["maskwatch"]):  # coverage of our code only: instrumenting numpy/PIL is slow
    from maskwatch.data.index import parse_voc
    from maskwatch.imaging import ImageLoadError, load_rgb
    from maskwatch.runtime.scenes import read_predictions
    from maskwatch.sources import STREAM_PREFIXES, iter_frames
    from maskwatch.training.config import ConfigError, load_config

SCRATCH = Path(tempfile.mkdtemp(prefix="maskwatch-fuzz-"))
(SCRATCH / "src").mkdir()
(SCRATCH / "src" / "b.txt").write_text("x")


def _file(data: bytes, suffix: str) -> Path:
    path = SCRATCH / f"input{suffix}"
    path.write_bytes(data)
    return path


def fuzz_image(data: bytes) -> None:
    try:
        image = load_rgb(_file(data, ".png"))
    except ImageLoadError:
        return
    assert image.ndim == 3 and image.shape[2] == 3


def fuzz_voc(data: bytes) -> None:
    try:
        parse_voc(_file(data, ".xml"), [])
    except ValueError:
        return


def fuzz_predictions(data: bytes) -> None:
    read_predictions(_file(data, ".jsonl"), {"a": (Path("a.jpg"), [])})  # must never raise


def fuzz_config(data: bytes) -> None:
    try:
        load_config(_file(data, ".yaml"))  # what `train --config` calls
    except ConfigError:
        return


def fuzz_source(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    unsafe = text.strip().isdigit() or text.lower().startswith(STREAM_PREFIXES) or text.startswith(("/", "~"))
    if unsafe or ".." in text or "\x00" in text:
        return  # webcams, network and paths outside the scratch folder are not fuzzed
    before = os.getcwd()
    os.chdir(SCRATCH / "src")
    try:
        frames = list(iter_frames(text))
    finally:
        os.chdir(before)
    assert frames and all((f.image is None) != (f.error is None) for f in frames)


TARGETS = [fuzz_image, fuzz_voc, fuzz_predictions, fuzz_config, fuzz_source]


def one_input(data: bytes) -> None:
    if not data:
        return
    TARGETS[data[0] % len(TARGETS)](data[1:])


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)  # parsers log one line per bad input; the fuzzer's speed is the point here
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
