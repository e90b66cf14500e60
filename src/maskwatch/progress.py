"""Progress bars for long loops (rich), quiet when output is not a terminal-like stream."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import track as _rich_track

T = TypeVar("T")


def track(items: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr (none on torchrun's ranks other than 0: one bar per run, not per process)."""
    if os.environ.get("RANK", "0") != "0":
        yield from items
        return
    yield from _rich_track(items, description=description, total=total, transient=True)
