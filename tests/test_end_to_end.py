"""A tiny train -> evaluate -> export -> int8 -> runtime run on synthetic faces (seconds, CPU)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from tests.conftest import write_class_tree, write_voc_scene  # noqa: E402

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
    assert {"temperature", "val_ece_before", "val_ece_after", "test", "test_focus"} <= set(report)
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


def test_resume_continues_from_the_last_epoch(trained_run: Path, tmp_path: Path):
    import shutil

    from maskwatch.training.config import load_config
    from maskwatch.training.train import train

    config = load_config(trained_run.parent / "train.yaml")
    resumed = tmp_path / "resumed"
    shutil.copytree(trained_run, resumed)
    report = train(config.replace(out=str(resumed), epochs=3))
    history = json.loads((resumed / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert report["split_sizes"]["train"] > 0


def test_evaluate_json_has_the_stable_keys(trained_run: Path, tmp_path: Path):
    data = write_class_tree(tmp_path / "eval", per_class=3, size=40)
    (data / "with_mask" / "corrupt.jpg").write_bytes(b"nope")
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", str(data), "--model", str(trained_run / "model.onnx"), "--json", str(out)])
    assert result.exit_code == 0, result.output
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


def test_export_int8_then_load_in_runtime(trained_run: Path, tmp_path: Path):
    out = tmp_path / "exported.onnx"
    result = runner.invoke(
        app, ["export", "--model", str(trained_run / "best.safetensors"), "--int8", "--out", str(out), "--max-drop", "100"]
    )
    assert result.exit_code == 0, result.output
    int8 = tmp_path / "exported_int8.onnx"
    classifier = OnnxMaskClassifier(int8)
    assert classifier.info.extra["format"] == "int8"
    assert classifier.info.extra["calibration"]["images"] > 0
    assert int8.stat().st_size < out.stat().st_size


def test_export_refuses_an_int8_model_that_lost_accuracy(trained_run: Path, tmp_path: Path):
    out = tmp_path / "strict.onnx"
    result = runner.invoke(
        app, ["export", "--model", str(trained_run / "best.safetensors"), "--int8", "--out", str(out), "--max-drop", "-1"]
    )
    assert result.exit_code == 1
    assert not (tmp_path / "strict_int8.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_export_refusals(trained_run: Path, tmp_path: Path):
    not_a_checkpoint = tmp_path / "x.safetensors"
    not_a_checkpoint.write_bytes(b"junk")
    result = runner.invoke(app, ["export", "--model", str(not_a_checkpoint)])
    assert result.exit_code == 1
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
    assert result.exit_code == 1


def test_export_of_a_mismatched_checkpoint_is_refused(trained_run: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    from maskwatch.training.checkpoint import read_meta

    meta = read_meta(trained_run / "best.safetensors")
    tensors = load_file(str(trained_run / "best.safetensors"))
    wrong = tmp_path / "wrong.safetensors"
    save_file(tensors, str(wrong), metadata={"maskwatch": json.dumps({**meta, "model": "resnet18"})})
    result = runner.invoke(app, ["export", "--model", str(wrong)])
    assert result.exit_code == 1


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
    assert result.exit_code == 1


def test_the_run_config_json_reads_back_as_the_config_it_ran(trained_run: Path):
    from maskwatch.training.config import load_config

    assert load_config(trained_run / "config.json") == load_config(trained_run.parent / "train.yaml")
