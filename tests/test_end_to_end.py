"""A tiny train -> evaluate -> export -> int8 -> runtime run on synthetic faces (seconds, CPU)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from tests.conftest import assert_clear_error, write_class_tree, write_voc_scene  # noqa: E402

from maskwatch.cli import app  # noqa: E402
from maskwatch.runtime.classifier import OnnxMaskClassifier  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    faces = write_class_tree(root / "faces", per_class=14, size=48)
    scenes = write_voc_scene(root / "scenes", n_images=3)
    config = root / "train.yaml"
    config.write_text(
        f"data: [{faces}, {scenes}]\nout: {root / 'run'}\nmodel: mobilenet_v2\npretrained: false\ninput_size: 32\n"
        "epochs: 2\nbatch_size: 16\ncache_views: 1\ntrainable_blocks: 3\nval_fraction: 0.25\ntest_fraction: 0.25\n"
    )
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_training_writes_every_artifact(trained_run: Path):
    for name in (
        "best.safetensors",
        "last.pt",
        "metrics.csv",
        "history.json",
        "curves.png",
        "splits.csv",
        "report.json",
        "model.onnx",
        "confusion_all.png",
        "gradcam_test.png",
    ):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "report.json").read_text())
    assert {"temperature", "logit_offsets", "val_ece_before", "val_ece_after", "test", "test_focus"} <= set(report)
    for row in report["test_focus"]["all"].values():  # the explain --report layout, per true class
        assert row["n"] > 0 and 0 <= row["median_focus"] <= 1
    header = (trained_run / "metrics.csv").read_text().splitlines()[0]
    for column in (
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_macro_f1",
        "val_precision_with_mask",
        "val_recall_mask_incorrect",
    ):
        assert column in header


# Resuming is tested by killing a real training process: test_reliability_training.py.


def test_evaluate_json_has_the_stable_keys(trained_run: Path, tmp_path: Path):
    data = write_class_tree(tmp_path / "eval", per_class=3, size=40)
    (data / "with_mask" / "corrupt.jpg").write_bytes(b"nope")
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", str(data), "--model", str(trained_run / "model.onnx"), "--json", str(out)])
    assert_clear_error(result, "corrupt.jpg: not an image file PIL can read", code=1)  # 1: some inputs failed
    report = json.loads(out.read_text())
    assert {"n", "accuracy", "macro_f1", "per_class", "labels", "confusion_matrix"} <= set(report)
    assert report["n"] == 9 and report["skipped"] == 1
    assert (tmp_path / "confusion_matrix.png").is_file()


def test_evaluate_partial_class_tree_and_checkpoint_model(trained_run: Path, tmp_path: Path):
    data = write_class_tree(tmp_path / "eval", per_class=2, size=40)
    import shutil

    shutil.rmtree(data / "mask_incorrect")
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", str(data), "--model", str(trained_run / "best.safetensors"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["labels"] == ["with_mask", "without_mask", "mask_incorrect"]


def test_export_int8_at_the_real_threshold_on_held_out_faces(trained_run: Path, tmp_path: Path):
    """The default gate (0.5 points, >= 100 held-out faces), decided on faces the calibration never saw."""
    import re

    calibration = write_class_tree(tmp_path / "calibration", per_class=70, size=40)  # 210 faces: 105 + 105
    out = tmp_path / "exported.onnx"
    args = ["export", "--model", str(trained_run / "best.safetensors"), "--int8", "--out", str(out)]
    result = runner.invoke(app, [*args, "--calibration", str(calibration)])
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    found = re.search(
        r"calibrated on (\d+) faces, checked on (\d+) held-out faces: fp32 acc ([\d.]+), int8 acc ([\d.]+)", result.output
    )
    assert found, result.output
    calibrated, held_out, fp32_acc, int8_acc = int(found[1]), int(found[2]), float(found[3]), float(found[4])
    assert (calibrated, held_out) == (105, 105)  # disjoint halves of the 210 faces
    int8 = tmp_path / "exported_int8.onnx"
    if 100 * (fp32_acc - int8_acc) <= 0.5 + 1e-6:
        assert result.exit_code == 0, result.output
        classifier = OnnxMaskClassifier(int8)
        calibration_record = classifier.info.extra["calibration"]
        # auto keeps min-max or percentile by KL on this CPU; percentile's histograms take whole batches of 32 only
        expected = 105 if calibration_record["method"] == "minmax" else 105 // 32 * 32
        assert classifier.info.extra["format"] == "int8" and calibration_record["images"] == expected
        assert int8.stat().st_size < out.stat().st_size
    else:
        assert_clear_error(result, "int8 model not kept")
        assert not int8.exists()


def test_export_refuses_int8_without_enough_held_out_faces(trained_run: Path, tmp_path: Path):
    out = tmp_path / "strict.onnx"
    result = runner.invoke(app, ["export", "--model", str(trained_run / "best.safetensors"), "--int8", "--out", str(out)])
    assert_clear_error(result, "held-out faces to check int8 against fp32 (need 100; see --min-parity-faces)")
    assert not (tmp_path / "strict_int8.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    result = runner.invoke(
        app, ["export", "--model", str(trained_run / "best.safetensors"), "--int8", "--out", str(out), "--min-parity-faces", "1"]
    )
    assert result.exit_code in (0, 2) and "held-out faces" in result.output  # the run's test rows, never its val rows


def test_export_refusals(trained_run: Path, tmp_path: Path):
    not_a_checkpoint = tmp_path / "x.safetensors"
    not_a_checkpoint.write_bytes(b"junk")
    result = runner.invoke(app, ["export", "--model", str(not_a_checkpoint)])
    assert_clear_error(result, "x.safetensors: not a safetensors checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(
        app,
        [
            "export",
            "--model",
            str(trained_run / "best.safetensors"),
            "--int8",
            "--out",
            str(tmp_path / "m.onnx"),
            "--calibration",
            str(empty),
        ],
    )
    assert_clear_error(result, "has no images; give --calibration with real face crops")


def test_export_of_a_mismatched_checkpoint_is_refused(trained_run: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    from maskwatch.training.checkpoint import read_meta

    meta = read_meta(trained_run / "best.safetensors")
    tensors = load_file(str(trained_run / "best.safetensors"))
    wrong = tmp_path / "wrong.safetensors"
    save_file(tensors, str(wrong), metadata={"maskwatch": json.dumps({**meta, "model": "resnet18"})})
    result = runner.invoke(app, ["export", "--model", str(wrong)])
    assert_clear_error(result, "wrong.safetensors: weights do not match resnet18")


def fine_tune(faces: Path, init: Path, out: Path, *options: str):
    return runner.invoke(app, ["train", "--data", str(faces), "--init", str(init), "--epochs", "1", "--out", str(out), *options])


def test_fine_tune_from_a_checkpoint_on_new_class_folders(trained_run: Path, tmp_path: Path):
    """`train --init CKPT` continues from a trained model on a user's own crops (the site fine-tuning loop)."""
    faces = write_class_tree(tmp_path / "site", per_class=10, size=40)
    out = tmp_path / "site_run"
    options = ("--model", "mobilenet_v2", "--input-size", "32", "--cache-views", "1", "--batch-size", "16")
    result = fine_tune(faces, trained_run / "best.safetensors", out, *options)
    assert result.exit_code == 0, result.output
    assert (out / "best.safetensors").is_file() and (out / "model.onnx").is_file()


def test_fine_tune_from_a_mismatched_checkpoint_is_refused(trained_run: Path, tmp_path: Path):
    faces = write_class_tree(tmp_path / "site", per_class=4, size=40)
    result = fine_tune(faces, trained_run / "best.safetensors", tmp_path / "r", "--model", "resnet18")
    assert_clear_error(result, "--init checkpoint is a mobilenet_v2")


def test_the_run_config_json_reads_back_as_the_config_it_ran(trained_run: Path):
    from maskwatch.training.config import load_config

    assert load_config(trained_run / "config.json") == load_config(trained_run.parent / "train.yaml")
