"""Compare where models look: median Grad-CAM focus per source and class, and the occlusion check, side by side.

Each input is the JSON of ``maskwatch explain --report SPLITS --split test --json FILE`` for one model. Prints a
markdown table, draws a grouped bar chart, and can keep a copy of the summaries without the per-face list.

    python benchmarks/focus_study.py before=runs/focus_before.json after=runs/focus_after.json \
        --chart docs/focus_study_chart.png --keep docs/study/focus_study.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskwatch.fileio import save_figure, write_json


def load(specs: list[str]) -> dict[str, dict]:
    models = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"{spec!r}: expected name=path/to/focus.json")
        summary = json.loads(Path(path).read_text())
        models[name] = {key: value for key, value in summary.items() if key != "faces"}
    return models


def table(models: dict[str, dict]) -> str:
    names = list(models)
    first = models[names[0]]
    lines = [
        "| source | class | n | " + " | ".join(f"median focus, {name}" for name in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for source, per_class in first["per_source"].items():
        for label, row in per_class.items():
            cells = [f"{models[name]['per_source'][source][label]['median_focus']:.3f}" for name in names]
            lines.append(f"| {source} | {label} | {row['n']} | " + " | ".join(cells) + " |")
    if all("occlusion" in m for m in models.values()):
        lines += ["", "| class | " + " | ".join(f"changed lower / above hidden, {name}" for name in names) + " |"]
        lines.append("|---|" + "---|" * len(names))
        for label in first["occlusion"]:
            cells = [
                f"{models[n]['occlusion'][label]['changed_lower_hidden']:.1%} / {models[n]['occlusion'][label]['changed_upper_hidden']:.1%}"
                for n in names
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(models: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(models)
    groups = [(s, label) for s, per_class in models[names[0]]["per_source"].items() for label in per_class]
    x = np.arange(len(groups))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=110)
    for i, name in enumerate(names):
        values = [models[name]["per_source"][s][label]["median_focus"] for s, label in groups]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.axhline(0.6, color="grey", ls="--", lw=0.8)
    ax.text(len(groups) - 0.5, 0.61, "0.6 target", ha="right", va="bottom", fontsize=7, color="grey")
    ax.set_xticks(x, [f"{s}\n{label}" for s, label in groups], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("median focus (test split)")
    ax.set_title("Share of Grad-CAM mass on nose, mouth and chin", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="name=focus.json from `maskwatch explain --report ... --json`")
    parser.add_argument("--chart", type=Path)
    parser.add_argument("--keep", type=Path, help="write the summaries (no per-face list) here")
    args = parser.parse_args()
    models = load(args.models)
    print(table(models))
    if args.chart:
        chart(models, args.chart)
        print(f"chart: {args.chart}")
    if args.keep:
        write_json(args.keep, models, indent=1)


if __name__ == "__main__":
    main()
