"""Prepared ONNX graphs kept on disk, so start-up does not redo the same work every time.

CenterFace needs two preparations before it runs well: its weights are dropped from the graph inputs and its input
size made dynamic (needs the ``onnx`` package, slow to import), then ONNX Runtime folds constants and fuses layers.
Both results are stored once in the maskwatch cache folder under a key made of everything they depend on (the
source file's sha256, the onnxruntime version, the session options and the CPU's kernel-relevant features), written
atomically; any problem reading or writing the cache only costs the time it was meant to save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from maskwatch.fileio import atomic_path, write_bytes
from maskwatch.pypi_files import user_cache_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bump when what is stored (or how it is made) changes, so older entries are ignored.
FORMAT = 1


def graph_cache_dir() -> Path:
    return user_cache_dir() / "graphs"


def cache_key(**parts: object) -> str:
    """A short stable name for ``parts`` (json-encodable facts the cached file depends on)."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


_UNWRITTEN: set[str] = set()


def cached_bytes(name: str, key: str, build: Callable[[], bytes]) -> bytes:
    """``build()``'s result, from ``<cache>/graphs/<name>-<key>.onnx`` when it is there, else built and stored."""
    path = graph_cache_dir() / f"{name}-{key}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = build()
    try:
        write_bytes(path, data)
    except OSError as error:  # every start will build it again: say so, once per process
        if name not in _UNWRITTEN:
            _UNWRITTEN.add(name)
            log.warning("%s: cannot cache the %s graph there (%s); it is rebuilt at every start", path.parent, name, error)
    return data


def optimized_path(name: str, key: str) -> Path:
    """Where ONNX Runtime's optimised form of a graph with this key lives (it may not exist yet)."""
    return graph_cache_dir() / f"{name}-{key}.ort.onnx"


def build_and_save(build_session: Callable[[str | None], T], path: Path) -> T:
    """``build_session(filepath)`` once, with ONNX Runtime writing its optimised graph to a temporary name that is
    then renamed onto ``path``; the first start pays the optimisation once, as it did before the cache.

    ``build_session(None)`` must build the same session without saving: it is used when the cache folder cannot be
    written (a failure here only means the next start optimises again).
    """
    try:
        with atomic_path(path) as tmp:
            session = build_session(str(tmp))
            if os.path.getsize(tmp) == 0:
                raise OSError("ONNX Runtime wrote an empty file")
        return session
    except Exception as error:  # noqa: BLE001 - ORT's own types too; a real model problem recurs just below
        log.debug("optimised graph not cached (%s)", error)
    return build_session(None)
