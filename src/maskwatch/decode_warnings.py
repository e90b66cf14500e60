"""Warnings raised while a file is decoded, as one log line naming that file.

PIL warns about damaged files (EXIF tags past the end of their block, odd chunks) with Python's two-line warning,
which names PIL's own source file and not the photo. ``detect`` decodes on a read-ahead thread, and on Python 3.11
a ``catch_warnings`` block per file is not thread-safe, so the file being decoded is kept in a thread-local and
:func:`warnings.showwarning`, which runs in the thread that warned, is wrapped to read it. Standard library only:
the ``maskwatch`` command installs it at start without importing PIL or OpenCV.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: The file this thread is decoding, and the messages already logged for it.
_decoding = threading.local()


@contextlib.contextmanager
def decoding(name: str) -> Iterator[None]:
    """Warnings raised in this thread inside the block are about ``name`` (once the CLI has installed the hook)."""
    _decoding.name, _decoding.said = name, set()
    try:
        yield
    finally:
        _decoding.name = None


def name_files_in_decode_warnings() -> None:
    """Log a warning raised inside :func:`decoding` as ``name: message``, once per file and message; every other
    warning goes to the handler there was before. Idempotent. The user's warning filters still apply (``-W
    ignore`` keeps these lines away, ``-W error`` still raises)."""
    if getattr(warnings.showwarning, "names_decoded_files", False):
        return
    previous = warnings.showwarning

    def showwarning(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, file=None, line: str | None = None
    ) -> None:
        name = getattr(_decoding, "name", None)
        if name is None:  # not inside a decode on this thread: not about a file
            previous(message, category, filename, lineno, file, line)
            return
        text = str(message)
        if text not in _decoding.said:
            _decoding.said.add(text)
            log.warning("%s: %s", name, text)

    showwarning.names_decoded_files = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning
