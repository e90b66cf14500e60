"""Is the classifier short of real photos? Train on growing shares of scenes-ilc and score each on validation.

Issue 9's missed figures have stayed inside the spread of seeds while the recipe changed around them. If what limits
them is the number of real photos (445 incorrectly worn masks in all, 336 of them in the train split), a model
trained on a third, two thirds and all of those photos should climb on validation and still be climbing at the end;
if it has flattened, more photos of this kind would not move it and the recipe or the model would have to.

Every point starts from the same model, the one shipped before scenes-ilc existed (focus-guided GPU fine-tune, ``git
show 599ef29:src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors``), and runs the first issue-9 recipe
(``recipes/real_incorrect.yaml``: 8 blocks trainable, one cached view, scene faces twice per epoch) for ``--epochs``
epochs with one seed (``--seed``, which also orders the groups). Only the scenes-ilc train photos change: whole
near-duplicate groups are dropped (listed as exclusions, next to ``recipes/exclusions.txt``), in one fixed random
order, so each share holds the smaller ones. The other sources, val and test stay as they are. Each run is scored on
the val split, one pass, fp32, with ``maskwatch evaluate``, after the last epoch (``val``: the same training for every
share) and at the epoch the recipe's rule kept (``val, kept epoch``: the best val macro-F1 reaching the recall floor,
else the best macro-F1); the test split is never read by this script (the training run's own end report prints it).

    mkdir -p runs/focus_guided
    git show 599ef29:src/maskwatch/assets/maskwatch_mobilenet_v2.safetensors > runs/focus_guided/best.safetensors
    python benchmarks/learning_curve.py --out runs/learning_curve_seed1 --seed 1
    python benchmarks/learning_curve.py --out runs/learning_curve --seed 0 --plot-with runs/learning_curve_seed1

Writes OUT/share_<pct>/ (exclusions, recipe, training run, val JSON), OUT/learning_curve.json and
OUT/learning_curve.png (``--plot-with OTHER_OUT`` draws another seed's series too), and prints one row per share.
Measured 2026-12-01 on the 2-core AVX2-only EPYC, seeds 0 and 1 (docs/model-history.md, "More real photos"):
about 15 min a run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from maskwatch.data.splits import read_manifest
from maskwatch.fileio import save_figure, write_json
from maskwatch.training.checkpoint import load_checkpoint, save_checkpoint

SOURCE = "scenes-ilc"


def group_order(groups: set[str], seed: int) -> list[str]:
    """The groups in a fixed random order (a hash of seed and key), so the shares are nested and reproducible."""
    return sorted(groups, key=lambda group: hashlib.sha256(f"{seed}:{group}".encode()).hexdigest())


def dropped_photos(manifest: Path, share: float, seed: int) -> tuple[list[str], dict]:
    """Photos of the train groups of ``SOURCE`` beyond ``share``, and what the kept share holds."""
    rows = [row for row in read_manifest(manifest) if row.split == "train" and row.sample.source == SOURCE]
    order = group_order({row.group for row in rows}, seed)
    kept_groups = set(order[: round(share * len(order))])
    kept = [row for row in rows if row.group in kept_groups]
    dropped = sorted({str(Path(row.sample.path).resolve()) for row in rows if row.group not in kept_groups})
    counts = {"groups": len(kept_groups), "photos": len({row.sample.path for row in kept}), "faces": len(kept)}
    counts["mask_incorrect"] = sum(row.sample.label == "mask_incorrect" for row in kept)
    return dropped, counts


def write_point(out: Path, base: dict, share: float, dropped: list[str], epochs: int, init: str, seed: int) -> Path:
    """The exclusion list and recipe of one share; returns the recipe's path."""
    out.mkdir(parents=True, exist_ok=True)
    exclusions = out / "dropped_photos.txt"
    lines = [f"{path}  # not in the {share:.0%} share of {SOURCE} train groups" for path in dropped]
    exclusions.write_text("".join(f"{line}\n" for line in lines))
    recipe = dict(base, out=str(out / "run"), init=init, epochs=epochs, patience=epochs, seed=seed)
    recipe["exclude"] = [*base.get("exclude", []), str(exclusions)]
    config = out / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return config


def last_epoch_checkpoint(run: Path) -> Path:
    """The weights after the last epoch (``last.pt``) as a checkpoint beside ``best.safetensors``, whose metadata it
    keeps (the temperature does not change which class wins): every share is then scored after the same epochs."""
    path = run / "last_epoch.safetensors"
    if not path.is_file():
        model, meta = load_checkpoint(run / "best.safetensors")
        model.load_state_dict(torch.load(run / "last.pt", map_location="cpu", weights_only=True)["model"])
        save_checkpoint(model, meta, path)
    return path


