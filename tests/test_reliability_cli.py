"""The command line under bad input and faults: one clear line each, no traceback, the documented exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from tests.conftest import synthetic_face, write_voc_scene
from typer.testing import CliRunner

from maskwatch.cli import app

runner = CliRunner()


def invoke(args: list[str], code: int):
    """Run the CLI in-process; assert the exit status and that no exception escaped (no traceback for the user)."""
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def face_png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_face("with_mask", 64, seed=seed)).save(path)
    return path


def write_clip(path: Path, frames: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(frames):
        writer.write(cv2.cvtColor(synthetic_face("with_mask", 64, seed=i), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# --- item 12: exit status 0 / 1 / 2 -----------------------------------------------------------------------------------
def test_exit_status_says_whether_all_some_or_no_inputs_succeeded(tiny_model, tmp_path: Path):
    model = ["--model", str(tiny_model[1]), "--detector-size", "128"]
    good = face_png(tmp_path / "good" / "a.png")
    invoke(["detect", str(good), *model], 0)
    mixed = tmp_path / "mixed"
    face_png(mixed / "a.png")
    (mixed / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "mixed.jsonl"
    result = invoke(["detect", str(mixed), *model, "--json", str(out)], 1)
    assert "broken.jpg" in result.output and "1 errors" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in records) == ["a.png", "broken.jpg"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"")
    (bad / "y.txt").write_text("hi")
    result = invoke(["detect", str(bad), *model], 2)
    assert "x.png" in result.output and "empty file" in result.output


# --- item 8: empty folder / empty SOURCE: one line, exit 2 --------------------------------------------------------------
def test_empty_folder_and_empty_source_are_clear_errors(tiny_model, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = invoke(["detect", str(tmp_path / "empty"), "--model", str(tiny_model[1])], 2)
    assert "folder has no files" in result.output
    result = invoke(["detect", "", "--model", str(tiny_model[1])], 2)
    assert "SOURCE is empty" in result.output


# --- item 11: unusable --json / --save paths are one line before any work; failed writes are recorded -----------------
@pytest.mark.parametrize(
    "option, target, message",
    [
        ("--json", "afile/out.jsonl", "a file is in the way"),
        ("--json", "folder", "is a folder"),
        ("--save", "afile", "is a file, expected a folder"),
        ("--save", "afile/sub", "cannot write there"),
    ],
)
def test_unwritable_outputs_are_one_clear_error(tiny_model, tmp_path: Path, option: str, target: str, message: str):
    image = face_png(tmp_path / "a.png")
    (tmp_path / "afile").write_text("I am a file")
    (tmp_path / "folder").mkdir()
    result = invoke(["detect", str(image), "--model", str(tiny_model[1]), option, str(tmp_path / target)], 2)
    assert message in result.output


@pytest.mark.parametrize(
    "option, target, message",
    [
        ("--json", "folder", "--json " + "{tmp}/folder: is a folder"),
        ("--json", "afile/r.json", "a file is in the way"),
        ("--out", "afile", "--out {tmp}/afile: is a file, expected a folder"),
        ("--gallery", "afile", "--gallery {tmp}/afile: is a file, expected a folder"),
    ],
)
def test_evaluate_refuses_unwritable_outputs_before_scoring(tiny_model, tmp_path: Path, option: str, target: str, message: str):
    """A private set of thousands of faces is not scored only to fail on the report's path: one line, exit 2, and
    nothing written (the --json report least of all)."""
    face_png(tmp_path / "faces" / "with_mask" / "a.png")
    (tmp_path / "afile").write_text("I am a file")
    (tmp_path / "folder").mkdir()
    report = tmp_path / "report" / "r.json"
    args = ["evaluate", str(tmp_path / "faces"), "--model", str(tiny_model[1]), "--json", str(report)]
    args = [*args, option, str(tmp_path / target)] if option != "--json" else [*args[:-2], option, str(tmp_path / target)]
    result = invoke(args, 2)
    assert message.format(tmp=tmp_path) in " ".join(result.output.split())
    assert "with_mask" not in result.output  # no report table: nothing was scored
    assert not report.exists() and not list(tmp_path.rglob("confusion_matrix.png"))


def test_evaluate_scenes_refuses_an_unwritable_json_before_scoring(tiny_model, tmp_path: Path):
    write_voc_scene(tmp_path, 1)
    (tmp_path / "folder").mkdir()
    args = ["evaluate-scenes", str(tmp_path / "images"), str(tmp_path / "annotations"), "--model", str(tiny_model[1])]
    result = invoke([*args, "--json", str(tmp_path / "folder")], 2)
    assert "is a folder" in result.output and "face AP" not in result.output
    assert not (tmp_path / "pr_curves.png").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_output_folder_is_one_clear_error(tiny_model, tmp_path: Path):
    image = face_png(tmp_path / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = invoke(["detect", str(image), "--model", str(tiny_model[1]), "--json", str(locked / "o.jsonl")], 2)
    assert "cannot write" in result.output


def test_a_failed_image_write_is_an_error_record_not_silence(tiny_model, tmp_path: Path, monkeypatch):
    import maskwatch.runtime.stream as stream
    from maskwatch.fileio import OutputError

    def full_disk(path, rgb):
        raise OutputError(f"{path}: No space left on device")

    monkeypatch.setattr(stream, "write_image", full_disk)
    image = face_png(tmp_path / "a.png")
    out = tmp_path / "o.jsonl"
    result = invoke(["detect", str(image), "--model", str(tiny_model[1]), "--save", str(tmp_path / "s"), "--json", str(out)], 2)
    assert "No space left" in result.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert "annotated output not written" in record["error"]


# --- item 9: two videos with the same name in different folders keep both outputs --------------------------------------
def test_same_named_videos_in_two_folders_do_not_overwrite_each_other(tiny_model, tmp_path: Path):
    write_clip(tmp_path / "in" / "cam1" / "clip.avi", frames=3)
    write_clip(tmp_path / "in" / "cam2" / "clip.avi", frames=2)
    save = tmp_path / "saved"
    invoke(["detect", str(tmp_path / "in"), "--model", str(tiny_model[1]), "--save", str(save)], 0)
    videos = sorted(p.name for p in save.iterdir() if p.suffix == ".mp4")
    assert videos == ["clip_2_annotated.mp4", "clip_annotated.mp4"]
    recorded = [json.loads(line)["name"] for line in (save / ".maskwatch-written").read_text().splitlines()]
    assert sorted(recorded) == videos  # recorded as maskwatch's own
    counts = sorted(int(cv2.VideoCapture(str(save / v)).get(cv2.CAP_PROP_FRAME_COUNT)) for v in videos)
    assert counts == [2, 3]


# --- item 10: --show without a display: one line, the run goes on (checked in a child process: it used to abort) ------
def test_show_without_a_display_is_one_line_and_the_run_goes_on(tiny_model, tmp_path: Path):
    image = face_png(tmp_path / "a.png")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    command = [sys.executable, "-m", "maskwatch.cli", "detect", str(image), "--model", str(tiny_model[1]), "--show"]
    command += ["--json", str(tmp_path / "o.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in done.stderr and done.returncode != 134  # 134: OpenCV's GUI aborted the process
    from maskwatch.display import opencv_gui_backend

    if opencv_gui_backend() is None:  # the headless runtime install: refused up front, one line naming the fix
        assert done.returncode == 2 and 'pip install "maskwatch[gui]"' in done.stderr
        assert len([line for line in done.stderr.splitlines() if line.startswith("ERROR")]) == 1
    else:  # a GUI build on a machine without a display: one line, and the run goes on without a window
        assert done.returncode == 0, done.stderr
        assert "--show: no display" in done.stderr
        assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 1


# --- item 15: prediction files: cut-off lines, records without label, single-score peers --------------------------------
def test_evaluate_scenes_reads_damaged_and_single_score_prediction_files(tmp_path: Path):
    scenes = write_voc_scene(tmp_path / "scenes", n_images=2)
    truth = {
        "scene0": [[10, 30, 74, 94], [85, 30, 149, 94], [160, 30, 224, 94]],
        "scene1": [[10, 30, 74, 94], [85, 30, 149, 94], [160, 30, 224, 94]],
    }
    labels = ["with_mask", "without_mask", "mask_incorrect"]
    lines = []
    for stem, boxes in truth.items():  # a single-stage peer: one confidence ("score"), no face_score
        faces = [{"box": box, "label": label, "score": 0.9} for box, label in zip(boxes, labels)]
        faces.append({"box": [1, 1, 5, 5], "label": "with_mask", "score": 0.8})  # the fixture's tiny annotated face
        lines.append(json.dumps({"source": f"{stem}.jpg", "faces": faces}))
    lines.append(json.dumps({"source": "scene0.jpg", "faces": [{"box": [0, 0, 5, 5], "score": 0.5}]}))  # no label
    lines.append('{"source": "scene1.jpg", "faces": [{"box": [1, 2')  # cut off mid-write
    predictions = tmp_path / "peer.jsonl"
    predictions.write_text("\n".join(lines))
    out = tmp_path / "scores.json"
    args = ["evaluate-scenes", str(scenes / "images"), str(scenes / "annotations"), "--predictions", str(predictions)]
    flags = ["--no-flip", "--extra-margin", "0.1", "--min-face-size", "8"]
    result = invoke([*args, "--json", str(out), *flags], 1)  # scored; two lines skipped some
    assert "--predictions: --flip, --extra-margin, --min-face-size ignored (the detections were made by" in result.output
    assert "peer.jsonl:3: face 0 skipped, no 'label'" in result.output
    assert "peer.jsonl:4: skipped, not a JSON line" in result.output
    report = json.loads(out.read_text())
    assert report["face_ap"] == pytest.approx(1.0) and report["map_3class"] == pytest.approx(1.0)
    kept = predictions.read_text()
    result = invoke([*args, "--json", str(predictions)], 2)  # the scores written over the detections they score
    assert "the --predictions file this command reads; refusing to overwrite it" in result.output
    assert predictions.read_text() == kept
    result = invoke([*args, "--json", str(scenes / "annotations" / "scores.json")], 2)  # among the labels it reads
    assert "the labels folder this command reads" in result.output and not (scenes / "annotations" / "scores.json").exists()


# --- item 19: explain searches whole photos for faces at a bounded size ------------------------------------------------
def test_explain_searches_large_photos_at_a_bounded_size(tmp_path: Path, monkeypatch):
    import maskwatch.runtime.detectors as detectors
    from maskwatch.cli_explain import MAX_DETECTOR_SIDE, _faces_in
    from maskwatch.runtime.detectors import Detections

    class Recorder:
        def __init__(self, input_size: int):
            self.input_size, self.shapes = input_size, []

        def detect(self, image):
            self.shapes.append(image.shape)
            return Detections(np.array([[10, 10, 60, 60]], np.float32), np.array([0.9], np.float32))

    made = []
    monkeypatch.setattr(
        detectors, "make_detector", lambda name, input_size, threshold: made.append(Recorder(input_size)) or made[-1]
    )
    big = tmp_path / "big.png"
    Image.new("RGB", (4000, 3000), (90, 90, 90)).save(big)
    native = Recorder(0)
    samples, unreadable = _faces_in(big, False, native, lambda message: pytest.fail(message))
    assert native.shapes == [] and len(made) == 1 and made[0].input_size == MAX_DETECTOR_SIDE <= 1280
    assert len(samples) == 1 and unreadable == 0


# --- weak test rewritten: blur changes the face pixels and only those ---------------------------------------------------
def test_blur_changes_face_pixels_and_nothing_else(tiny_model, tmp_path: Path):
    from maskwatch.runtime.pipeline import default_sample_image

    image = tmp_path / "scene.png"
    Image.fromarray(default_sample_image()[1]).save(image)  # the shipped public-domain portrait: a face CenterFace finds
    common = ["detect", str(image), "--model", str(tiny_model[1]), "--detector-size", "512"]
    invoke([*common, "--save", str(tmp_path / "plain"), "--json", str(tmp_path / "p.jsonl")], 0)
    invoke([*common, "--save", str(tmp_path / "blur"), "--blur-faces"], 0)
    faces = json.loads((tmp_path / "p.jsonl").read_text())["faces"]
    assert faces, "the detector should find the astronaut's face"
    plain = cv2.imread(str(tmp_path / "plain" / "scene.jpg")).astype(int)
    blurred = cv2.imread(str(tmp_path / "blur" / "scene.jpg")).astype(int)
    inside = np.zeros(plain.shape[:2], bool)
    far = np.ones_like(inside)
    far[:48, :] = False  # the summary banner
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        inside[y1 + 6 : y2 - 6, x1 + 6 : x2 - 6] = True
        # away from the box, its outline, its label (which may run past the box) and JPEG's 16-px blocks
        far[max(y1 - 48, 0) : y2 + 24, max(x1 - 24, 0) : max(x2, x1 + 260) + 24] = False
    difference = np.abs(plain - blurred).max(axis=2)
    assert difference[inside].mean() > 10  # the face is pixelated
    assert difference[far].max() <= 2  # everything else is the same picture


# --- more hostile input, found by probing the merged commands -------------------------------------------------------------
@pytest.mark.parametrize(
    "flag, value",
    [
        ("--detector-size", "-1"),
        ("--min-face-score", "nan"),
        ("--uncertain-below", "2"),
        ("--threads", "-3"),
        ("--extra-margin", "-0.1"),
        ("--extra-margin", "nan"),
        ("--min-face-size", "-1"),
        ("--min-face-size", "nan"),
    ],
)
def test_out_of_range_detect_options_are_one_line(tmp_path: Path, flag: str, value: str):
    image = face_png(tmp_path / "a.png")
    result = invoke(["detect", str(image), flag, value], 2)
    assert f"{flag} {value}" in result.output.replace(".0:", ":") and "must be between" in result.output


def test_out_of_range_evaluate_scenes_options_stop_it_in_one_line(tmp_path: Path):
    scenes = write_voc_scene(tmp_path / "scenes", n_images=1)
    result = invoke(["evaluate-scenes", str(scenes / "images"), str(scenes / "annotations"), "--extra-margin", "-0.5"], 2)
    assert "--extra-margin -0.5: must be between 0.0 and 1.0" in result.output and len(result.output.strip().splitlines()) == 1
    result = invoke(["evaluate-scenes", str(scenes / "images"), str(scenes / "annotations"), "--min-face-size", "-2"], 2)
    assert "--min-face-size -2.0: must be between 0.0 and 10000" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full (a device that is always full)")
def test_a_disk_that_fills_up_during_detect_is_one_line(tiny_model, tmp_path: Path):
    image = face_png(tmp_path / "a.png")
    result = invoke(["detect", str(image), "--model", str(tiny_model[1]), "--json", "/dev/full"], 2)
    assert "--json /dev/full: write failed (No space left on device)" in result.output


def test_evaluate_with_no_usable_image_is_one_line(tiny_model, tmp_path: Path):
    for label in ("with_mask", "without_mask"):
        (tmp_path / "bad" / label).mkdir(parents=True)
        (tmp_path / "bad" / label / "x.jpg").write_bytes(b"junk")
    result = invoke(["evaluate", str(tmp_path / "bad"), "--model", str(tiny_model[1])], 2)
    assert "no usable images found" in result.output


def test_train_without_usable_data_or_writable_out_or_a_real_manifest_is_one_line(tmp_path: Path):
    pytest.importorskip("torch")
    from tests.conftest import write_class_tree

    (tmp_path / "empty").mkdir()
    result = invoke(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r1")], 2)
    assert "0 usable faces" in result.output and "training needs train and val faces" in result.output
    faces = write_class_tree(tmp_path / "faces", per_class=4, size=32)
    (tmp_path / "afile").write_text("x")
    result = invoke(["train", "--data", str(faces), "--out", str(tmp_path / "afile" / "run")], 2)
    assert "--out" in result.output and "Not a directory" in result.output
    manifest = tmp_path / "splits.csv"
    manifest.write_text("a,b\n1,2\n")
    result = invoke(["train", "--data", str(faces), "--out", str(tmp_path / "r2"), "--splits", str(manifest)], 2)
    assert "not a split manifest (missing columns" in result.output
    result = invoke(["evaluate", str(manifest)], 2)
    assert "not a split manifest" in result.output


def test_train_with_a_malformed_relabel_list_is_one_line(tmp_path: Path):
    pytest.importorskip("torch")
    from tests.conftest import write_class_tree

    faces = write_class_tree(tmp_path / "faces", per_class=4, size=32)
    listing = tmp_path / "fixes.txt"
    listing.write_text("# reasons\nfaces/with_mask/a.png -> worn_badly\n")
    result = invoke(["train", "--data", str(faces), "--out", str(tmp_path / "run"), "--relabel", str(listing)], 2)
    assert "fixes.txt:2: unknown label 'worn_badly'" in result.output
    result = invoke(["train", "--data", str(faces), "--out", str(tmp_path / "run"), "--relabel", str(tmp_path / "no.txt")], 2)
    assert "no.txt: cannot read" in result.output


# --- folders copied from another machine: system files, broken links, loose images -------------------------------------
def _with_system_files(folder: Path) -> None:
    """What Finder, Explorer and a zip made on a Mac leave beside the photos (``._x.jpg`` holds no image)."""
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "._a.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._a.png").write_bytes(b"\0\5\26\7 AppleDouble")


def test_detect_skips_system_files_quietly_and_names_a_broken_link(tiny_model, tmp_path: Path):
    photos = tmp_path / "photos"
    face_png(photos / "a.png")
    _with_system_files(photos)
    out = tmp_path / "o.jsonl"
    invoke(["detect", str(photos), "--model", str(tiny_model[1]), "--json", str(out)], 0)
    assert [Path(json.loads(line)["source"]).name for line in out.read_text().splitlines()] == ["a.png"]
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = invoke(["detect", str(photos), "--model", str(tiny_model[1]), "--json", str(out)], 1)
    assert "gone.jpg" in result.output and "broken symbolic link" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["source"]).name for r in records) == ["a.png", "gone.jpg"]  # every input listed once


def _names(lines_file: Path) -> list[str]:
    return sorted(Path(json.loads(line)["source"]).name for line in lines_file.read_text().splitlines())


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_detect_does_not_read_back_its_own_outputs_inside_the_folder(tiny_model, tmp_path: Path):
    """``--json`` and ``--save`` inside the folder being read: neither this run's JSON nor an earlier run's annotated
    copies become inputs (the JSON used to be read as an empty file, the copies as more photos)."""
    photos = tmp_path / "photos"
    face_png(photos / "a.png")
    out = photos / "out.jsonl"
    args = ["detect", str(photos), "--model", str(tiny_model[1]), "--json", str(out), "--save", str(photos / "annotated")]
    for _ in range(2):  # the second run finds the first run's outputs there
        result = invoke(args, 0)
        assert _names(out) == ["a.png"]
    assert "that maskwatch wrote" in result.output and "a.jpg" in result.output
    assert _visible(photos / "annotated") == ["a.jpg"]
    glob = [str(photos / "**" / "*"), "--model", str(tiny_model[1]), "--json", str(tmp_path / "g.jsonl")]
    invoke(["detect", *glob, "--save", str(photos / "annotated")], 0)  # a glob that reaches the annotated copies
    assert _names(tmp_path / "g.jsonl") == ["a.png"]


def test_detect_never_overwrites_a_file_it_did_not_write(tiny_model, tmp_path: Path):
    """``--save`` on the folder read, or on a folder holding photos, or beside a single photo: a copy whose name is
    a file of the user's (``a.png``'s copy is ``a.jpg``, another photo) is named ``<stem>_annotated`` instead, the
    user's photos stay input, and a second run replaces only its own copies. ``--json`` on an image: one line, exit 2."""
    model = ["--model", str(tiny_model[1])]
    photos = tmp_path / "photos"
    face_png(photos / "a.png")
    Image.fromarray(synthetic_face("without_mask", 64)).save(photos / "a.jpg")
    face_png(photos / "sub" / "a.png", seed=2)
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    out = tmp_path / "o.jsonl"
    for save in (photos, photos / "sub"):  # the folder read itself, then a folder inside it holding a photo
        for _ in range(2):
            invoke(["detect", str(photos), *model, "--json", str(out), "--save", str(save)], 0)
            assert _names(out) == ["a.jpg", "a.png", "a.png"]  # the user's three photos, never a copy
            assert all(p.read_bytes() == data for p, data in before.items())
    assert _visible(photos) == ["a.jpg", "a.png", "a_annotated.jpg", "a_annotated_2.jpg", "a_annotated_3.jpg", "sub"]
    single = tmp_path / "single"
    face_png(single / "a.png")
    Image.fromarray(synthetic_face("without_mask", 64)).save(single / "a.jpg")
    photo = (single / "a.jpg").read_bytes()
    invoke(["detect", str(single / "a.png"), *model, "--save", str(single)], 0)  # a.png's copy would be a.jpg
    assert (single / "a.jpg").read_bytes() == photo and (single / "a_annotated.jpg").is_file()
    result = invoke(["detect", str(photos), *model, "--json", str(photos / "a.jpg")], 2)
    assert "is an existing image or video file; refusing to overwrite it" in result.output
    assert (photos / "a.jpg").read_bytes() == before[photos / "a.jpg"]
    invoke(["detect", str(photos), *model, "--json", str(out), "--save", str(tmp_path / "copies")], 0)
    invoke(["detect", str(photos), *model, "--json", str(out), "--save", str(tmp_path)], 0)  # holds the source
    assert _names(out) == ["a.jpg", "a.png", "a.png"]  # nothing left out


