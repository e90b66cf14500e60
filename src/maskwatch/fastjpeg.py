"""Decoding ordinary JPEGs with OpenCV, which is faster than PIL here, and only where it gives PIL's pixels.

The header is read first (a few hundred bytes): only baseline or progressive 8-bit JPEGs with three components, no
Adobe colour transform marker and no EXIF rotation qualify. Anything else (EXIF-rotated, CMYK, grayscale, 12-bit,
PNG, a failed or odd decode) returns None, and :func:`maskwatch.imaging.load_rgb` uses PIL as before, with its
clear errors and its EXIF handling. ``tests/test_fastjpeg.py`` checks that both paths give the same pixels.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

#: Start-of-frame markers of 8-bit Huffman JPEGs (baseline, extended, progressive); others (lossless, arithmetic) go to PIL.
_SOF = frozenset({0xC0, 0xC1, 0xC2})
#: Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_FLAGS = (cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB) | cv2.IMREAD_IGNORE_ORIENTATION


def exif_orientation(exif: bytes) -> int | None:
    """The EXIF Orientation tag (0x0112) of an APP1 payload after ``Exif\\0\\0``: None when the payload is unreadable,
    1 when the tag is absent, 0 when it is stored in a type this reader does not take."""
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return None
    order = "<" if exif[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", exif, 4)
    if ifd + 2 > len(exif):
        return None
    (count,) = struct.unpack_from(order + "H", exif, ifd)
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(exif):
            return None
        tag, kind, _, value = struct.unpack_from(order + "HHI4s", exif, entry)
        if tag == 0x0112:  # SHORT as the standard says; some writers store a LONG, which PIL reads as well
            if kind in (3, 4):
                return struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]
            return 0  # present in a type not read here: not 1, so the caller leaves the file to PIL
    return 1


def plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when ``data`` is a JPEG that OpenCV decodes exactly as PIL does, else None.

    Walks the markers up to the start of frame; refuses EXIF orientation other than 1 (PIL rotates it), Adobe APP14
    (colour transform choices), and any component count but three.
    """
    if data[:3] != b"\xff\xd8\xff":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\0\0":
            try:
                orientation = exif_orientation(body[6:])
            except struct.error:
                return None
            if orientation not in (None, 1):
                return None
        elif marker == 0xEE:
            return None
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if marker not in _SOF or len(body) < 6:
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", body)
            return (width, height) if precision == 8 and components == 3 and width and height else None
        elif marker == 0xDA:  # scan before any frame header: not a file we understand
            return None
        pos += 2 + length
    return None


def decode_plain_jpeg(data: bytes, *, max_pixels: int) -> np.ndarray | None:
    """RGB uint8 pixels of a plain JPEG (see :func:`plain_jpeg_size`) decoded by OpenCV, or None to use PIL.

    Oversized images return None too, so PIL's path raises the usual decompression-bomb error.
    """
    size = plain_jpeg_size(data)
    if size is None or size[0] * size[1] > max_pixels:
        return None
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS)
    except cv2.error:
        return None
    if image is None or image.shape != (size[1], size[0], 3) or image.dtype != np.uint8:
        return None
    return image if _IMREAD_RGB is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_plain_jpeg(path: str, *, max_pixels: int) -> np.ndarray | None:
    """:func:`decode_plain_jpeg` of a file; None (use PIL, which explains the problem) for anything unusual."""
    try:
        with open(path, "rb") as handle:
            if handle.read(3) != b"\xff\xd8\xff":
                return None
            data = b"\xff\xd8\xff" + handle.read()
    except OSError:
        return None
    return decode_plain_jpeg(data, max_pixels=max_pixels)
