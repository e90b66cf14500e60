"""Shared fixtures: tiny synthetic face images, class-folder trees, VOC scenes and a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = ("with_mask", "without_mask", "mask_incorrect")


def synthetic_face(label: str, size: int = 64, seed: int = 0) -> np.ndarray:
    """A skin-coloured oval on a random background; a blue band over the mouth (with_mask),
    over the chin only (mask_incorrect) or nothing (without_mask). Easy for a tiny model to learn."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size]
    oval = ((xs - size / 2) / (size * 0.32)) ** 2 + ((ys - size / 2) / (size * 0.42)) ** 2 <= 1
    image[oval] = (224, 172, 140)
    lower = oval & (ys > size * (0.55 if label == "with_mask" else 0.75))
    if label != "without_mask":
        image[lower] = (40, 90, 220)
    return image


def write_class_tree(root: Path, per_class: int = 6, size: int = 64, folder_names: dict | None = None) -> Path:
    names = folder_names or {label: label for label in LABELS}
    for k, label in enumerate(LABELS):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(synthetic_face(label, size, seed=1000 * k + i)).save(folder / f"{label}_{i}.png")
    return root


def write_voc_scene(root: Path, n_images: int = 2) -> Path:
    """Scenes of 3 synthetic faces each, with Pascal VOC annotations."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for n in range(n_images):
        canvas = np.full((120, 240, 3), 90, np.uint8)
        objects = []
        for j, label in enumerate(LABELS):
            x = 10 + 75 * j
            canvas[30:94, x : x + 64] = synthetic_face(label, 64, seed=n * 10 + j)
            name = "mask_weared_incorrect" if label == "mask_incorrect" else label
            objects.append(
                f"<object><name>{name}</name><bndbox><xmin>{x}</xmin><ymin>30</ymin>"
                f"<xmax>{x + 64}</xmax><ymax>94</ymax></bndbox></object>"
            )
        objects.append(
            "<object><name>with_mask</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        )
        Image.fromarray(canvas).save(root / "images" / f"scene{n}.jpg")
        (root / "annotations" / f"scene{n}.xml").write_text(
            f"<annotation><filename>scene{n}.png</filename>{''.join(objects)}</annotation>"
        )
    return root


@pytest.fixture
def class_tree(tmp_path: Path) -> Path:
    return write_class_tree(tmp_path / "faces")


@pytest.fixture
def voc_scenes(tmp_path: Path) -> Path:
    return write_voc_scene(tmp_path / "scenes")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained MobileNetV2 at 32 px: (checkpoint, fp32 ONNX). Enough to test the plumbing."""
    pytest.importorskip("torch")
    from maskwatch.export.onnx_export import export_onnx
    from maskwatch.training.checkpoint import save_checkpoint
    from maskwatch.training.models import build_model

    folder = tmp_path_factory.mktemp("tiny_model")
    model = build_model("mobilenet_v2", 3, pretrained=False, trainable_blocks=2).eval()
    meta = {
        "model": "mobilenet_v2",
        "labels": list(LABELS),
        "input_size": 32,
        "margin": 0.15,
        "trainable_blocks": 2,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "temperature": 1.0,
    }
    checkpoint = folder / "tiny.safetensors"
    save_checkpoint(model, meta, checkpoint)
    onnx_path = export_onnx(model, meta, folder / "tiny.onnx")
    return checkpoint, onnx_path


def pytest_collection_modifyitems(config, items):
    skip_shared = pytest.mark.skip(reason=f"{SHARED_DATA} not present")
    for item in items:
        if "shared_data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_shared)
    if os.environ.get("MASKWATCH_OFFLINE"):
        skip_net = pytest.mark.skip(reason="MASKWATCH_OFFLINE is set")
        for item in items:
            if "network" in item.keywords:
                item.add_marker(skip_net)


def assert_clear_error(result, message: str, code: int = 2) -> None:
    """A CLI failure the way a user should meet it: the documented exit status, the message, and no traceback (an
    uncaught exception also exits non-zero, so the status alone proves nothing)."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert message in result.output, result.output


@pytest.fixture(scope="session", autouse=True)
def _skip_centerface_when_offline():
    """Offline (MASKWATCH_OFFLINE) without a cached CenterFace file, tests that run the face detector skip."""
    reason = _centerface_missing_offline()
    if reason is None:
        yield
        return
    from maskwatch.runtime import detectors

    def skip(*_: object, **__: object):
        pytest.skip(reason)

    original, detectors.centerface_path = detectors.centerface_path, skip
    yield
    detectors.centerface_path = original


@pytest.fixture
def centerface_file() -> Path:
    """CenterFace's local file, for tests whose subprocesses run the detector; skips offline without one."""
    reason = _centerface_missing_offline()
    if reason is not None:
        pytest.skip(reason)
    from maskwatch.runtime.assets import centerface_path

    return centerface_path()


def _centerface_missing_offline() -> str | None:
    if not os.environ.get("MASKWATCH_OFFLINE"):
        return None
    from maskwatch.pypi_files import FetchError
    from maskwatch.runtime.assets import centerface_path

    try:
        centerface_path(allow_download=False)
    except FetchError as error:
        return f"MASKWATCH_OFFLINE is set and {error}"
    return None
