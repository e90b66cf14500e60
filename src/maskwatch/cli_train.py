"""Training-side commands (train, export, explain); each imports torch lazily."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from maskwatch.cli_common import fail, require_extra

if TYPE_CHECKING:
    from maskwatch.training.config import TrainConfig

log = logging.getLogger("maskwatch")


def train_parameters() -> list[inspect.Parameter]:
    """``--config`` plus one flag per :class:`TrainConfig` field, all defaulting to None ("not given")."""
    from maskwatch.training.config import option_specs

    config = typer.Option(None, "--config", help="YAML file of options (keys as the flags, with _); flags override it.")
    parameters = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=config, annotation=Path | None)]
    for spec in option_specs():
        declaration = f"{spec.flag}/--no-{spec.flag[2:]}" if spec.kind is bool else spec.flag
        option = typer.Option(
            None,
            declaration,
            help=f"{spec.help} (default: {_shown_default(spec.default)})",
            show_default=False,
        )
        kind = enum.Enum(spec.name, [(c, c) for c in spec.choices], type=str) if spec.choices else spec.kind
        annotation = list[str] | None if spec.repeated else kind | None
        parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return parameters


def _shown_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    return str(value)


def build_train_config(config_path: Path | None, flags: dict[str, Any]) -> TrainConfig:
    """The run's config: the YAML file (or the defaults), then every flag that was given; raises ConfigError."""
    from maskwatch.training.config import TrainConfig, config_from_mapping, load_config

    base = load_config(config_path) if config_path else TrainConfig()
    given = {
        key: value.value if isinstance(value, enum.Enum) else value
        for key, value in flags.items()
        if value is not None and value != []
    }
    if not given:
        return base
    return config_from_mapping({**dataclasses.asdict(base), **given}, "command line")


def train(config: Path | None = None, **flags: Any) -> None:
    """Transfer-learn a mask classifier; writes checkpoints, metrics, curves and an ONNX model."""
    from maskwatch.training.config import ConfigError

    require_extra("train")
    try:
        run_train_command(build_train_config(config, flags), fail)
    except ConfigError as error:
        fail(str(error))


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
    weights: str = typer.Option(
        "s8-reduced",
        "--weights",
        help="int8 weight type: s8-reduced (7-bit, same results on every x86 CPU), s8 (saturates on AVX2 without "
        "VNNI) or u8 (also safe, but slow).",
    ),
    min_parity_faces: int = typer.Option(
        100, "--min-parity-faces", help="Refuse the int8 model unless the parity check has this many held-out faces."
    ),
) -> None:
    """Export a checkpoint to ONNX (+ int8), with parity checks against PyTorch and fp32."""
    require_extra("train")
    if format != "onnx":
        fail(f"format {format!r} is not supported; choose: onnx")
    net, meta, fp32_path = export_fp32(model, input_size, out)
    calibration = calibration or model.parent / "splits.csv"
    crops, labels = calibration_crops(calibration, meta)
    check_torch_parity(net, fp32_path, crops, meta["input_size"])
    if not int8:
        return
    if not crops:
        fail(f"calibration set {calibration} has no images; give --calibration with real face crops")
    export_int8(
        fp32_path,
        crops,
        labels,
        calibration=calibration,
        method=method,
        weights=weights,
        max_drop=max_drop,
        min_parity_faces=min_parity_faces,
    )


def export_fp32(model: Path, input_size: int | None, out: Path | None) -> tuple[Any, dict, Path]:
    """(network, metadata, fp32 ONNX path): the checkpoint written as ONNX (at ``input_size`` when given)."""
    from maskwatch.export.onnx_export import export_onnx
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
    return net, meta, fp32_path


def calibration_crops(calibration: Path, meta: dict) -> tuple[list, list]:
    """The calibration faces, cut as the checkpoint saw them in training; none when ``calibration`` does not exist."""
    from maskwatch.data.loading import load_labelled_crops

    if not calibration.exists():
        return [], []
    return load_labelled_crops(
        calibration, size=meta["input_size"], margin=meta["margin"], whole_image=meta.get("whole_image", "stretch")
    )


