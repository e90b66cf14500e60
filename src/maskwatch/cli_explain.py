"""``maskwatch explain``: Grad-CAM overlays per face, and focus-score reports over datasets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer

from maskwatch.cli_common import fail, refuse_json_over_inputs, require_extra

log = logging.getLogger("maskwatch")

#: Whole photos are searched for faces at most this long side: CenterFace at a 24 MP photo's own size needs ~5.6 GB.
#: Crops and small photos still run at their own size, as in training (focus scores stay comparable).
MAX_DETECTOR_SIDE = 1280


def explain(
    source: Path | None = typer.Argument(None, help="Image or folder: every face found gets an overlay."),
    model: str | None = typer.Option(None, "--model", help="Checkpoint (.safetensors); default: the shipped model."),
    target: str | None = typer.Option(None, "--target", help="Explain this class instead of the predicted one."),
    out: Path = typer.Option(Path("maskwatch-explain"), "--out", help="Output folder."),
    report: Path | None = typer.Option(
        None, "--report", help="Focus report over a class-folder tree, VOC scenes or a splits.csv."
    ),
    split: str = typer.Option("test", "--split", help="With a splits.csv: which split to report on."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the focus report as JSON."),
    crops: bool = typer.Option(False, "--crops", help="Treat each image as one face crop (no face detection)."),
) -> None:
    """Where does the model look? Grad-CAM overlays and the lower-face focus score."""
    require_extra("train")
    from maskwatch.explain.report import focus_report, occlusion_check, save_examples, save_gallery, summarise
    from maskwatch.fileio import OutputError, check_writable_file, ensure_parent, write_json
    from maskwatch.runtime.detectors import make_detector

    if source is None and report is None:
        fail("give a SOURCE image/folder or --report DATA")
    refuse_json_over_inputs(json_out, ("--report", report if report is not None and report.is_file() else None))
    if json_out is not None:
        try:
            check_writable_file(json_out, "--json")  # before the model loads: e.g. never over a photo
        except OutputError as error:
            fail(str(error))
    target = _canonical_target(target)
    explainer, meta = _load_explainer(model)
    detector = make_detector("centerface", input_size=0, threshold=0.3)
    try:
        ensure_parent(out / "x")
    except OutputError as error:
        fail(f"--out {out}: {error}")
    unreadable = 0
    if report is not None:
        samples = _report_samples(report, split)
    else:
        samples, unreadable = _faces_in(source, crops, detector, fail)
    if not samples:
        fail("no faces to explain")
    records, pictures = focus_report(samples, explainer, meta, detector=detector, target=target)
    summary = summarise(records)
    gallery = out / ("lowest_focus.png" if report is not None else "gradcam_grid.png")
    (save_gallery if report is not None else save_examples)(records, pictures, gallery)
    if report is None:
        _write_overlays(records, pictures, out)
    if report is not None:  # faces of a plain SOURCE have no true label to summarise by
        summary["occlusion"] = occlusion_check(explainer, pictures, records)
        _print_report(summary)
    if json_out:
        write_json(json_out, summary, indent=1)
    typer.echo(f"pictures: {out}/ ({gallery.name})")
    if report is None and unreadable:
        raise typer.Exit(code=1)  # some images could not be read (each reported on its own line)


def _canonical_target(target: str | None) -> str | None:
    """``--target`` as a canonical label (aliases accepted); stops with the valid choices when unknown."""
    from maskwatch.labels import UnknownLabelError, canonical_label

    if target is None:
        return None
    try:
        return canonical_label(target)
    except UnknownLabelError as error:
        fail(str(error))


def _load_explainer(model: str | None) -> tuple[Any, dict]:
    """(Grad-CAM explainer, checkpoint metadata) for ``--model`` (a path or a shipped name; default: the shipped one)."""
    from maskwatch.explain.gradcam import Explainer
    from maskwatch.training.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint

    try:
        net, meta = load_checkpoint(resolve_checkpoint(model))
    except CheckpointError as error:
        fail(str(error))
    return Explainer(net, meta["labels"], meta.get("temperature", 1.0), meta.get("logit_offsets")), meta


def _report_samples(report: Path, split: str) -> list:
    """The labelled faces of ``--report``: the ``split`` rows of a splits.csv, or every face of a data folder."""
    from maskwatch.data.index import index_source
    from maskwatch.data.splits import read_manifest

    if report.is_file() and report.name.endswith((".csv", ".csv.gz")):
        return [r.sample for r in read_manifest(report) if r.split == split]
    if report.is_dir():
        return index_source(report).samples
    fail(f"{report}: not a folder or splits.csv")


def _write_overlays(records: list, pictures: dict, out: Path) -> None:
    """One Grad-CAM overlay PNG per explained face, named by index, file and prediction."""
    from maskwatch.explain.gradcam import overlay
    from maskwatch.fileio import write_image

    for i, record in enumerate(records):
        name = f"{i:04d}_{Path(record.file.split('#')[0]).stem}_{record.predicted}.png"
        write_image(out / name, overlay(pictures["crops"][i], pictures["cams"][i]))


def _print_report(summary: dict) -> None:
    """Focus per source and class, then per class with the occlusion check, as console tables."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Grad-CAM share on nose, mouth and chin (focus)")
    for column in ("source", "class", "faces", "median focus", "mean focus"):
        table.add_column(column, justify="left" if column in ("source", "class") else "right")
    rows = [(source, label, row) for source, per_class in summary["per_source"].items() for label, row in per_class.items()]
    rows += [("all", label, row) for label, row in summary["per_class"].items()]
    for source, label, row in rows:
        table.add_row(source, label, str(row["n"]), f"{row['median_focus']:.3f}", f"{row['mean_focus']:.3f}")
    hidden = Table(title="Prediction changed when a grey patch hides ...")
    for column in ("class", "faces", "the lower face", "the band above it"):
        hidden.add_column(column, justify="left" if column == "class" else "right")
    for label, row in summary["occlusion"].items():
        hidden.add_row(label, str(row["n"]), f"{row['changed_lower_hidden']:.1%}", f"{row['changed_upper_hidden']:.1%}")
    console = Console()
    console.print(table)
    console.print(hidden)


