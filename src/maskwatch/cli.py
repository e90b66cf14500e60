"""The ``maskwatch`` command. Torch is imported only inside the training-side commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(
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


def _fail(message: str) -> None:
    log.error(message)
    raise typer.Exit(code=1)


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
    uncertain_below: float = typer.Option(0.5, "--uncertain-below", help="Flag faces whose top class probability is lower."),
    detect_every: int = typer.Option(
        1, "--detect-every", help="Video: run the detector on every n-th frame and carry tracks between."
    ),
    blur_faces: bool = typer.Option(False, "--blur-faces", help="Privacy: pixelate faces in saved output."),
    device: str = typer.Option("cpu", "--device", help="cpu, auto, cuda or an ONNX Runtime provider name."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for ONNX Runtime (0 = default)."),
) -> None:
    """Find faces and classify their masks in images, folders, videos, webcams or streams."""
    from maskwatch.runtime.pipeline import DetectorConfig, MaskDetector, default_sample_image
    from maskwatch.runtime.stream import OutputOptions, run
    from maskwatch.sources import describe_source

    if source is None:
        import tempfile

        import cv2

        name, image = default_sample_image()
        save = save or Path("maskwatch-output")
        json_out = json_out or save / "detections.jsonl"
        source = str(Path(tempfile.mkdtemp(prefix="maskwatch-")) / "astronaut.png")
        cv2.imwrite(source, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        log.info("no SOURCE given: running on the built-in sample (%s)", name)
    kind = describe_source(source)
    size = detector_size if detector_size is not None else (320 if kind in ("video", "webcam", "stream") else 960)
    config = DetectorConfig(
        model=model,
        detector=detector,
        detector_size=size,
        min_face_score=min_face_score,
        uncertain_below=uncertain_below,
        device=device,
        threads=threads,
    )
    try:
        pipeline = MaskDetector(config)
    except (ValueError, RuntimeError) as error:
        _fail(str(error))
    options = OutputOptions(json_path=json_out, save_dir=save, show=show, blur_faces=blur_faces, detect_every=detect_every)
    try:
        summary = run(source, pipeline, options)
    except RuntimeError as error:
        _fail(str(error))
    log.info("%d frames/images, %d faces, %d errors in %.1f s", summary.frames, summary.faces, summary.errors, summary.seconds)
    if json_out:
        log.info("JSON Lines: %s", json_out)
    if save:
        log.info("annotated output: %s/", save)


@app.command()
def evaluate(
    data_dir: Path = typer.Argument(
        ..., help="Class-folder tree of face crops (with_mask/, without_mask/, mask_incorrect/ or aliases)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="ONNX classifier or .safetensors checkpoint (default: the shipped model)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the confusion-matrix PNG (default: beside --json, or ./maskwatch-eval)."
    ),
) -> None:
    """Accuracy, macro-F1, per-class metrics and confusion matrix of the classifier on face crops."""
    from maskwatch.runtime.classifier import ModelFileError
    from maskwatch.runtime.evaluate import evaluate_folder, write_evaluation

    if not data_dir.is_dir():
        _fail(f"{data_dir}: not a folder")
    try:
        classifier = _classifier_for(model)
    except (ModelFileError, ValueError) as error:
        _fail(str(error))
    result, problems = evaluate_folder(data_dir, classifier)
    for problem in problems:
        log.warning("%s", problem)
    if result["n"] == 0:
        _fail(f"{data_dir}: no usable images found")
    picture_dir = out or (json_out.parent if json_out else Path("maskwatch-eval"))
    written = write_evaluation(result, json_out, picture_dir)
    _print_report(result)
    log.info("wrote %s", ", ".join(map(str, written)))


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
    Console(stderr=True).print(table)


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
    out: Path | None = typer.Option(None, "--out", help="Folder for the PR-curve PNG (default: beside --json)."),
) -> None:
    """Detection + classification scores on annotated scenes: AP per class, mAP, face AP, compliance mAP."""
    from maskwatch.runtime.scene_eval import plot_pr_curves, score_scenes
    from maskwatch.runtime.scenes import load_ground_truth, predict_scenes, read_predictions

    truth, problems = load_ground_truth(images_dir, annotations_dir)
    for problem in problems:
        log.warning("%s", problem)
    if not truth:
        _fail(f"{annotations_dir}: no usable annotations")
    if predictions is not None:
        found = read_predictions(predictions, truth)
    else:
        from maskwatch.runtime.pipeline import DetectorConfig, MaskDetector

        try:
            pipeline = MaskDetector(DetectorConfig(model=model, detector_size=detector_size, min_face_score=min_face_score))
        except (ValueError, RuntimeError) as error:
            _fail(str(error))
        found = predict_scenes(truth, pipeline)
    report = score_scenes({k: v[1] for k, v in truth.items()}, found)
    curves = report.pop("_curves")
    picture_dir = out or (json_out.parent if json_out else Path("maskwatch-eval"))
    picture_dir.mkdir(parents=True, exist_ok=True)
    plot_pr_curves(curves, str(picture_dir / "pr_curves.png"))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    typer.echo(
        f"images {report['images']}  face AP {report['face_ap']:.4f}  face recall {report['face_recall']:.4f}  "
        f"3-class mAP {report['map_3class']:.4f}  compliance mAP {report['map_compliance']:.4f}"
    )
    for label, row in report["class"].items():
        typer.echo(f"  AP {label:<15} {row['ap']:.4f}  (n={row['n_truth']}, recall {row['recall']:.3f})")
    log.info("PR curves: %s", picture_dir / "pr_curves.png")


from maskwatch.cli_train import register as _register_train  # noqa: E402  (training-side commands)

_register_train(app, _fail, _classifier_for)
from maskwatch.cli_serve import register as _register_serve  # noqa: E402  (serve, events: the [serve] extra)

_register_serve(app, _fail)

if __name__ == "__main__":
    sys.exit(app())