def test_a_copy_is_maskwatchs_only_while_unchanged_and_its_record_is_never_trusted_blindly(tiny_model, tmp_path: Path):
    """A user's photo put in place of a recorded copy is the user's again: input, never replaced. A record that is a
    link is refused up front; what a killed write leaves is not input; a folder of copies only says so."""
    model = ["--model", str(tiny_model[1])]
    photos, out = tmp_path / "photos", tmp_path / "out"
    face_png(photos / "a.png")
    invoke(["detect", str(photos), *model, "--save", str(out)], 0)
    result = invoke(["detect", str(out), *model], 2)  # only copies there
    assert "holds only annotated copies maskwatch wrote" in result.output
    Image.fromarray(synthetic_face("without_mask", 64, seed=5)).save(out / "a.jpg")  # the user's own photo now
    mine = (out / "a.jpg").read_bytes()
    invoke(["detect", str(photos), *model, "--save", str(out)], 0)
    assert (out / "a.jpg").read_bytes() == mine and (out / "a_annotated.jpg").is_file()
    (out / ".a.jpg.1a2b3c4d.tmp").write_bytes(b"")  # what a killed atomic write leaves
    (out / ".clip_annotated.partial.mp4").write_bytes(b"")
    lines = tmp_path / "o.jsonl"
    invoke(["detect", str(out), *model, "--json", str(lines)], 0)
    assert _names(lines) == ["a.jpg"]  # the user's photo; not the copy, not the leftovers
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".maskwatch-written").symlink_to(tmp_path / "notes.txt")
    result = invoke(["detect", str(photos), *model, "--save", str(linked)], 2)
    assert "is a link or not a plain file" in result.output and not (tmp_path / "notes.txt").exists()
    tree = tmp_path / "tree"  # copies inside a class folder are not labelled faces
    face_png(tree / "with_mask" / "a.png")
    face_png(tree / "without_mask" / "b.png", seed=1)
    invoke(["detect", str(tree / "with_mask"), *model, "--save", str(tree / "with_mask")], 0)
    invoke(["evaluate", str(tree), *model, "--json", str(tmp_path / "e.json")], 0)
    assert json.loads((tmp_path / "e.json").read_text())["n"] == 2


