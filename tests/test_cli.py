"""The command line as a user meets it: defaults, outputs, and clear one-line errors."""

import json
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import assert_clear_error, synthetic_face, write_class_tree
from typer.testing import CliRunner

from maskwatch.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("detect", "evaluate", "evaluate-scenes", "train", "export", "explain", "fetch-weights"):
        assert command in result.output


def test_detect_without_arguments_runs_on_the_built_in_sample(tiny_model, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["detect", "--model", str(tiny_model[1]), "--detector-size", "256"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "maskwatch-output" / "detections.jsonl").read_text().splitlines()]
    assert len(records) == 1 and len(records[0]["faces"]) >= 1
    assert (tmp_path / "maskwatch-output" / "astronaut.jpg").is_file()


def test_min_face_size_drops_faces_smaller_than_asked(tiny_model, tmp_path: Path):
    """The floor is the box's shorter side in image pixels: just below the face keeps it, just above drops it."""
    from importlib.resources import files

    sample = files("maskwatch.assets").joinpath("astronaut.jpg")

    def faces(*flags: str) -> list[dict]:
        out = tmp_path / f"faces{len(list(tmp_path.iterdir()))}.jsonl"
        result = runner.invoke(app, ["detect", str(sample), "--model", str(tiny_model[1]), "--json", str(out), *flags])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text().splitlines()[0])["faces"]

    found = faces()
    assert found, "the sample has a face"
    side = max(min(f["box"][2] - f["box"][0], f["box"][3] - f["box"][1]) for f in found)
    assert len(faces("--min-face-size", f"{side - 1:.1f}")) >= 1
    assert faces("--min-face-size", f"{side + 1:.1f}") == []


def test_evaluate_scenes_applies_the_face_size_floor(tiny_model, tmp_path: Path):
    """The floor reaches the pipeline of evaluate-scenes too: above the only face's size, nothing is found."""
    from importlib.resources import files

    sample = files("maskwatch.assets").joinpath("astronaut.jpg")
    found = tmp_path / "found.jsonl"
    result = runner.invoke(app, ["detect", str(sample), "--model", str(tiny_model[1]), "--json", str(found)])
    assert result.exit_code == 0, result.output
    face = json.loads(found.read_text().splitlines()[0])["faces"][0]
    x1, y1, x2, y2 = (round(v) for v in face["box"])
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.open(sample).save(tmp_path / "images" / "astronaut.jpg")
    (tmp_path / "annotations" / "astronaut.xml").write_text(
        f"<annotation><filename>astronaut.jpg</filename><object><name>with_mask</name><bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object></annotation>"
    )

    def face_ap(*flags: str) -> float:
        out = tmp_path / "scores.json"
        args = ["evaluate-scenes", str(tmp_path / "images"), str(tmp_path / "annotations"), "--json", str(out)]
        result = runner.invoke(app, [*args, "--model", str(tiny_model[1]), *flags])
        assert result.exit_code == 0, result.output
        return json.loads(out.read_text())["face_ap"]

    assert face_ap() == pytest.approx(1.0)
    assert face_ap("--min-face-size", str(min(x2 - x1, y2 - y1) + 20)) == 0.0


def test_detect_rejects_unknown_detector_and_model(tmp_path: Path):
    image = tmp_path / "a.png"
    Image.fromarray(synthetic_face("with_mask", 64)).save(image)
    result = runner.invoke(app, ["detect", str(image), "--detector", "yolo"])
    assert_clear_error(result, "unknown detector 'yolo'; choose one of: centerface, haar")
    result = runner.invoke(app, ["detect", str(image), "--model", str(tmp_path / "missing.onnx")])
    assert_clear_error(result, "missing.onnx: no such model file")


def test_detect_blur_and_save(tiny_model, tmp_path: Path):
    image = tmp_path / "a.png"
    Image.fromarray(synthetic_face("with_mask", 64)).save(image)
    result = runner.invoke(
        app,
        [
            "detect",
            str(image),
            "--model",
            str(tiny_model[1]),
            "--save",
            str(tmp_path / "out"),
            "--blur-faces",
            "--json",
            str(tmp_path / "d.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.jsonl").is_file() and (tmp_path / "out" / "a.jpg").is_file()
    # That blurring changes the face pixels and nothing else: test_reliability_cli.py::test_blur_changes_face_pixels...


def test_evaluate_on_a_missing_folder_is_one_clear_error(tmp_path: Path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert_clear_error(result, "nope: not a folder")


def test_train_with_a_config_typo_is_one_clear_error(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text("epoch: 3\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert_clear_error(result, "unknown key 'epoch'; did you mean 'epochs'?")


@pytest.mark.slow
def test_explain_crops_report_and_bad_inputs(tiny_model, tmp_path: Path):
    pytest.importorskip("pytorch_grad_cam")
    tree = write_class_tree(tmp_path / "faces", per_class=3, size=64)
    (tree / "with_mask" / "broken.png").write_bytes(b"not a png")
    out_json = tmp_path / "focus.json"
    result = runner.invoke(
        app,
        [
            "explain",
            "--model",
            str(tiny_model[0]),
            "--report",
            str(tree),
            "--json",
            str(out_json),
            "--out",
            str(tmp_path / "exp"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert set(report["per_class"]) == {"with_mask", "without_mask", "mask_incorrect"}
    assert {"n", "median_focus", "mean_focus"} <= set(report["per_class"]["with_mask"])
    assert len(report["faces"]) == 9 and {"file", "label", "predicted", "focus"} <= set(report["faces"][0])
    hidden = report["occlusion"]["with_mask"]
    assert hidden["n"] == 3 and 0 <= hidden["changed_lower_hidden"] <= 1 and 0 <= hidden["changed_upper_hidden"] <= 1
    assert (tmp_path / "exp" / "lowest_focus.png").is_file()

    crops = tmp_path / "crops"
    crops.mkdir()
    Image.fromarray(synthetic_face("with_mask", 64)).save(crops / "one.png")
    result = runner.invoke(app, ["explain", str(crops), "--crops", "--model", str(tiny_model[0]), "--out", str(tmp_path / "e2")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "e2" / "gradcam_grid.png").is_file()

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(blank)
    result = runner.invoke(app, ["explain", str(blank), "--model", str(tiny_model[0]), "--out", str(tmp_path / "e3")])
    assert_clear_error(result, "no faces to explain")  # no face found anywhere: a clear error, not a traceback
    result = runner.invoke(app, ["explain", str(tmp_path / "faces" / "with_mask" / "broken.png"), "--model", str(tiny_model[0])])
    assert_clear_error(result, "broken.png: not an image file PIL can read")
