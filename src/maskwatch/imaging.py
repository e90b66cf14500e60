"""Loading still images into RGB uint8 arrays, with one clear error for every bad file.

PIL is used (not ``cv2.imread``) because it reports *why* a file failed, applies EXIF rotation,
and lets us refuse decompression bombs before decoding the pixels. Plain JPEGs, the common case, are decoded by
OpenCV instead (faster, same pixels; see :mod:`maskwatch.fastjpeg`), and everything else still goes through PIL.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskwatch.annotated_copies import RECORD, is_annotated_copy
from maskwatch.decode_warnings import decoding
from maskwatch.fastjpeg import decode_plain_jpeg, load_plain_jpeg
from maskwatch.media import IMAGE_SUFFIXES as IMAGE_SUFFIXES  # re-exported: where callers look
from maskwatch.media import VIDEO_SUFFIXES as VIDEO_SUFFIXES
from maskwatch.media import is_image_path as is_image_path

#: Images above this many pixels are refused (a 10000x10000 image is 100 MP).
MAX_PIXELS = 50_000_000


#: Files and folders an operating system leaves in a folder of photos (Finder, Explorer, a zip made on a Mac).
SYSTEM_FILE_NAMES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", RECORD})
#: What a killed write of maskwatch's leaves: the atomic writer's ``.x.jpg.1a2b3c4d.tmp``, a video's ``.x.partial.mp4``.
LEFTOVER_TEMPORARY = re.compile(r"^\..+\.([0-9a-f]{8}\.tmp|partial\.mp4)$")
SYSTEM_FOLDER_NAMES = frozenset({"__macosx", ".spotlight-v100", ".trashes", ".fseventsd"})


class ImageLoadError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""


def is_system_file(path: Path, root: Path | None = None) -> bool:
    """:func:`is_os_file`, or a copy ``detect --save`` wrote (:mod:`maskwatch.annotated_copies`): boxes drawn on a face
    are not a labelled face, nor a photo."""
    return is_os_file(path, root) or is_annotated_copy(Path(path))


def is_os_file(path: Path, root: Path | None = None) -> bool:
    """A file (or a file in a folder below ``root``) that the operating system made, not the user: left out of folder
    listings without a line, so that a folder copied from a Mac or Windows does not end in exit 1 (AppleDouble
    ``._x.jpg`` files hold no image, despite the name). So are maskwatch's record of annotated copies and what a
    killed write of its leaves."""
    path = Path(path)
    name = path.name.lower()
    if name in SYSTEM_FILE_NAMES or name.startswith("._") or LEFTOVER_TEMPORARY.match(name):
        return True
    folders = path.relative_to(root).parts[:-1] if root is not None else ()
    return any(is_system_folder(part) for part in folders)


def is_system_folder(name: str) -> bool:
    return name.lower() in SYSTEM_FOLDER_NAMES


def _forms(path: Path | str) -> set[str]:
    """The absolute path as written and with every link resolved: an output reached through a link is still the
    same output."""
    return {os.path.abspath(path), os.path.realpath(path)}


@dataclass(frozen=True)
class LeftOut:
    """Files and folders a listing leaves out (a run's own outputs inside what it reads), each in both forms (see
    :func:`_forms`): files by set lookup, folders by prefix."""

    files: frozenset[str] = frozenset()
    folders: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.files or self.folders)


def leaving_out(paths: Sequence[Path | str]) -> LeftOut:
    """``paths`` as a :class:`LeftOut`: an existing folder is left out with everything in it, anything else as a
    file."""
    folders = [path for path in paths if os.path.isdir(path)]
    files = [path for path in paths if not os.path.isdir(path)]
    return LeftOut(
        frozenset(form for path in files for form in _forms(path)),
        frozenset(form for path in folders for form in _forms(path)),
    )


def _under(form: str, folder: str) -> bool:
    return form.startswith(folder.rstrip(os.sep) + os.sep)


def is_left_out(path: Path | str, left_out: LeftOut) -> bool:
    """``path`` is one of ``left_out``'s files or folders or lies in one of its folders: how a listing leaves out
    the run's own outputs (``detect --json``; ``evaluate``'s JSON, pictures and gallery) when they lie inside it."""
    if not left_out:
        return False
    forms = _forms(path)
    if forms & left_out.files or forms & left_out.folders:
        return True
    return any(_under(form, folder) for form in forms for folder in left_out.folders)


def outputs_inside(folder: Path | str, outputs: Sequence[Path | str]) -> list[str]:
    """Those of ``outputs`` that lie strictly inside ``folder``; an output that is the folder itself or holds it is
    not among them (leaving it out would leave out everything)."""
    roots = _forms(folder)
    return [
        str(path)
        for path in outputs
        if any(_under(form, root) for form in _forms(path) for root in roots) and not _forms(path) & roots
    ]


def _to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to RGB uint8."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def load_rgb(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as an upright RGB uint8 array of shape (H, W, 3).

    Raises :class:`ImageLoadError` naming the file for missing, empty, truncated, non-image or
    oversized files, so callers can log one line and go on with the rest.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file")
        fast = load_plain_jpeg(str(path), max_pixels=max_pixels)
        if fast is not None:
            return fast
        return _decode_with_pil(path, str(path), max_pixels)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except OSError as error:
        raise ImageLoadError(f"{path}: unreadable image ({error})") from None


def decode_rgb(data: bytes, name: str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """:func:`load_rgb` for bytes already in memory (an upload); ``name`` is what error messages call it."""
    if not data:
        raise ImageLoadError(f"{name}: empty file")
    fast = decode_plain_jpeg(data, max_pixels=max_pixels) if data[:3] == b"\xff\xd8\xff" else None
    if fast is not None:
        return fast
    return _decode_with_pil(io.BytesIO(data), name, max_pixels)


def _decode_with_pil(source: Path | io.BytesIO, name: str, max_pixels: int) -> np.ndarray:
    """PIL's decode with the pixel limit checked from the header, before any pixel is decoded."""
    with decoding(name):  # a warning PIL raises now is about this file (see maskwatch.decode_warnings)
        return _decode_pil_image(source, name, max_pixels)


def _decode_pil_image(source: Path | io.BytesIO, name: str, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # We enforce our own, lower pixel limit below; PIL's warning would only repeat it. Changing the filters
            # also resets Python's record of warnings already shown once per place in the code, which is what
            # lets every damaged file have its own line (maskwatch.decode_warnings).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"{name}: {width}x{height} is over the {max_pixels:,}-pixel limit (decompression-bomb guard)"
                )
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb_uint8(image)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file PIL can read") from None
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
        raise ImageLoadError(f"{name}: unreadable image ({error})") from None