def val_figures(model: Path, manifest: Path, json_path: Path) -> dict:
    """Per-source val figures of ``model`` (one pass), by the CLI's own scorer; a JSON newer than the model is reused."""
    if not json_path.is_file() or json_path.stat().st_mtime < model.stat().st_mtime:
        command = ["maskwatch", "evaluate", str(manifest), "--split", "val", "--no-flip", "--model", str(model)]
        subprocess.run([*command, "--json", str(json_path)], check=True, capture_output=True)
    report = json.loads(json_path.read_text())
    figures = {"pooled macro-F1": report["macro_f1"]}
    for source, part in report["per_source"].items():
        figures[f"{source} accuracy"] = part["accuracy"]
        figures[f"{source} macro-F1"] = part["macro_f1"]
        incorrect = part["per_class"].get("mask_incorrect", {})
        if incorrect.get("support"):
            figures[f"{source} mask_incorrect recall"] = incorrect["recall"]
    return figures


PLOTTED = ("scenes-ilc macro-F1", "scenes-ilc mask_incorrect recall", "maskedface-net accuracy", "chandrika accuracy")


def plot(series: dict[str, list[dict]], path: Path) -> None:
    """One line per figure and series (a series is one ``--seed``), x = scenes-ilc train faces worn incorrectly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for key, colour in zip(PLOTTED, ("C0", "C1", "C2", "C3")):
        for (name, points), style in zip(series.items(), ("-", "--", ":", "-.")):
            x = [point[f"train {SOURCE} mask_incorrect"] for point in points]
            y = [point["val"].get(key, float("nan")) for point in points]
            ax.plot(x, y, style, color=colour, marker="o", label=f"{key} ({name})")
    ax.set_xlabel(f"{SOURCE} train faces worn incorrectly (a third, two thirds, all of its train photos)")
    ax.set_ylabel("val figure (fp32, one pass, last epoch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("more real photos: val figures by share of scenes-ilc")
    fig.tight_layout()
    save_figure(fig, str(path))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=[0, 0.33, 0.67, 1])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--recipe", type=Path, default=Path("recipes/real_incorrect.yaml"))
    parser.add_argument("--init", default="runs/focus_guided/best.safetensors")
    parser.add_argument("--seed", type=int, default=0, help="order of the dropped groups and the training seed")
    parser.add_argument("--plot-with", type=Path, nargs="*", default=[], help="other OUT folders (other seeds) to draw too")
    args = parser.parse_args()
    if not Path(args.init).is_file():
        parser.error(f"--init {args.init}: no such file (see the commands at the top of this script)")
    base = yaml.safe_load(args.recipe.read_text())
    manifest = Path(base["splits"])
    points = []
    for share in sorted(args.shares):
        folder = args.out / f"share_{round(share * 100):03d}"
        dropped, counts = dropped_photos(manifest, share, args.seed)
        config = write_point(folder, base, share, dropped, args.epochs, args.init, args.seed)
        run = folder / "run"
        if not (run / "report.json").is_file():  # written last: a run cut short is trained on (it resumes from last.pt)
            print(f"share {share:.2f}: training ({counts['photos']} photos, {counts['mask_incorrect']} incorrect)", flush=True)
            with (folder / "train.log").open("w") as log:
                subprocess.run(["maskwatch", "train", "--config", str(config)], check=True, stdout=log, stderr=log)
        history = json.loads((run / "history.json").read_text())
        point = {
            "share": share,
            "seed": args.seed,
            f"train {SOURCE} photos": counts["photos"],
            f"train {SOURCE} faces": counts["faces"],
            f"train {SOURCE} mask_incorrect": counts["mask_incorrect"],
            "epochs": [{k: row[k] for k in ("epoch", "val_macro_f1", "val_recall_mask_incorrect_photos")} for row in history],
            "val": val_figures(last_epoch_checkpoint(run), manifest, folder / "val_last_epoch.json"),
            "val, kept epoch": val_figures(run / "best.safetensors", manifest, folder / "val.json"),
        }
        points.append(point)
        write_json(args.out / "learning_curve.json", points, indent=1)
        print(json.dumps({k: v for k, v in point.items() if k != "epochs"}), flush=True)
    series = {f"seed {args.seed}": points}
    for other in args.plot_with:
        other_points = json.loads((other / "learning_curve.json").read_text())
        series[f"seed {other_points[0]['seed']}"] = other_points
    plot(series, args.out / "learning_curve.png")
    keys = [key for key in points[-1]["val"]]
    print("share | photos | incorrect | " + " | ".join(keys))
    for point in points:
        cells = [f"{point['val'].get(key, float('nan')):.4f}" for key in keys]
        print(
            f"{point['share']:.2f} | {point[f'train {SOURCE} photos']} | {point[f'train {SOURCE} mask_incorrect']} | "
            + " | ".join(cells)
        )


if __name__ == "__main__":
    sys.exit(main())
