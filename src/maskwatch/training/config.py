"""Training configuration, defined once: a typed model that the YAML loader, the ``maskwatch train`` flags and the
run's saved ``config.json`` all come from.

A pydantic dataclass (not a ``BaseModel``) so that it stays a real frozen dataclass: ``dataclasses.asdict`` writes
the run's config and ``replace`` re-validates every change. Torch-free, and PyYAML is imported only to read a file,
so the CLI can build its flags from these fields in a runtime-only install.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic import dataclasses as pydantic_dataclasses

from maskwatch.fileio import write_json

ClassWeighting = Literal["none", "inverse", "sqrt_inverse"]
WholeImage = Literal["crop", "stretch"]


@pydantic_dataclasses.dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TrainConfig:
    """Every option of a training run; field descriptions are the ``--help`` text of the matching flag."""

    data: tuple[str, ...] = Field((), description="Data folder (class folders or VOC images/+annotations/); repeat for several.")
    out: str = Field("runs/train", description="Run folder (checkpoints, metrics, pictures).")
    model: str = Field("mobilenet_v2", description="mobilenet_v2, resnet18 or resnet50.")
    pretrained: bool = Field(True, description="Start from ImageNet weights.")
    init: str | None = Field(None, description="Fine-tune from 'default' (the shipped model) or a checkpoint.")
    input_size: int = Field(128, description="Classifier input side in pixels.")
    margin: float = Field(0.15, description="Face-box margin for scene crops (fraction of the box side).")
    whole_image: WholeImage = Field(
        "crop", description="How a class-folder file becomes a square crop: crop (the runtime's geometry) or stretch."
    )
    min_face: int = Field(10, description="Skip scene boxes smaller than this (pixels).")
    trainable_blocks: int | None = Field(
        None, description="Fine-tune the last K blocks (0 = head only; unset: the backbone's default)."
    )
    epochs: int = Field(20, description="Training epochs.")
    batch_size: int = Field(64, description="Faces per batch.")
    lr: float = Field(1e-3, description="Adam learning rate.")
    weight_decay: float = Field(1e-4, description="Adam weight decay.")
    label_smoothing: float = Field(0.05, description="Cross-entropy label smoothing.")
    class_weighting: ClassWeighting = Field("sqrt_inverse", description="Loss weight per class.")
    prior_correction: bool = Field(
        False,
        description="Undo the class weights at inference: record -log(weight) per class as logit offsets in the model, "
        "fitted with the temperature, so a rare class is not called more often than its share in training warrants "
        "(better calibrated, fewer false mask_incorrect, but on the shared data also fewer real ones found: README). "
        "Epochs are then chosen, and the recall floor checked, with the offsets applied.",
    )
    patience: int = Field(6, description="Early stop after this many epochs without a better kept epoch.")
    incorrect_recall_floor: float = Field(
        0.0,
        description="Keep the best val macro-F1 among epochs whose val mask_incorrect recall on scene-photo faces reaches "
        "this (0 = plain best macro-F1; if no epoch reaches it, the best macro-F1 of all).",
    )
    seed: int = Field(0, description="Seed for splits, augmentation and initialisation.")
    cache_views: int = Field(6, description="Augmented views cached per face (0 = augment online, whole net).")
    scene_oversample: int = Field(1, description="Repeat scene-photo faces this often per epoch.")
    box_cut_copies: bool = Field(
        False,
        description="Also train on a copy of each train scene face cut exactly at its box and given the margin the way a "
        "whole-face file is (border replicated): how crop sets cut at annotated boxes look to evaluate.",
    )
    focus_weight: float = Field(
        0.0, description="Weight of focus guidance: Grad-CAM mass asked onto nose, mouth and chin (0 = off)."
    )
    focus_goal: float = Field(0.8, description="Focus score above which a face costs no focus loss.")
    focus_min_evidence: float = Field(
        1.0, description="True-class evidence (logit units) the lower face must hold under focus guidance."
    )
    val_fraction: float = Field(0.15, description="Share of face groups held out for validation.")
    test_fraction: float = Field(0.15, description="Share of face groups held out for the test report.")
    exclude: tuple[str, ...] = Field((), description="File listing mislabelled files to leave out; repeat for several.")
    relabel: tuple[str, ...] = Field(
        (),
        description="File of 'PATH -> LABEL' corrections for whole-face files filed under the wrong class; repeat for several.",
    )
    splits: str | None = Field(None, description="Reuse an earlier run's splits.csv instead of splitting anew.")
    device: str = Field("cpu", description="cpu or cuda.")
    mixed_precision: bool = Field(
        True, description="On CUDA: bf16 autocast and channels-last (ignored on the CPU, which always trains in float32)."
    )
    threads: int = Field(0, description="Torch CPU threads (0 = torch's default).")

    @field_validator("data", "exclude", "relabel", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """A single path may be written without a list; YAML numbers in paths are kept as text."""
        if isinstance(value, str | Path):
            return (str(value),)
        if isinstance(value, list | tuple):
            return tuple(str(item) for item in value)
        return value

    def replace(self, **changes: object) -> TrainConfig:
        """A copy with ``changes`` applied (``None`` means "keep"), validated like a file."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


class ConfigError(ValueError):
    """A config that cannot be used; the one-line message names the file, the key and what was expected."""


@dataclass(frozen=True)
class OptionSpec:
    """One field as the CLI sees it: the table ``maskwatch train`` builds its flags from."""

    name: str
    kind: type  # int, float, bool, str or Path-like str
    repeated: bool
    choices: tuple[str, ...] | None
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def option_specs() -> Iterator[OptionSpec]:
    """The fields of :class:`TrainConfig`, in order, reduced to what a command-line flag needs."""
    for name, info in TrainConfig.__pydantic_fields__.items():
        annotation = _strip_optional(info.annotation)
        repeated = get_origin(annotation) is tuple
        choices = get_args(annotation) if get_origin(annotation) is Literal else None
        kind = str if repeated or choices else annotation
        default = info.get_default(call_default_factory=True)
        yield OptionSpec(name, kind, repeated, choices, default, info.description or "")


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, type(int | None)) and len(args) == 1:
        return args[0]
    return annotation


def _describe(annotation: Any) -> str:
    """'an integer', 'a number', ... for error messages."""
    annotation = _strip_optional(annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(map(str, get_args(annotation)))
    if get_origin(annotation) is tuple:
        return "a list of paths (or one path)"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(annotation, str(annotation))


def config_from_mapping(raw: object, origin: str) -> TrainConfig:
    """Validate a mapping read from ``origin`` (a file name, or "command line"); errors are one line."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of option: value")
    names = list(TrainConfig.__pydantic_fields__)
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{origin}: unknown key {key!r}{hint}")
    try:
        return TrainConfig(**raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error, origin, raw)) from None


def _one_line(error: ValidationError, origin: str, raw: dict) -> str:
    first = error.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    field = TrainConfig.__pydantic_fields__.get(key)
    expected = _describe(field.annotation) if field else "a valid value"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{origin}: {key} must be {expected}, got {raw.get(key)!r}{more}"


def load_config(path: Path) -> TrainConfig:
    """Read a YAML (or JSON, e.g. a run's config.json) config file; every value is type-checked."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config ({(str(error).splitlines() or [''])[0]})") from None
    return config_from_mapping(raw, str(path))


def save_config(config: TrainConfig, path: Path) -> None:
    """Write ``config`` as JSON that :func:`load_config` reads back to an equal config."""
    write_json(path, dataclasses.asdict(config))
