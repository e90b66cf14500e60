"""Where `maskwatch detect one.jpg`'s start-up goes: CLI import, runtime imports, pipeline (sessions), first image.

Each round starts a fresh Python per source tree (this checkout, and ``--baseline-src`` e.g. ``git archive main``
unpacked) and times the stages inside it; trees are interleaved round by round and medians reported.

    python benchmarks/startup_profile.py IMAGE --rounds 5 --baseline-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import maskwatch.cli  # noqa: F401  (Typer app and what it imports at start)
from typer.main import get_command
app = maskwatch.cli.app
app._light = True  # what `maskwatch detect ...` sets (LazyTyper); the baseline's plain Typer ignores it
get_command(app)  # Typer builds every registered command's options at start
t1 = time.perf_counter()
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig
from maskwatch.runtime.stream import OutputOptions, run
t2 = time.perf_counter()
pipeline = MaskPipeline(PipelineConfig(detector_size=960))
t3 = time.perf_counter()
run(sys.argv[1], pipeline, OutputOptions(json_path=Path(sys.argv[3])))
t4 = time.perf_counter()
print(json.dumps({"CLI import": t1 - t0, "runtime imports": t2 - t1, "sessions": t3 - t2, "first image": t4 - t3}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", help="another maskwatch src/ folder (before)")
    args = parser.parse_args()
    trees = {"now": dict(os.environ)}
    if args.baseline_src:
        trees["before"] = {**os.environ, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
    out = Path("/tmp") / f"mw-startup-{os.getpid()}.jsonl"
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for _ in range(args.rounds + 1):  # the first round warms file caches (and builds the graph cache) and is dropped
        for name, env in trees.items():
            done = subprocess.run(
                [sys.executable, "-c", CHILD, args.image, "-", str(out)], capture_output=True, text=True, env=env
            )
            if done.returncode != 0:
                sys.exit(done.stderr[-2000:])
            for stage, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                samples[name].setdefault(stage, []).append(seconds)
    print(f"load average: {os.getloadavg()}; median s over {args.rounds} rounds")
    print(f"{'stage':18s} " + " ".join(f"{name:>8s}" for name in trees))
    for stage in samples["now"]:
        print(f"{stage:18s} " + " ".join(f"{statistics.median(samples[n][stage][1:]):8.2f}" for n in trees))
    totals = {n: statistics.median(sum(v[k] for v in samples[n].values()) for k in range(1, args.rounds + 1)) for n in trees}
    print(f"{'total':18s} " + " ".join(f"{totals[n]:8.2f}" for n in trees))
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
