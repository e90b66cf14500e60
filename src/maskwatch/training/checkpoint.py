"""Checkpoints as safetensors: the weights plus a small JSON of what is needed to rebuild them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from maskwatch.fileio import atomic_path
from maskwatch.metrics import read_logit_offsets
from maskwatch.training.models import MaskClassifierNet, build_model


class CheckpointError(ValueError):
    """A file that is not a usable maskwatch checkpoint."""


def save_checkpoint(model: MaskClassifierNet, meta: dict, path: Path) -> None:
    """Write weights + metadata atomically (temporary name, then rename)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"maskwatch": json.dumps(meta)})


def read_meta(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = (handle.metadata() or {}).get("maskwatch")
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for bad files
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({error})") from None
    if meta is None:
        raise CheckpointError(f"{path}: a safetensors file without maskwatch metadata")
    return json.loads(meta)


def load_checkpoint(path: Path) -> tuple[MaskClassifierNet, dict]:
    """Rebuild the model a checkpoint was saved from and load its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    meta = read_meta(path)
    try:
        read_logit_offsets(meta)  # checked here so Grad-CAM, export and the report never meet bad offsets
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    model = build_model(meta["model"], len(meta["labels"]), pretrained=False, trainable_blocks=meta["trainable_blocks"])
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not match {meta['model']} ({str(error)[:200]})") from None
    model.eval()
    return model, meta


def default_checkpoint() -> Path:
    """The shipped fp32 classifier (for fine-tuning, export and Grad-CAM)."""
    from maskwatch.runtime.assets import asset_path

    return asset_path("maskwatch_mobilenet_v2.safetensors")


def resolve_checkpoint(spec: str | Path | None) -> Path:
    return default_checkpoint() if spec in (None, "default") else Path(spec)


def torch_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
