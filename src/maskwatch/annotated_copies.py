"""The record of the annotated copies ``detect --save`` writes, so that they are never mistaken for the user's files.

A ``--save`` folder may hold photos: it may be the folder being read, a folder inside it, or the folder of a single
photo. Each copy written there gets a line in the folder's hidden :data:`RECORD` (JSON: name, size and modification
time). A file is maskwatch's copy only while it still matches its line: a later run may replace it, and listings
(``detect``, ``evaluate``, ``explain``, training) leave it out. Any other file is the user's: never replaced, always
input. Standard library and :mod:`maskwatch.fileio` only.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from maskwatch.fileio import OutputError, atomic_write

log = logging.getLogger(__name__)

RECORD = ".maskwatch-written"
#: A record larger than this is not read (one warning): it cannot be maskwatch's, which holds one line per copy.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: A record this many lines longer than its entries is rewritten without the superseded lines.
COMPACT_AFTER = 1000


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def read_record(folder: Path) -> dict[str, tuple[int, int]]:
    """``folder``'s record: name -> (size, mtime_ns) of the copy when it was written. Empty when there is none, or
    when it is a link or not a plain file (never trusted: anyone could point it at a list of names)."""
    path = Path(folder) / RECORD
    if path.is_symlink() or not path.is_file():
        return {}
    entries: dict[str, tuple[int, int]] = {}
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            log.warning(
                "%s: over %d MB, not read; the copies it lists are taken for the user's files", path, MAX_RECORD_BYTES >> 20
            )
            return {}
        with path.open(encoding="utf-8", errors="replace") as record:
            for line in record:
                entry = _entry(line)
                if entry is not None:
                    entries[entry[0]] = entry[1]
    except OSError as error:
        log.warning("%s: cannot read (%s); the copies it lists are taken for the user's files", path, error.strerror)
        return {}
    return entries


def _entry(line: str) -> tuple[str, tuple[int, int]] | None:
    """One record line as (name, (size, mtime_ns)), or None for anything else: a line cut off by a kill, damage,
    or values no copy has (``Infinity``, nesting deep enough to exhaust the parser). That copy is then the user's."""
    if len(line) > 4096:
        return None
    try:
        entry = json.loads(line)
        name, size, mtime = entry["name"], entry["size"], entry["mtime_ns"]
    except Exception:  # noqa: BLE001 - any malformed line, whatever json raises for it, is just not an entry
        return None
    if not (isinstance(name, str) and type(size) is int and type(mtime) is int):
        return None
    if not name or os.sep in name or name in (".", ".."):
        return None
    return name, (size, mtime)


@lru_cache(maxsize=256)
def _record_of(folder: str, record_signature: tuple[int, int] | None) -> dict[str, tuple[int, int]]:
    return read_record(Path(folder)) if record_signature else {}


def matches(record: dict[str, tuple[int, int]], path: Path) -> bool:
    """Whether ``path`` is in ``record`` and unchanged since it was written."""
    return path.name in record and _signature(path) == record[path.name]


def is_annotated_copy(path: Path) -> bool:
    """Whether ``path`` is a copy maskwatch wrote and nobody changed since (its folder's record still matches)."""
    path = Path(path)
    return matches(_record_of(str(path.parent), _signature(path.parent / RECORD)), path)


def check_record(folder: Path, option: str = "--save") -> None:
    """Fail before any work, with one :class:`OutputError` line, when ``folder``'s record cannot be appended to
    safely: a link (a shared folder's record pointing at another file would have names written into it), not a
    plain file, or not writable."""
    path = Path(folder) / RECORD
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OutputError(f"{option} {folder}: {RECORD} there is a link or not a plain file; remove it")
    try:
        os.close(_open_for_append(path))
    except OSError as error:
        raise OutputError(f"{option} {folder}: cannot write {RECORD} ({error.strerror or error})") from None


def _open_for_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)


def record_copy(path: Path, record: dict[str, tuple[int, int]]) -> None:
    """Add the complete copy ``path`` to its folder's record (and to ``record``, the run's view of it): one appended
    JSON line, so a kill loses at most that line, and the copy is then taken for the user's and kept."""
    signature = _signature(path)
    if signature is None:
        return
    line = json.dumps({"name": path.name, "size": signature[0], "mtime_ns": signature[1]}) + "\n"
    fd = _open_for_append(path.parent / RECORD)
    try:
        os.write(fd, line.encode("utf-8", errors="surrogateescape"))
    finally:
        os.close(fd)
    record[path.name] = signature


def compact_record(folder: Path, record: dict[str, tuple[int, int]]) -> None:
    """Rewrite ``folder``'s record atomically with one line per copy still there, once superseded lines (a copy
    replaced run after run) outnumber them by :data:`COMPACT_AFTER`."""
    path = Path(folder) / RECORD
    try:
        count = sum(1 for _ in path.open(encoding="utf-8", errors="replace"))
    except OSError:
        return
    if count <= len(record) + COMPACT_AFTER:
        return
    kept = {name: sig for name, sig in record.items() if _signature(Path(folder) / name) == sig}
    with atomic_write(path) as handle:
        for name, (size, mtime) in kept.items():
            handle.write(json.dumps({"name": name, "size": size, "mtime_ns": mtime}) + "\n")
