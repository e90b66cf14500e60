"""Can this OpenCV open windows? ``detect --show`` asks before it starts, so a headless install fails in one line.

The runtime depends on ``opencv-python-headless`` (no Qt/GTK, ~100 MB smaller). ``opencv-python`` (the ``gui``
extra) provides the same ``cv2`` module with a GUI; with both installed, whichever was installed last owns ``cv2``.
"""

from __future__ import annotations

import re
from importlib import metadata


def opencv_gui_backend() -> str | None:
    """The GUI backend OpenCV was built with (e.g. 'QT5', 'GTK3'), or None for a headless build."""
    import cv2

    found = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    backend = found.group(1) if found else "NONE"
    return None if backend.upper() == "NONE" else backend


def _installed(distribution: str) -> bool:
    try:
        metadata.version(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


def gui_problem() -> str | None:
    """None when windows can be opened; else one line saying which install fixes it."""
    if opencv_gui_backend() is not None:
        return None
    if _installed("opencv-python"):
        return (
            "--show needs OpenCV's GUI build; opencv-python is installed but the headless build owns cv2 (both provide "
            "it): run `pip install --force-reinstall --no-deps opencv-python`"
        )
    return (
        "--show needs OpenCV's GUI build and this install has opencv-python-headless: run "
        '`pip install "maskwatch[gui]"` (adds opencv-python, whose cv2 then replaces the headless one), '
        "or save annotated output with --save DIR instead"
    )
