"""Commands beyond ``detect`` need an optional install; say which in one line instead of an ImportError traceback."""

from __future__ import annotations

import importlib.util

#: extra -> the modules it brings that commands import (see pyproject.toml's optional-dependencies).
EXTRAS = {
    "eval": ("sklearn", "matplotlib"),
    "train": ("torch", "torchvision", "yaml", "safetensors", "pytorch_grad_cam", "sklearn", "matplotlib"),
}


def missing_extra(extra: str) -> str | None:
    """None when ``extra``'s modules import; else one line naming what is missing and the pip command."""
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return f'this command needs the {extra} extra ({", ".join(missing)} not installed): pip install "maskwatch[{extra}]"'
