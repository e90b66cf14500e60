"""Training configuration: one frozen dataclass, loadable from YAML, mapped 1:1 to CLI flags."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...] = ()
    out: str = "runs/train"
    model: str = "mobilenet_v2"
    pretrained: bool = True
    init: str | None = None  # "default" (the shipped model) or a checkpoint to fine-tune from
    input_size: int = 128
    margin: float = 0.15
    whole_image: str = "crop"  # how a class-folder file becomes a square crop: crop (the runtime's geometry) | stretch
    min_face: int = 10
    trainable_blocks: int | None = None  # None: the backbone's default
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    class_weighting: str = "sqrt_inverse"  # none | inverse | sqrt_inverse
    patience: int = 6
    # Keep the epoch with the best val macro-F1 among those whose val mask_incorrect recall on faces from scene photos
    # reaches this floor (0: plain best val macro-F1); when no epoch reaches it, the best macro-F1 of all is kept.
    incorrect_recall_floor: float = 0.0
    seed: int = 0
    cache_views: int = 6  # augmented views of each training face whose trunk features are cached
    scene_oversample: int = 1  # repeat faces cropped from scene photos (VOC boxes) this often per epoch
    focus_weight: float = 0.0  # > 0: add focus guidance (CAM mass on the lower face) to the loss, with this weight
    focus_goal: float = 0.8  # faces whose CAM focus reaches this cost no focus loss
    focus_min_evidence: float = 1.0  # ... and whose lower face holds at least this much true-class evidence (logit units)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    exclude: tuple[str, ...] = field(default_factory=tuple)  # files listing paths to leave out
    splits: str | None = None  # reuse this splits.csv (reproduce or audit a run) instead of splitting anew
    device: str = "cpu"
    threads: int = 0  # 0: torch's default

    def replace(self, **changes: object) -> TrainConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file, key and a suggestion."""


def load_config(path: Path) -> TrainConfig:
    """Read a YAML config; unknown keys are errors with a close-match suggestion."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read config ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for key in raw:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
    for key in ("data", "exclude"):
        if key in raw and isinstance(raw[key], str):
            raw[key] = [raw[key]]
        if key in raw:
            raw[key] = tuple(str(item) for item in raw[key])
    try:
        return TrainConfig(**raw)
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from None