def test_save_into_the_photos_own_folder_never_overwrites_the_photo(tiny_model, tmp_path: Path):
    """``detect x.jpg --save .`` used to write the annotated copy over x.jpg itself."""
    photo = tmp_path / "a.jpg"
    Image.fromarray(synthetic_face("with_mask", 64)).save(photo)
    original = photo.read_bytes()
    invoke(["detect", str(photo), "--model", str(tiny_model[1]), "--save", str(tmp_path)], 0)
    assert photo.read_bytes() == original
    assert (tmp_path / "a_annotated.jpg").is_file()


def test_evaluate_leaves_its_own_outputs_inside_the_tree_out(tiny_model, tmp_path: Path):
    """``--json``, the confusion matrix beside it and ``--gallery`` inside the tree being scored: a second run used
    to find them there as an image outside any class folder and a folder of an unknown class, and exit 1."""
    model = ["--model", str(tiny_model[1])]

    def tree(name: str) -> Path:
        folder = tmp_path / name
        face_png(folder / "with_mask" / "a.png")
        face_png(folder / "without_mask" / "b.png", seed=1)
        return folder

    faces = tree("faces")
    report = faces / "report.json"
    for _ in range(2):
        result = invoke(["evaluate", str(faces), *model, "--json", str(report), "--gallery", str(faces / "gallery")], 0)
        assert json.loads(report.read_text())["n"] == 2 and json.loads(report.read_text())["problems"] == []
    assert (faces / "confusion_matrix.png").is_file() and "leaving out this run's own output" in result.output
    elsewhere = tmp_path / "r.json"
    for name, outputs in [
        ("pictures", ["--out", "pictures"]),  # a picture folder in the tree
        ("class_named", ["--gallery", "mask_incorrect"]),  # a new folder named like a class: not an empty class
        ("nested", ["--gallery", "reports/gallery", "--out", "reports/pictures"]),  # the folder around them too
        ("in_class", ["--gallery", "without_mask"]),  # a class folder keeps its faces; only the files written go
    ]:
        folder = tree(name)
        placed = [value if value.startswith("--") else str(folder / value) for value in outputs]
        for _ in range(2):
            invoke(["evaluate", str(folder), *model, "--json", str(elsewhere), *placed], 0)
            assert json.loads(elsewhere.read_text())["n"] == 2 and json.loads(elsewhere.read_text())["problems"] == []
    result = invoke(["evaluate", str(faces), *model, "--json", str(faces / "with_mask" / "a.png")], 2)
    assert "is an existing image or video file; refusing to overwrite it" in result.output
    assert (faces / "with_mask" / "a.png").read_bytes()[:4] == b"\x89PNG"
    corrections = tmp_path / "corrections.txt"
    corrections.write_text("# none\n")
    result = invoke(["evaluate", str(faces), *model, "--relabel", str(corrections), "--json", str(corrections)], 2)
    assert "the --relabel file this command reads" in result.output and corrections.read_text() == "# none\n"
    photo = faces / "with_mask" / "a.png"
    result = invoke(["explain", str(photo), "--model", str(tiny_model[0]), "--crops", "--json", str(photo)], 2)
    assert "is an existing image or video file; refusing to overwrite it" in result.output
    assert photo.read_bytes()[:4] == b"\x89PNG"