def _faces_in(source: Path, crops: bool, detector, fail) -> tuple[list, int]:
    """Samples for every face in ``source`` (label unknown: the prediction is shown), and how many files failed.

    Photos longer than :data:`MAX_DETECTOR_SIDE` are searched at that size (boxes come back in original pixels).
    """
    from maskwatch.data.index import Sample
    from maskwatch.explain.report import UNLABELLED
    from maskwatch.imaging import ImageLoadError, is_image_path, is_system_file, load_rgb
    from maskwatch.runtime.detectors import make_detector

    if not source.exists():
        fail(f"{source}: no such file or folder")
    files = (
        sorted(p for p in source.rglob("*") if is_image_path(p) and not is_system_file(p, source))
        if source.is_dir()
        else [source]
    )
    samples, unreadable, large = [], 0, None
    for path in files:
        if crops:
            samples.append(Sample(path, UNLABELLED, "input"))
            continue
        try:
            image = load_rgb(path)
        except ImageLoadError as error:
            log.error("%s", error)
            unreadable += 1
            continue
        if max(image.shape[:2]) > MAX_DETECTOR_SIDE:
            large = large or make_detector("centerface", input_size=MAX_DETECTOR_SIDE, threshold=0.3)
            found = large.detect(image)
        else:
            found = detector.detect(image)
        if len(found.boxes) == 0:
            log.warning("%s: no face found (use --crops if the image is a face crop)", path)
        samples.extend(Sample(path, UNLABELLED, "input", tuple(float(v) for v in box)) for box in found.boxes)
    if not samples and not files:
        fail(f"{source}: no images")
    return samples, unreadable
