"""Where the project's own shipped model files live (package data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_CLASSIFIER = "maskwatch_mobilenet_v2_int8.onnx"


def asset_path(name: str) -> Path:
    return Path(str(resources.files("maskwatch") / "assets" / name))