def _jpeg_with_damaged_exif(path: Path) -> Path:
    """A valid JPEG whose EXIF names a tag stored past the end of its block (PIL warns and skips the tag)."""
    import io
    import struct

    buffer = io.BytesIO()
    Image.fromarray(synthetic_face("with_mask", 64)).save(buffer, "JPEG")
    tiff = b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 0x010F, 2, 100, 1000)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<I", 0)  # rotated: decoded by PIL
    exif = b"Exif\x00\x00" + tiff
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + data[2:])
    return path


def test_a_warning_about_a_damaged_file_is_one_line_naming_that_file(tiny_model, tmp_path: Path):
    """PIL's warnings came out as two lines each, naming PIL's source file and not the photo, and only for the first
    photo (Python shows a warning once per place). Run in a child process, as a user runs it (decode thread and all)."""
    photos = tmp_path / "photos"
    for name in ("one.jpg", "two.jpg"):
        _jpeg_with_damaged_exif(photos / name)
    command = [sys.executable, "-m", "maskwatch.cli", "detect", str(photos), "--model", str(tiny_model[1])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "UserWarning" not in done.stderr and "PIL" not in done.stderr
    for name in ("one.jpg", "two.jpg"):
        lines = [line for line in done.stderr.splitlines() if "Tag data larger than file" in line]
        assert len([line for line in lines if f"{name}: " in line]) == 1, done.stderr


def test_evaluate_names_every_face_it_cannot_score_and_ignores_system_files(tiny_model, tmp_path: Path, monkeypatch):
    faces = tmp_path / "faces"
    face_png(faces / "with_mask" / "a.png")
    Image.open(face_png(faces / "without_mask" / "b.png")).save(faces / "without_mask" / "c.jfif", format="JPEG")
    _with_system_files(faces)
    _with_system_files(faces / "with_mask")
    monkeypatch.chdir(faces)
    result = invoke(["evaluate", ".", "--model", str(tiny_model[1]), "--json", str(tmp_path / "r.json")], 0)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 3 and report["skipped"] == 0, result.output  # .jfif is a JPEG, as detect reads it
    assert list(report["per_source"]) == ["faces"]  # named after the folder, not ""
    face_png(faces / "loose.png")
    (faces / "with_mask" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    face_png(faces / "mask_worn_wrong" / "d.png")
    _with_system_files(faces / "mask_worn_wrong")  # not counted among its images
    result = invoke(["evaluate", ".", "--model", str(tiny_model[1]), "--json", str(tmp_path / "r.json")], 1)
    output = " ".join(result.output.split())
    assert "loose.png: skipped, an image outside any class folder" in output
    assert "gone.png: skipped, broken symbolic link" in output
    assert "mask_worn_wrong: skipped folder (1 images)" in output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 3 and report["skipped"] == 3
    assert [line.split(": skipped")[0].rsplit("/", 1)[-1] for line in report["problems"]] == [
        "loose.png",
        "mask_worn_wrong",
        "gone.png",
    ]


def test_evaluate_on_one_class_folder_given_by_mistake_is_one_line(tiny_model, tmp_path: Path):
    for n in range(5):
        face_png(tmp_path / "with_mask" / f"{n}.png", seed=n)
    (tmp_path / "with_mask" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    result = invoke(["evaluate", str(tmp_path / "with_mask"), "--model", str(tiny_model[1])], 2)
    output = " ".join(result.output.split())
    assert "6 images lie directly in it and no class folder" in output, output
    assert "0.png" not in output  # not a line per image
