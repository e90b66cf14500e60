"""Training state, data hygiene and export under faults: kills mid-epoch, damaged checkpoints, early stops,
exclusion lists, split keys, unusable VOC boxes and the int8 parity gate."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import write_class_tree

pytest.importorskip("torch")

import torch  # noqa: E402

from maskwatch.data.index import parse_voc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def strict_json(path: Path):
    """json.loads that refuses NaN/Infinity (which json.dumps writes by default, and which is not JSON)."""

    def refuse(constant: str):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def tiny_config(root: Path, out: Path, **extra) -> Path:
    faces = write_class_tree(root / "faces", per_class=12, size=48)
    options = {
        "data": [str(faces)],
        "out": str(out),
        "pretrained": False,
        "input_size": 32,
        "epochs": 3,
        "batch_size": 8,
        "cache_views": 1,
        "trainable_blocks": 2,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        "threads": 1,
        **extra,
    }
    config = root / "train.yaml"
    config.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in options.items()) + "\n")
    return config


# --- weak test rewritten + item 13: SIGKILL a real training process mid-epoch, then resume --------------------------
@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_the_saved_epoch_and_optimizer(tmp_path: Path):
    out = tmp_path / "run"
    # cache_views 0: the whole network trains on fresh augmentations, so an epoch lasts long enough to be killed in.
    config = tiny_config(tmp_path, out, cache_views=0, epochs=3, batch_size=4, input_size=64)
    command = [sys.executable, "-m", "maskwatch.cli", "train", "--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = out / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # epoch 1 is saved; epoch 2 is under way
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    saved = torch.load(last, weights_only=True)
    assert saved["epoch"] == 1 and not saved["stopped_early"]
    assert [row["epoch"] for row in strict_json(out / "history.json")] == [1]

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {last} at epoch 2" in done.stderr
    history = strict_json(out / "history.json")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0] == json.loads(json.dumps(saved["history"][0]).replace("NaN", "null"))  # epoch 1 was not redone
    # Adam counts its steps: had the saved optimizer state been dropped, epochs 2-3 would start the count afresh.
    train_rows = sum(1 for line in (out / "splits.csv").read_text().splitlines()[1:] if line.endswith(",train"))
    steps_per_epoch = math.ceil(train_rows / 4)
    final = torch.load(last, weights_only=True)
    steps = {int(state["step"]) for state in final["optimizer"]["state"].values()}
    assert steps == {3 * steps_per_epoch}


# --- item 14: an early-stopped run stays stopped; item 13: history.json is strict JSON ------------------------------
def test_an_early_stopped_run_does_not_train_again(tmp_path: Path, caplog):
    from maskwatch.training.config import load_config
    from maskwatch.training.train import train

    out = tmp_path / "run"
    config = load_config(tiny_config(tmp_path, out, epochs=6, patience=1, lr=0.0))  # lr 0: val F1 never improves
    caplog.set_level(logging.INFO)
    train(config)
    history = strict_json(out / "history.json")  # NaN (train_macro_f1) is written as null
    assert [row["epoch"] for row in history] == [1, 2] and history[0]["train_macro_f1"] is None
    assert torch.load(out / "last.pt", weights_only=True)["stopped_early"] is True
    caplog.clear()
    train(config)
    assert [row["epoch"] for row in strict_json(out / "history.json")] == [1, 2]
    assert "already stopped early at epoch 2" in caplog.text


def test_a_damaged_last_checkpoint_is_one_warning_and_a_fresh_start(tmp_path: Path, caplog):
    from maskwatch.training.config import load_config
    from maskwatch.training.train import train

    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"PK\x03\x04 cut off by a full disk")
    caplog.set_level(logging.INFO)
    train(load_config(tiny_config(tmp_path, out, epochs=1)))
    assert "cannot resume from it" in caplog.text and "starting from epoch 1" in caplog.text
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


# --- item 18: exclusions by exact path, with a warning for entries that match nothing ---------------------------------
def test_exclusions_match_exact_paths_and_report_unmatched_entries(tmp_path: Path, monkeypatch, caplog):
    from PIL import Image
    from tests.conftest import synthetic_face

    from maskwatch.training.config import TrainConfig
    from maskwatch.training.train import prepare_data

    monkeypatch.chdir(tmp_path)
    for label in ("with_mask", "without_mask"):
        for name in ("1.png", "11.png", "21.png"):
            (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(synthetic_face(label, 32, seed=len(name))).save(tmp_path / "data" / label / name)
    listing = tmp_path / "exclusions.txt"
    listing.write_text("data/with_mask/1.png  # a reason\n./data/with_mask/21.png\ndata/with_mask/missing.png\n")
    caplog.set_level(logging.INFO)
    config = TrainConfig(data=("data",), out=str(tmp_path / "run"), input_size=16, exclude=(str(listing),))
    loaded, _, _ = prepare_data(config)
    kept = sorted(f"{s.path.parent.name}/{s.path.name}" for s in loaded.samples)
    # A suffix test would also drop with_mask/11.png (ends with 1.png); the ./ spelling must still match 21.png.
    assert kept == ["with_mask/11.png", "without_mask/1.png", "without_mask/11.png", "without_mask/21.png"]
    assert "data/with_mask/missing.png matches no file in the data" in caplog.text


def test_a_file_named_in_two_exclusion_lists_is_not_reported_as_unmatched(tmp_path: Path, monkeypatch, caplog):
    """A recipe's list plus a generated one (benchmarks/learning_curve.py) may name one photo twice, spelled two ways."""
    from PIL import Image
    from tests.conftest import synthetic_face

    from maskwatch.training.config import TrainConfig
    from maskwatch.training.train import prepare_data

    monkeypatch.chdir(tmp_path)
    for label in ("with_mask", "without_mask"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for name in ("1.png", "2.png"):
            Image.fromarray(synthetic_face(label, 32, seed=len(name))).save(tmp_path / "data" / label / name)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("data/with_mask/1.png  # a reason\n")
    second.write_text(f"{(tmp_path / 'data/with_mask/1.png').resolve()}  # the same file, absolute\n")
    caplog.set_level(logging.INFO)
    config = TrainConfig(data=("data",), out=str(tmp_path / "run"), input_size=16, exclude=(str(first), str(second)))
    loaded, _, _ = prepare_data(config)
    assert sorted(f"{s.path.parent.name}/{s.path.name}" for s in loaded.samples) == [
        "with_mask/2.png",
        "without_mask/1.png",
        "without_mask/2.png",
    ]
    assert "matches no file" not in caplog.text


def test_split_keys_do_not_depend_on_how_the_data_folder_is_spelled(tmp_path: Path, monkeypatch):
    from maskwatch.training.config import TrainConfig
    from maskwatch.training.train import prepare_data

    faces = write_class_tree(tmp_path / "faces", per_class=10, size=32)
    monkeypatch.chdir(faces)
    splits = []
    for n, spelling in enumerate([str(faces), ".", "../faces", "./"]):
        loaded, split, _ = prepare_data(TrainConfig(data=(spelling,), out=str(tmp_path / f"run{n}"), input_size=16))
        splits.append(sorted((s.path.resolve().name, part) for s, part in zip(loaded.samples, split)))
        groups = [line.split(",")[-2] for line in (tmp_path / f"run{n}" / "splits.csv").read_text().splitlines()[1:]]
        assert all(group.startswith("faces/") for group in groups), groups[:3]
    assert all(s == splits[0] for s in splits)


def test_split_keys_of_the_shipped_manifest_stay_the_same():
    """Every group key in recipes/default_splits.csv.gz is what the key function gives for its files today."""
    import csv

    from maskwatch.data.loading import _source_key

    recipe_roots = [Path(f"../shared/data/{name}") for name in ("chandrika", "maskedface-net", "scenes", "scenes-ilc")]
    with gzip.open(REPO / "recipes" / "default_splits.csv.gz", "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cwd = os.getcwd()
    try:
        os.chdir(REPO)  # the manifest's paths are relative to the repository root
        keys = {_source_key(Path(row["path"]), recipe_roots) for row in rows}
    finally:
        os.chdir(cwd)
    assert {row["group"] for row in rows} <= keys


# --- item 16: unusable VOC boxes are skipped with one line each -------------------------------------------------------
@pytest.mark.parametrize(
    "box, reason",
    [
        (("-5", "10", "40", "50"), "negative"),
        (("10", "10", "500", "50"), "outside the 200x100 image"),
        (("40", "10", "10", "50"), "inverted or empty"),
        (("10", "nan", "40", "50"), "NaN or infinite"),
        (("10", "10", "inf", "50"), "NaN or infinite"),
        (("10", "10", "", "50"), "missing"),
    ],
)
def test_unusable_voc_boxes_are_skipped_with_a_reason(tmp_path: Path, box, reason):
    xml = tmp_path / "a.xml"
    good = "<object><name>with_mask</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"
    bad = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    xml.write_text(
        "<annotation><filename>a.jpg</filename><size><width>200</width><height>100</height></size>"
        f"{good}<object><name>without_mask</name><bndbox>{bad}</bndbox></object></annotation>"
    )
    problems: list[str] = []
    _, objects = parse_voc(xml, problems)
    assert [o.name for o in objects] == ["with_mask"]
    assert len(problems) == 1 and reason in problems[0] and "without_mask" in problems[0]


# --- item 20 + weak test rewritten: the int8 gate at its real threshold, on enough held-out faces ---------------------
def test_parity_gate_at_its_threshold_and_minimum_count():
    from maskwatch.export.quantize import Parity, parity_refusal

    def parity(n: int, int8_correct: int) -> Parity:
        return Parity(n, 180 / 200, int8_correct / 200, 1.0) if n == 200 else Parity(n, 0.9, 0.9, 1.0)

    assert parity_refusal(parity(200, 179), max_drop=0.5) is None  # 0.5 points lost: allowed
    refusal = parity_refusal(parity(200, 178), max_drop=0.5)  # 1.0 point lost
    assert refusal and "dropped 1.00 points on 200 held-out faces" in refusal
    assert "only 99 held-out faces" in parity_refusal(parity(99, 0), max_drop=0.5)
    assert parity_refusal(parity(100, 0), max_drop=0.5) is None