def check_torch_parity(net: Any, fp32_path: Path, crops: list, input_size: int) -> None:
    """Print the largest difference between PyTorch and ONNX Runtime on up to 32 real crops (random inputs without)."""
    import numpy as np

    from maskwatch.export.onnx_export import parity_torch_vs_onnx
    from maskwatch.runtime.classifier import OnnxMaskClassifier

    probe = (
        OnnxMaskClassifier(fp32_path).preprocess(crops[:32])
        if crops
        else np.random.default_rng(0).normal(size=(4, 3, input_size, input_size)).astype(np.float32)
    )
    difference = parity_torch_vs_onnx(net, fp32_path, probe)
    typer.echo(f"fp32: {fp32_path} ({fp32_path.stat().st_size / 1e6:.2f} MB); max |torch - onnxruntime| = {difference:.2e}")


def export_int8(
    fp32_path: Path,
    crops: list,
    labels: list,
    *,
    calibration: Path,
    method: str,
    weights: str,
    max_drop: float,
    min_parity_faces: int,
) -> Path:
    """Quantise on the even calibration faces, check parity on the odd ones, keep the file only if it passes."""
    from maskwatch.export.quantize import check_parity, parity_refusal, quantize_int8, record_parity

    (calib, _), (held_crops, held_labels) = held_out_parts(crops, labels)
    int8_path = fp32_path.with_name(fp32_path.stem + "_int8.onnx")
    try:
        quantize_int8(
            fp32_path,
            int8_path,
            calib,
            method=method,
            weights=weights,
            calibration_source=str(calibration),
            selection_crops=held_crops,
        )
    except ValueError as error:  # a calibration set ONNX Runtime cannot quantise from: one line, not a traceback
        int8_path.unlink(missing_ok=True)
        fail(f"int8 quantisation failed ({str(error)[:200]}); int8 model not kept")
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
    record_parity(int8_path, parity, f"{calibration} (odd val faces, not used for calibration)")
    return int8_path


def register(app: typer.Typer) -> None:
    """Add train, export and explain to ``app``; ``train``'s flags are built here, from the training config."""
    from maskwatch.cli_explain import explain

    train.__signature__ = inspect.Signature(train_parameters())  # type: ignore[attr-defined]
    app.command()(train)
    app.command()(export)
    app.command()(explain)


def run_train_command(cfg: TrainConfig, fail: Callable[[str], None]) -> None:
    """Check the data folders, train, export the best checkpoint to ONNX and print the test figures."""
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
    except OSError as error:  # --out under a file, a read-only folder, a full disk
        fail(f"--out {cfg.out}: {error.strerror or error} ({error.filename or cfg.out})")
    if report.get("rank", 0) != 0:
        return  # under torchrun, rank 0 alone exports and prints
    _export_after_training(Path(cfg.out))
    for source, result in report["test"].items():
        typer.echo(f"test {source:<16} n={result['n']:>5}  accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}")
    for label, row in report.get("test_focus", {}).get("all", {}).items():
        typer.echo(
            f"test focus {label:<14} n={row['n']:>5}  median {row['median_focus']:.3f}  (Grad-CAM share on the lower face)"
        )
    typer.echo(f"run folder: {cfg.out}  (report.json, metrics.csv, curves.png, confusion_*.png, model.onnx)")


def held_out_parts(crops: list, labels: list) -> tuple[tuple[list, list], tuple[list, list]]:
    """(calibration crops, labels) and disjoint (held-out crops, labels) for the int8 parity gate: even positions
    calibrate, odd ones check - deterministic, keeps the class mix, and never touches a test split."""
    return (crops[0::2], labels[0::2]), (crops[1::2], labels[1::2])


def _export_after_training(run_dir: Path) -> None:
    from maskwatch.export.onnx_export import export_onnx
    from maskwatch.training.checkpoint import load_checkpoint

    net, meta = load_checkpoint(run_dir / "best.safetensors")
    export_onnx(net, meta, run_dir / "model.onnx")
