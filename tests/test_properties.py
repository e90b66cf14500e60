"""Property-based tests (hypothesis): whatever bytes or text arrive, each parser gives a usable result or its one
documented error, never another exception. Bounded: few examples, a deadline per example, no network."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from maskwatch.data.index import box_problem, parse_voc
from maskwatch.imaging import ImageLoadError, load_rgb
from maskwatch.labels import LABELS
from maskwatch.runtime.scene_eval import score_scenes
from maskwatch.runtime.scenes import read_predictions
from maskwatch.sources import STREAM_PREFIXES, describe_source, iter_frames

BOUNDED = settings(max_examples=40, deadline=3000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@contextlib.contextmanager
def scratch_file(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        yield path


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


VALID_IMAGES = [_png("RGB", (7, 5)), _png("L", (3, 9)), _png("RGBA", (4, 4)), _png("I;16", (5, 5))]


@st.composite
def damaged_images(draw) -> bytes:
    """A valid small PNG with random bytes overwritten and/or the tail cut off."""
    data = bytearray(draw(st.sampled_from(VALID_IMAGES)))
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


# --- image decoding ---------------------------------------------------------------------------------------------------
@BOUNDED
@given(data=st.one_of(st.binary(max_size=512), damaged_images()), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif"]))
def test_any_bytes_load_as_rgb_uint8_or_one_image_error(data: bytes, suffix: str):
    with scratch_file(data, suffix) as path:
        try:
            image = load_rgb(path)
        except ImageLoadError as error:
            assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# --- VOC parsing -------------------------------------------------------------------------------------------------------
coordinate = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-50, 500).map(str),
    st.text(alphabet="0123456789.-eE xinaf", max_size=8),
)


@st.composite
def voc_documents(draw) -> str:
    objects = []
    for _ in range(draw(st.integers(0, 4))):
        values = [draw(coordinate) for _ in range(4)]
        box = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), values))
        name = draw(st.sampled_from(["with_mask", "without_mask", "mask_weared_incorrect", "cat", ""]))
        objects.append(f"<object><name>{name}</name><bndbox>{box}</bndbox></object>")
    size = draw(st.sampled_from(["", "<size><width>200</width><height>100</height></size>", "<size><width>0</width></size>"]))
    return f"<annotation><filename>a.jpg</filename>{size}{''.join(objects)}</annotation>"


@BOUNDED
@given(document=st.one_of(voc_documents(), st.text(max_size=200)))
def test_voc_files_give_only_usable_boxes_or_one_value_error(document: str):
    with scratch_file(document.encode("utf-8", "surrogatepass"), ".xml") as path:
        problems: list[str] = []
        try:
            _, objects = parse_voc(path, problems)
        except ValueError as error:
            assert str(error).startswith(str(path))
            return
        for obj in objects:
            assert box_problem(obj.box, None) is None
            x1, y1, x2, y2 = obj.box
            assert all(math.isfinite(v) and v >= 0 for v in obj.box) and x1 < x2 and y1 < y2
        assert all(p.startswith(str(path)) for p in problems)


# --- prediction files ----------------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
face_records = st.fixed_dictionaries(
    {},
    optional={
        "box": st.one_of(st.lists(st.one_of(st.floats(), st.integers(-10, 300)), max_size=5), json_values),
        "label": st.one_of(st.sampled_from([*LABELS, "mask", "no_mask", "dog"]), json_values),
        "score": st.one_of(st.floats(), json_values),
        "face_score": st.one_of(st.floats(0, 1), json_values),
        "probs": st.one_of(st.dictionaries(st.sampled_from(LABELS), st.floats(0, 1)), json_values),
    },
)
prediction_lines = st.one_of(
    st.builds(lambda faces: json.dumps({"source": "a.jpg", "faces": faces}), st.lists(face_records, max_size=3)),
    json_values.map(json.dumps),
    st.text(max_size=60).filter(lambda t: "\n" not in t and "\r" not in t),
)


@BOUNDED
@given(lines=st.lists(prediction_lines, max_size=6), cut=st.integers(0, 40))
def test_prediction_files_never_raise_and_keep_only_valid_faces(lines: list[str], cut: int):
    text = "\n".join(lines)
    text = text[: max(0, len(text) - cut)]  # a file cut off mid-write
    truth = {"a": (Path("a.jpg"), [("with_mask", np.array([0, 0, 10, 10.0]))])}
    with scratch_file(text.encode("utf-8", "surrogatepass"), ".jsonl") as path:
        found, problems = read_predictions(path, truth)
    for face in found["a"]:
        assert face["label"] in LABELS and len(face["box"]) == 4 and all(math.isfinite(v) for v in face["box"])
        assert 0 <= face["score"] <= 1
    assert all(p.startswith(f"{path}:") for p in problems)
    score_scenes({"a": truth["a"][1]}, found)  # and the scorer takes whatever was kept


# --- config files ---------------------------------------------------------------------------------------------------------
def _config_fields() -> list[str]:
    pytest.importorskip("yaml")
    import dataclasses

    from maskwatch.training.config import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=False), st.text(max_size=10))


@BOUNDED
@given(data=st.data())
def test_config_files_load_or_raise_one_config_error(data):
    import yaml

    from maskwatch.training.config import ConfigError, TrainConfig, load_config

    keys = st.one_of(st.sampled_from(_config_fields()), st.text(min_size=1, max_size=10))
    mapping = data.draw(st.dictionaries(keys, st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=5))
    text = data.draw(st.one_of(st.just(yaml.safe_dump(mapping)), st.text(max_size=80)))
    raw = text.encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        raw = raw + data.draw(st.binary(max_size=8))  # not always valid UTF-8
    with scratch_file(raw, ".yaml") as path:
        try:
            config = load_config(path)  # what `train --config` calls
        except ConfigError as error:
            assert str(error).startswith(str(path))
            return
    assert isinstance(config, TrainConfig)


# --- source strings -------------------------------------------------------------------------------------------------------
def _local_source(text: str) -> bool:
    """Strings that stay inside the scratch folder: no webcams, streams, absolute paths, parents or home."""
    lowered = text.lower()
    return not (
        text.strip().isdigit()
        or lowered.startswith(STREAM_PREFIXES)
        or text.startswith(("/", "~"))
        or ".." in text
        or "\x00" in text
    )


@BOUNDED
@given(
    source=st.one_of(st.sampled_from(["*", "*.txt", "**", ".", "b.txt"]), st.text(max_size=20)).filter(_local_source),
    with_image=st.booleans(),
)
def test_any_source_string_yields_frames_or_errors_never_an_exception(source: str, with_image: bool):
    assert describe_source(source) in {"webcam", "stream", "video", "image", "folder", "glob"}
    with tempfile.TemporaryDirectory() as folder:
        if with_image:
            Image.new("RGB", (8, 8)).save(Path(folder) / "a.png")
        (Path(folder) / "b.txt").write_text("x")
        before = os.getcwd()
        os.chdir(folder)
        try:
            frames = list(iter_frames(source))
        finally:
            os.chdir(before)
    assert frames, "every source yields at least one frame or one error"
    for frame in frames:
        assert (frame.image is None) != (frame.error is None)
