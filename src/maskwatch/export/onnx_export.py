"""Export a trained classifier to ONNX with its preprocessing facts stored inside the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch

from maskwatch.fileio import atomic_path
from maskwatch.runtime.classifier import METADATA_KEY

OPSET = 17


def set_metadata(model_path: Path, meta: dict) -> None:
    """Replace the maskwatch metadata of an ONNX file (atomically: a kill mid-write leaves the old file)."""
    model = onnx.load(str(model_path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    model.producer_name = "maskwatch"
    with atomic_path(model_path) as tmp:
        onnx.save(model, str(tmp))


def export_onnx(model: torch.nn.Module, meta: dict, path: Path) -> Path:
    """Write ``model`` as ONNX (fixed opset, dynamic batch) with ``meta`` in its metadata."""
    path = Path(path)
    with atomic_path(path) as tmp:
        model.eval()
        dummy = torch.zeros(1, 3, meta["input_size"], meta["input_size"])
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        set_metadata(tmp, {**meta, "format": "fp32", "opset": OPSET})
    return path


def parity_torch_vs_onnx(model: torch.nn.Module, onnx_path: Path, batch: np.ndarray) -> float:
    """Largest absolute logit difference between PyTorch and ONNX Runtime on ``batch`` (NCHW)."""
    from maskwatch.runtime.session import create_session

    session = create_session(str(onnx_path))
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(batch)).numpy()
    actual = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return float(np.abs(expected - actual).max())
