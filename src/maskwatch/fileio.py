"""Atomic file writes: a reader (or the next run) sees the old file or the new one, never half of one.

Every writer in maskwatch goes through :func:`atomic_path` (for libraries that want a path, such as
``torch.save``, ``safetensors``, ``onnx`` or matplotlib) or :func:`atomic_write` (for an open handle).
The temporary file lives in the destination folder (so the final ``os.replace`` is a rename on one
file system), is fsynced before the rename, and is created with mode ``0o666`` minus the umask: the
same permissions ``open(path, "w")`` would give, not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from maskwatch.media import is_media_path


class OutputError(OSError):
    """An output file or folder that cannot be written; the message names it and the reason."""


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> Path:
    """An empty, new file beside ``path`` created with the umask's mode (O_EXCL: never someone else's file)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise OutputError(f"{path}: could not create a temporary file beside it")


def ensure_parent(path: Path) -> None:
    """Create ``path``'s folder, turning the usual failures into one :class:`OutputError` line."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{path}: cannot create folder {path.parent} (a file is in the way)") from None
    except OSError as error:
        raise OutputError(f"{path}: cannot create folder {path.parent} ({error.strerror or error})") from None


def check_not_media(path: Path, option: str) -> None:
    """Refuse a report written over an existing photo or video (``--json photos/a.jpg``): one line, nothing lost."""
    if Path(path).is_file() and is_media_path(Path(path)):
        raise OutputError(f"{option} {path}: is an existing image or video file; refusing to overwrite it")


def check_writable_file(path: Path, option: str) -> None:
    """Fail before any work, with one :class:`OutputError` line, when ``path`` cannot be written atomically: its
    folder cannot be made or written to, it is a folder, or it is an existing image or video. Leaves no file behind."""
    path = Path(path)
    check_not_media(path, option)
    try:
        ensure_parent(path)
    except OutputError as error:
        raise OutputError(f"{option} {error}") from None
    check_writable_folder(path.parent, option, name=path)


def check_writable_folder(folder: Path, option: str, *, name: Path | None = None) -> None:
    """Fail before any work when ``folder`` is a file or cannot be created or written to (one :class:`OutputError`
    line naming ``option`` and ``name``, the folder by default)."""
    folder, name = Path(folder), name or folder
    if folder.exists() and not folder.is_dir():
        where = "" if name == folder else f"{folder} "
        raise OutputError(f"{option} {name}: {where}is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(f"{option} {name}: cannot write there ({error.strerror or error})") from None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    ensure_parent(path)
    try:
        tmp = _create_temporary(path)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"{path}: cannot write in {path.parent} ({error.strerror or error})") from None
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose content appears at ``path`` only when the block finishes without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode {mode!r}; choose 'w' or 'wb'")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as handle:
        yield handle
        handle.flush()


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``None`` (JSON ``null``): ``json.dumps`` would write bare NaN, which is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as strict JSON (non-finite floats as ``null``), atomically."""
    text = json.dumps(_json_safe(data), indent=indent, allow_nan=False)
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """``fig.savefig`` through a temporary file (the format comes from ``path``'s suffix, not the temporary name)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png")
    return path


def write_image(path: str | Path, rgb: Any) -> Path:
    """Encode an RGB uint8 array by ``path``'s suffix and write it atomically; raises :class:`OutputError`.

    ``cv2.imwrite`` returns False (and writes nothing) for an unknown suffix or a failed write: here that is an error.
    """
    import cv2

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"{path}: OpenCV cannot encode an image with suffix {path.suffix!r}")
    return write_bytes(path, encoded.tobytes())
