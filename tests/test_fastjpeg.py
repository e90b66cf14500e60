"""The OpenCV decode path gives PIL's pixels for ordinary JPEGs and hands every other file back to PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from maskwatch.fastjpeg import exif_orientation, load_plain_jpeg, plain_jpeg_size
from maskwatch.imaging import MAX_PIXELS, ImageLoadError, _to_rgb_uint8, load_rgb


def _pil(path: Path) -> np.ndarray:
    """What load_rgb returned before the fast path: PIL, EXIF transpose, RGB conversion."""
    with Image.open(path) as image:
        image.load()
        return _to_rgb_uint8(ImageOps.exif_transpose(image) or image)


def _photo(width: int = 97, height: int = 61) -> Image.Image:
    """Smooth gradients plus noise, so chroma subsampling and the IDCT are exercised."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], axis=2)
    noisy = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


@pytest.mark.parametrize(
    "options",
    [{}, {"quality": 95, "subsampling": 0}, {"quality": 60, "subsampling": 1}, {"progressive": True}, {"optimize": True}],
    ids=["default", "444", "422", "progressive", "optimized"],
)
def test_ordinary_jpeg_same_pixels_as_pil(tmp_path: Path, options: dict):
    path = tmp_path / "photo.jpg"
    _photo().save(path, **options)
    fast = load_plain_jpeg(str(path), max_pixels=MAX_PIXELS)
    assert fast is not None, "an ordinary JPEG should take the OpenCV path"
    assert fast.dtype == np.uint8 and fast.shape == (61, 97, 3)
    np.testing.assert_array_equal(fast, _pil(path))
    np.testing.assert_array_equal(load_rgb(path), _pil(path))


def test_exif_orientation_1_is_fast_and_other_orientations_fall_back(tmp_path: Path):
    for orientation, fast_expected in ((1, True), (3, False), (6, False), (8, False)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.jpg"
        _photo(40, 20).save(path, exif=exif)
        assert (load_plain_jpeg(str(path), max_pixels=MAX_PIXELS) is not None) is fast_expected
        np.testing.assert_array_equal(load_rgb(path), _pil(path))
    assert load_rgb(tmp_path / "o6.jpg").shape == (40, 20, 3)  # rotated upright, as before


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("cmyk.jpg", _photo().convert("CMYK")),
        ("gray.jpg", _photo().convert("L")),
        ("gray16.png", Image.new("I;16", (20, 10), 40000)),
        ("alpha.png", _photo().convert("RGBA")),
        ("rgb.png", _photo()),
    ],
)
def test_other_files_fall_back_to_pil(tmp_path: Path, name: str, image: Image.Image):
    path = tmp_path / name
    if image.mode == "RGBA":
        pixels = np.asarray(image).copy()
        pixels[..., 3] = 128
        image = Image.fromarray(pixels, "RGBA")
    image.save(path)
    assert load_plain_jpeg(str(path), max_pixels=MAX_PIXELS) is None
    np.testing.assert_array_equal(load_rgb(path), _pil(path))


def test_truncated_and_oversized_jpegs_keep_pil_errors(tmp_path: Path):
    path = tmp_path / "photo.jpg"
    _photo().save(path)
    data = path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:40])
    assert load_plain_jpeg(str(tmp_path / "cut.jpg"), max_pixels=MAX_PIXELS) is None
    with pytest.raises(ImageLoadError, match="cut.jpg"):
        load_rgb(tmp_path / "cut.jpg")
    assert load_plain_jpeg(str(path), max_pixels=100) is None
    with pytest.raises(ImageLoadError, match="pixel limit"):
        load_rgb(path, max_pixels=100)


def test_header_parsing_of_odd_bytes():
    assert plain_jpeg_size(b"") is None
    assert plain_jpeg_size(b"\xff\xd8\xff") is None
    assert plain_jpeg_size(b"\x89PNG\r\n\x1a\n") is None
    assert plain_jpeg_size(b"\xff\xd8\xff\xe1\x00\x10Exif\0\0II*\0\xff\xff\xff\xff") is None
    assert exif_orientation(b"MM") is None
    assert exif_orientation(b"II*\0\x08\0\0\0\0\0") == 1  # an empty IFD: no orientation, upright


def test_exif_orientation_stored_as_long_is_rotated_like_pil(tmp_path: Path):
    """Some writers store Orientation as a LONG instead of a SHORT; PIL rotates such files, so the fast path must
    not take them as upright."""
    import struct

    tiff = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 4, 1, 6) + struct.pack("<I", 0)
    assert exif_orientation(tiff) == 6
    path = tmp_path / "long.jpg"
    _photo(40, 20).save(path)
    app1 = b"Exif\0\0" + tiff
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    assert load_plain_jpeg(str(path), max_pixels=MAX_PIXELS) is None
    assert load_rgb(path).shape == (40, 20, 3)
    np.testing.assert_array_equal(load_rgb(path), _pil(path))
    rational = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x0112, 5, 1, 26) + struct.pack("<I", 0)
    assert exif_orientation(rational) not in (None, 1)  # a type not read here: left to PIL
