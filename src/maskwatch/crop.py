"""The one face-crop function, shared by training (annotated boxes) and inference (detections).

Using the same code on both sides keeps the classifier's input distribution the same at train and
run time: a square region centred on the box, enlarged by ``margin`` of the box side on each side,
padded by edge replication where it leaves the image, resized to ``size``.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Margin added on each side of a face box, as a fraction of the box's longer side.
DEFAULT_MARGIN = 0.15


def square_region(box: np.ndarray | list[float], margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Return the square ``[x1, y1, x2, y2]`` (floats) that the crop takes from the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half = side / 2.0
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def crop_face(
    image: np.ndarray,
    box: np.ndarray | list[float],
    *,
    margin: float = DEFAULT_MARGIN,
    size: int | None = None,
) -> np.ndarray:
    """Cut the square face region out of ``image`` (H, W, C) and optionally resize it to ``size``.

    Parts of the region outside the image are filled by replicating the border, so a face at the
    edge of the frame still gives a full, centred crop.
    """
    height, width = image.shape[:2]
    rx1, ry1, rx2, ry2 = square_region(box, margin)
    ix1, iy1 = int(np.floor(rx1)), int(np.floor(ry1))
    ix2, iy2 = max(int(np.ceil(rx2)), ix1 + 1), max(int(np.ceil(ry2)), iy1 + 1)
    pad_left, pad_top = max(0, -ix1), max(0, -iy1)
    pad_right, pad_bottom = max(0, ix2 - width), max(0, iy2 - height)
    inner = image[max(0, iy1) : min(height, iy2), max(0, ix1) : min(width, ix2)]
    if inner.size == 0:
        raise ValueError(f"face box {list(box)} lies outside the {width}x{height} image")
    if size is not None and (ix2 - ix1) * (iy2 - iy1) > MAX_PADDED_PIXELS:
        return _shrink_then_pad(inner, (pad_left, pad_top, pad_right, pad_bottom), size)
    if pad_left or pad_top or pad_right or pad_bottom:
        inner = cv2.copyMakeBorder(inner, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
    if size is None:
        return np.ascontiguousarray(inner)
    return resize_square(inner, size)


#: A square region over this many pixels is shrunk before its border is padded: a 1 x 100000 file taken as one face
#: would otherwise be padded into a 130000 x 130000 array (50 GB) just to be resized to 160 x 160.
MAX_PADDED_PIXELS = 4096 * 4096


def _shrink_then_pad(inner: np.ndarray, pads: tuple[int, int, int, int], size: int) -> np.ndarray:
    """:func:`crop_face`'s result for a huge region without padding it at full size: the part inside the image is
    resized, and each padded band is the image's outermost row or column resized along the band (what replicating
    that row and then resizing gives), each corner its corner pixel. Equal to the exact path within a pixel of
    rounding at the band edges."""
    left, top, right, bottom = pads
    height, width = inner.shape[:2]
    scale = size / max(left + width + right, top + height + bottom)
    inner_w, inner_h = min(size, max(1, round(width * scale))), min(size, max(1, round(height * scale)))
    x0, y0 = min(round(left * scale), size - inner_w), min(round(top * scale), size - inner_h)
    x1, y1 = x0 + inner_w, y0 + inner_h
    out = np.empty((size, size, *inner.shape[2:]), inner.dtype)

    def along(strip: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        resized = cv2.resize(strip, shape, interpolation=cv2.INTER_AREA)
        return resized.reshape(shape[1], shape[0], *inner.shape[2:])

    out[y0:y1, x0:x1] = along(inner, (inner_w, inner_h))
    out[:y0, x0:x1] = along(inner[:1], (inner_w, 1))
    out[y1:, x0:x1] = along(inner[-1:], (inner_w, 1))
    out[y0:y1, :x0] = along(inner[:, :1], (1, inner_h))
    out[y0:y1, x1:] = along(inner[:, -1:], (1, inner_h))
    out[:y0, :x0], out[:y0, x1:] = inner[0, 0], inner[0, -1]
    out[y1:, :x0], out[y1:, x1:] = inner[-1, 0], inner[-1, -1]
    return out


def crop_whole_image(image: np.ndarray, *, margin: float = DEFAULT_MARGIN, size: int | None = None) -> np.ndarray:
    """Turn a file that is already one face (a class-folder image, a crop cut at an annotated box) into the crop the
    runtime would cut around that face: the whole file is taken as the face box, squared and given the same margin,
    with the border replicated where the file ends. Stretching the file to a square instead would squash the 57 % of
    chandrika files that are over 20 % off square into faces the runtime never sees."""
    height, width = image.shape[:2]
    return crop_face(image, [0.0, 0.0, float(width), float(height)], margin=margin, size=size)


#: How a whole-face file becomes a square crop; ``crop`` is the runtime's geometry and the default since issue 9.
WHOLE_IMAGE_GEOMETRIES = ("crop", "stretch")


def whole_image_crop(image: np.ndarray, *, geometry: str, margin: float, size: int) -> np.ndarray:
    """A whole-face file at ``size`` x ``size`` in the named geometry (``stretch``: the old behaviour, for old models)."""
    if geometry == "stretch":
        return resize_square(image, size)
    if geometry == "crop":
        return crop_whole_image(image, margin=margin, size=size)
    raise ValueError(f"whole-image geometry {geometry!r}: choose one of {', '.join(WHOLE_IMAGE_GEOMETRIES)}")


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square crop to ``size`` x ``size`` (a non-square input is stretched: use :func:`crop_whole_image`)."""
    interpolation = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)
