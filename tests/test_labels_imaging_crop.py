from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskwatch.crop import crop_face, square_region
from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.labels import UnknownLabelError, canonical_label


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mask_weared_incorrect", "mask_incorrect"),
        ("incorrect", "mask_incorrect"),
        ("correct", "with_mask"),
        ("mask", "with_mask"),
        ("no_mask", "without_mask"),
        ("With-Mask", "with_mask"),
    ],
)
def test_aliases_map_to_canonical_labels(name, expected):
    assert canonical_label(name) == expected


def test_unknown_label_lists_choices():
    with pytest.raises(UnknownLabelError, match="expected one of"):
        canonical_label("helmet")


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "RGB"])
def test_any_colour_mode_loads_as_rgb_uint8(tmp_path: Path, mode: str):
    path = tmp_path / f"img_{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png' if mode != 'I;16' else 'tif'}"
    base = Image.new("RGB", (20, 10), (200, 100, 50))
    image = Image.new("I;16", (20, 10), 40000) if mode == "I;16" else base.convert(mode)
    image.save(path)
    array = load_rgb(path)
    assert array.shape == (10, 20, 3) and array.dtype == np.uint8


def test_exif_rotation_is_applied(tmp_path: Path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20), (10, 20, 30)).save(path, exif=exif)
    assert load_rgb(path).shape == (40, 20, 3)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"this is not an image", "not an image"), (None, "unreadable"), ("missing", "no such file")],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, content, reason):
    path = tmp_path / "bad.jpg"
    if content is None:
        Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
        path.write_bytes(path.read_bytes()[:200])  # truncated
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_rgb(path)
    assert str(path) in str(info.value)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "huge.png"
    Image.new("L", (10000, 10000)).save(path)
    with pytest.raises(ImageLoadError, match="pixel limit"):
        load_rgb(path)


def test_crop_is_square_centred_and_padded_at_edges():
    image = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    region = square_region([0, 0, 20, 10], margin=0.5)
    assert region[2] - region[0] == pytest.approx(40)
    crop = crop_face(image, [0, 0, 20, 10], margin=0.5)
    assert crop.shape == (40, 40, 3)
    assert crop_face(image, [90, 90, 100, 100], margin=0.15, size=16).shape == (16, 16, 3)


def test_crop_outside_image_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        crop_face(np.zeros((10, 10, 3), np.uint8), [50, 50, 60, 60], margin=0.0)


def test_a_very_elongated_whole_face_file_crops_without_a_huge_padded_array():
    """A 1 x 100000 file taken as one face squares to a 130000 px region; padding it at full size needs 50 GB."""
    from maskwatch.crop import crop_whole_image

    for shape in ((1, 100_000, 3), (100_000, 2, 3)):
        crop = crop_whole_image(np.full(shape, 200, np.uint8), size=160)
        assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8
        assert (crop == 200).all()  # replicated border of a flat file is the same flat colour


def test_shrinking_before_padding_gives_the_same_crop_within_rounding(monkeypatch):
    import cv2

    from maskwatch import crop as crop_module

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8), (0, 0), 4)
    image[0], image[-1], image[:, 0], image[:, -1] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
    # ^ outermost rows and columns unlike the rest: the padded bands replicate exactly these pixels
    boxes = ([100, 100, 250, 200], [-50, 20, 200, 260], [300, 250, 420, 330], [-100, -80, 500, 380])
    exact = [crop_face(image, box, size=160) for box in boxes]
    monkeypatch.setattr(crop_module, "MAX_PADDED_PIXELS", 0)  # every region takes the shrink-first path
    shrunk = [crop_face(image, box, size=160) for box in boxes]
    np.testing.assert_array_equal(shrunk[0], exact[0])  # inside the image: the same resize
    for a, b in zip(exact[1:], shrunk[1:]):
        assert a.shape == b.shape == (160, 160, 3)
        assert np.abs(a.astype(int) - b).mean() < 3  # a border placed to the nearest small pixel


def test_a_warning_inside_a_decode_names_the_file_once_and_others_go_to_the_handler_there_was(monkeypatch, caplog):
    """The hook the CLI installs (maskwatch.decode_warnings): inside a decode, one log line per file and message;
    outside one, the warning reaches the handler that was there before, untouched."""
    import warnings

    from maskwatch import decode_warnings

    seen: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest, **kw: seen.append(str(message)))
    filters = list(warnings.filters)
    decode_warnings.name_files_in_decode_warnings()
    wrapper = warnings.showwarning
    decode_warnings.name_files_in_decode_warnings()  # idempotent: one wrapper, not two
    assert warnings.showwarning is wrapper and warnings.filters == filters  # the user's -W filters stay in charge
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("not about a file", UserWarning, stacklevel=1)
        with caplog.at_level("WARNING"), decode_warnings.decoding("x.jpg"):
            warnings.warn("tag past the end", UserWarning, stacklevel=1)
            warnings.warn("tag past the end", UserWarning, stacklevel=1)
    assert seen == ["not about a file"]
    assert [r.getMessage() for r in caplog.records] == ["x.jpg: tag past the end"]
