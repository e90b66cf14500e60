"""The atheris harness starts, reads its generated corpus and runs a few hundred inputs without a crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).with_name("fuzz")


@pytest.mark.slow
def test_fuzz_harness_runs_its_corpus(tmp_path: Path):
    pytest.importorskip("atheris", reason="atheris is not installed (Linux wheels only); see tests/fuzz/README.md")
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(FUZZ / "make_corpus.py"), str(corpus)], check=True, timeout=60)
    done = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_parsers.py"), str(corpus), "-runs=200", "-seed=1", f"-artifact_prefix={tmp_path}/"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 200 runs" in done.stderr
