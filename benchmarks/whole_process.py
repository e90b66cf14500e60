"""Whole-process timing of `maskwatch detect` against the AIZOO face-mask SSD, interleaved round by round.

Each round runs every command once, in turn, as a fresh process (start-up, decode, inference and JSON writing all
included): maskwatch at --detector-size 320 and at the image default on the same folder of scene photos, the AIZOO
runner (../shared/peers/aizoo, in its own Python with opencv-python-headless<5) on that folder, both on one image,
and maskwatch on a 640x480 video with at most 5 faces. Medians over rounds are reported, with ratios taken inside
each round, so a busy machine slows every command alike. ``--baseline-src`` adds the same maskwatch commands run
from another source tree (e.g. ``git archive main``), for before/after in one run. ``--score`` also scores
maskwatch's and AIZOO's JSON on all of ../shared/data/scenes with ``maskwatch evaluate-scenes --predictions``.

    python -m venv .venv-peers && .venv-peers/bin/pip install "opencv-python-headless<5" "numpy<2.3"
    python benchmarks/whole_process.py --rounds 5 --score
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
SCENES = SHARED / "data" / "scenes"
AIZOO = SHARED / "peers" / "aizoo" / "run_aizoo.py"


def crowd_folder(work: Path, count: int, *, crowded: bool = False) -> Path:
    """``count`` scene photos linked into one folder (the same files for every command): evenly spaced over the
    sorted scene folder, or with ``crowded`` the photos with the most annotated faces."""
    from maskwatch.runtime.scenes import load_ground_truth

    truth, _ = load_ground_truth(SCENES / "images", SCENES / "annotations")
    if crowded:
        picked = sorted(truth.values(), key=lambda item: (-len(item[1]), str(item[0])))[:count]
    else:
        ordered = sorted(truth.values(), key=lambda item: str(item[0]))
        picked = [ordered[int(k * len(ordered) / count)] for k in range(min(count, len(ordered)))]
    print(f"{len(picked)} photos, {sum(len(o) for _, o in picked) / len(picked):.1f} annotated faces each on average")
    folder = work / "photos"
    folder.mkdir()
    for path, _ in picked:
        (folder / Path(path).name).symlink_to(Path(path).resolve())
    return folder


def video_clip(work: Path, frames: int, max_faces: int = 5) -> Path:
    """A 640x480 clip panning across a scene photo with 3-``max_faces`` faces (mp4v, as cameras and phones write)."""
    from maskwatch.runtime.scenes import load_ground_truth

    truth, _ = load_ground_truth(SCENES / "images", SCENES / "annotations")
    picks = sorted(
        str(p) for p, objs in truth.values() if 3 <= len(objs) <= max_faces and min(b[2] - b[0] for _, b in objs) >= 16
    )
    scene = cv2.resize(cv2.imread(picks[0]), (720, 540))
    path = work / "clip_640x480.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    for k in range(frames):
        x = int(40 + 40 * np.sin(k / 15)) if frames > 1 else 0
        y = int(30 + 30 * np.cos(k / 20)) if frames > 1 else 0
        writer.write(scene[y : y + 480, x : x + 640])
    writer.release()
    return path


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one process; a failure stops the benchmark with its output."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return seconds


def commands(args: argparse.Namespace, work: Path, folder: Path, one: Path, clip: Path) -> dict[str, tuple[list[str], dict]]:
    """Name -> (argv, environment) of every timed run."""
    env = dict(os.environ)
    maskwatch = [sys.executable, "-m", "maskwatch.cli", "detect"]
    peer = [args.peer_python, str(AIZOO)]
    runs: dict[str, tuple[list[str], dict]] = {}
    trees = {"": env}
    if args.baseline_src:
        trees[" (before)"] = {**env, "PYTHONPATH": str(Path(args.baseline_src).resolve())}
    for tag, tree_env in trees.items():
        runs[f"maskwatch 320, folder{tag}"] = (
            [*maskwatch, str(folder), "--detector-size", "320", "--json", str(work / f"mw320{tag}.jsonl")],
            tree_env,
        )
        if not tag:  # the baseline skips the slowest command, to keep rounds short on a busy machine
            runs[f"maskwatch default, folder{tag}"] = (
                [*maskwatch, str(folder), "--json", str(work / f"mw960{tag}.jsonl")],
                tree_env,
            )
        runs[f"maskwatch one image 320{tag}"] = (
            [*maskwatch, str(one), "--detector-size", "320", "--json", str(work / f"one320{tag}.jsonl")],
            tree_env,
        )
        runs[f"maskwatch one image{tag}"] = ([*maskwatch, str(one), "--json", str(work / f"one{tag}.jsonl")], tree_env)
        runs[f"maskwatch video{tag}"] = ([*maskwatch, str(clip), "--json", str(work / f"video{tag}.jsonl")], tree_env)
    runs["AIZOO, folder"] = ([*peer, str(folder), "--json", str(work / "aizoo.jsonl")], env)
    runs["AIZOO one image"] = ([*peer, str(one), "--json", str(work / "aizoo_one.jsonl")], env)
    return runs


def report(samples: dict[str, list[float]], images: int, frames: int, tags: list[str]) -> None:
    """Medians, per-image steady-state costs (folder minus one-image run) and ratios taken within each round."""
    med = {name: statistics.median(v) for name, v in samples.items()}
    print(f"\n{'command':40s} {'median s':>9s}  (all rounds)")
    for name, values in samples.items():
        print(f"{name:40s} {med[name]:9.2f}  ({', '.join(f'{v:.2f}' for v in values)})")

    def per_image(folder: str, one: str) -> list[float]:
        return [(f - o) / (images - 1) * 1e3 for f, o in zip(samples[folder], samples[one])]

    peer = per_image("AIZOO, folder", "AIZOO one image")
    print(f"\nper image, steady state = (folder run - one-image run) / {images - 1}, ms (median; ratio to AIZOO per round)")
    print(
        f"{'AIZOO SSD 260x260':40s} {statistics.median(peer):7.1f}  whole-process {med['AIZOO, folder'] / images * 1e3:6.1f} ms/image"
    )
    for tag in tags:
        for size in ("320", "default"):
            if f"maskwatch {size}, folder{tag}" not in samples:
                continue
            one = f"maskwatch one image{' 320' if size == '320' else ''}{tag}"
            cost = per_image(f"maskwatch {size}, folder{tag}", one)
            ratio = statistics.median(c / p for c, p in zip(cost, peer))
            whole = med[f"maskwatch {size}, folder{tag}"] / images * 1e3
            print(
                f"{'maskwatch ' + size + tag:40s} {statistics.median(cost):7.1f}  whole-process {whole:6.1f} ms/image  {ratio:.2f}x AIZOO"
            )
    print("\nstart-up (one image, whole process), s")
    for tag in ["", *tags[1:]] if tags else [""]:
        print(
            f"{'maskwatch' + tag:40s} {med[f'maskwatch one image{tag}']:7.2f}  (at 320: {med[f'maskwatch one image 320{tag}']:.2f})"
        )
    print(f"{'AIZOO':40s} {med['AIZOO one image']:7.2f}")
    print(f"\nvideo 640x480, {frames} frames, <=5 faces")
    for tag in tags:
        video, one = samples[f"maskwatch video{tag}"], samples[f"maskwatch one image 320{tag}"]
        whole = statistics.median(frames / v for v in video)
        steady = statistics.median(frames / max(v - o, 1e-6) for v, o in zip(video, one))
        print(f"{'maskwatch' + tag:40s} whole-process {whole:6.1f} FPS, after start-up {steady:6.1f} FPS")


def score(work: Path, peer_python: str) -> None:
    """Face AP etc. of maskwatch's detect JSON (320 and default) and AIZOO's, all 428 scene photos."""
    predictions = {}
    for name, extra in (("maskwatch 320", ["--detector-size", "320"]), ("maskwatch default", [])):
        out = work / f"all_{name.split()[-1]}.jsonl"
        subprocess.run(
            [sys.executable, "-m", "maskwatch.cli", "detect", str(SCENES / "images"), "--json", str(out), *extra],
            check=True,
            capture_output=True,
        )
        predictions[name] = out
    aizoo = work / "all_aizoo.jsonl"
    subprocess.run([peer_python, str(AIZOO), str(SCENES / "images"), "--json", str(aizoo)], check=True, capture_output=True)
    predictions["AIZOO"] = aizoo
    for name, path in predictions.items():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "maskwatch.cli",
                "evaluate-scenes",
                str(SCENES / "images"),
                str(SCENES / "annotations"),
                "--predictions",
                str(path),
                "--out",
                str(work / "eval"),
            ],
            capture_output=True,
            text=True,
        )
        print(f"scenes, {name}: {(done.stdout.strip().splitlines() or [done.stderr[-300:]])[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=".venv-peers/bin/python")
    parser.add_argument("--images", type=int, default=100, help="scene photos in the folder")
    parser.add_argument("--crowded", action="store_true", help="take the photos with the most faces, not a spread")
    parser.add_argument("--video-frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", help="another maskwatch src/ folder to time the same commands from")
    parser.add_argument("--score", action="store_true", help="also score the JSON of both on all scene photos")
    parser.add_argument("--score-only", action="store_true", help="only the scores, no timing")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mw-whole-"))
    if args.score_only:
        score(work, args.peer_python)
        return
    folder = crowd_folder(work, args.images, crowded=args.crowded)
    one = sorted(folder.iterdir())[0]
    clip = video_clip(work, args.video_frames)
    runs = commands(args, work, folder, one, clip)
    for argv, env in runs.values():  # warm-up: file caches, and maskwatch's graph cache is built once, as at a user's first run
        timed(argv, env)
    print(f"load average at start: {os.getloadavg()}; CPUs: {os.cpu_count()}")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(args.rounds):
        for name, (argv, env) in runs.items():
            samples[name].append(timed(argv, env))
        print(f"round {k + 1}/{args.rounds} done", file=sys.stderr)
    print(f"load average at end: {os.getloadavg()}")
    report(samples, args.images, args.video_frames, ["", " (before)"] if args.baseline_src else [""])
    if args.score:
        score(work, args.peer_python)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
