"""Issue 9: one crop geometry, extending the split manifest, epoch selection, error galleries, CPU self-check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_face
from maskwatch.crop import crop_face, crop_whole_image, whole_image_crop
from maskwatch.data.index import Sample
from maskwatch.data.loading import LoadedSamples, extend_splits, load_samples
from maskwatch.data.splits import ManifestRow, read_manifest, split_of, write_manifest
from maskwatch.runtime.selfcheck import check_outputs, reference_inputs


def _tall_face_file() -> np.ndarray:
    """A 60 x 120 (w x h) file with a 40 x 40 white square in its middle."""
    image = np.zeros((120, 60, 3), np.uint8)
    image[40:80, 10:50] = 255
    return image


def test_whole_image_crop_keeps_the_face_square_as_the_runtime_does():
    image = _tall_face_file()
    crop = crop_whole_image(image, margin=0.15, size=78)
    assert crop.shape == (78, 78, 3)
    rows, cols = np.nonzero(crop[..., 0] > 127)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert abs(height - width) <= 1  # not stretched: the square stays square
    # exactly what the runtime cuts when a detector returns the file's outline as the face box
    assert np.array_equal(crop, crop_face(image, [0, 0, 60, 120], margin=0.15, size=78))
    stretched = whole_image_crop(image, geometry="stretch", margin=0.15, size=78)
    rows, cols = np.nonzero(stretched[..., 0] > 127)
    assert (np.ptp(cols) + 1) > 1.5 * (np.ptp(rows) + 1)  # the old geometry squashed it
    with pytest.raises(ValueError, match="choose one of crop, stretch"):
        whole_image_crop(image, geometry="pad", margin=0.15, size=78)


def test_training_loads_class_folder_files_with_the_runtime_geometry(tmp_path: Path):
    path = tmp_path / "tall.png"
    Image.fromarray(_tall_face_file()).save(path)
    loaded = load_samples([Sample(path, "with_mask", "x")], size=78, hash_files=False)
    assert np.array_equal(loaded.crops[0], crop_whole_image(_tall_face_file(), margin=0.15, size=78))


def _loaded(paths: list[Path], hashes: list[int]) -> LoadedSamples:
    samples = [Sample(p, "with_mask", "new") for p in paths]
    return LoadedSamples(samples, np.zeros((len(samples), 4, 4, 3), np.uint8), dict(zip(paths, hashes)), [])


def test_extending_the_manifest_moves_no_row_and_keeps_near_duplicates_together(tmp_path: Path):
    old = [
        ManifestRow(Sample(Path(f"data/old/{i}.jpg"), "with_mask", "old"), f"old/{i}.jpg", s)
        for i, s in enumerate(("test", "train"))
    ]
    old_hashes = {old[0].sample.path: 0b1111_0000, old[1].sample.path: (1 << 63) - 1}
    fresh = [Path(f"data/new/{i}.jpg") for i in range(40)]
    # new/0 differs from old/0 (a test file) in 2 bits: it must join its group and split, whatever its own key hashes to
    hashes = [0b1111_0011] + [int(h) for h in np.random.default_rng(1).integers(1 << 20, 1 << 62, 39)]
    rows = extend_splits(old, old_hashes, _loaded(fresh, hashes), root=Path("data"))
    assert rows[:2] == old
    by_path = {row.sample.path: row for row in rows}
    assert (by_path[fresh[0]].group, by_path[fresh[0]].split) == ("old/0.jpg", "test")
    for path in fresh[1:]:
        assert by_path[path].group == f"new/{path.name}"
        assert by_path[path].split == split_of(f"new/{path.name}")
    assert {by_path[p].split for p in fresh[1:]} == {"train", "val", "test"}


def test_gzip_manifest_is_byte_stable(tmp_path: Path):
    rows = [ManifestRow(Sample(Path("a/b.jpg"), "with_mask", "a", (1.0, 2.0, 3.0, 4.0)), "a/b.jpg", "val")]
    write_manifest(rows, tmp_path / "one.csv.gz")
    write_manifest(rows, tmp_path / "two.csv.gz")
    assert (tmp_path / "one.csv.gz").read_bytes() == (tmp_path / "two.csv.gz").read_bytes()
    assert read_manifest(tmp_path / "one.csv.gz") == rows


def test_epoch_selection_puts_the_incorrect_recall_floor_before_macro_f1():
    from maskwatch.training.train import photo_incorrect_recall, selection_score

    high_f1_low_recall = {"val_macro_f1": 0.99, "val_recall_mask_incorrect_photos": 0.5}
    lower_f1_enough_recall = {"val_macro_f1": 0.95, "val_recall_mask_incorrect_photos": 0.85}
    assert selection_score(lower_f1_enough_recall, 0.8) > selection_score(high_f1_low_recall, 0.8)
    assert selection_score(high_f1_low_recall, 0.0) > selection_score(lower_f1_enough_recall, 0.0)
    no_real_incorrect = {"val_macro_f1": 0.99, "val_recall_mask_incorrect_photos": float("nan")}
    assert selection_score(no_real_incorrect, 0.8)[0] == 0.0
    logits = np.array([[0, 0, 5], [5, 0, 0], [0, 0, 5], [0, 0, 5]], np.float32)
    truth = np.array([2, 2, 2, 0])
    from_photos = np.array([True, True, False, True])  # the third face is a class-folder file: not counted
    assert photo_incorrect_recall(logits, truth, from_photos) == 0.5


def test_reference_inputs_are_the_same_everywhere():
    first = reference_inputs(8, 40)
    assert [image.shape for image in first] == [(40, 40, 3)] * 8
    assert all(np.array_equal(a, b) for a, b in zip(first, reference_inputs(8, 40)))
    # pinned: a change to the formula would silently invalidate the references stored in shipped models
    assert int(sum(int(image.astype(np.int64).sum()) for image in first)) == 4959999
    assert len({image.tobytes() for image in first}) == 8


@pytest.fixture(scope="module")
def int8_tiny(tiny_model, tmp_path_factory) -> Path:
    from maskwatch.export.quantize import quantize_int8

    crops = [synthetic_face(label, 48, seed=i) for i, label in enumerate(["with_mask", "without_mask", "mask_incorrect"] * 4)]
    return quantize_int8(tiny_model[1], tmp_path_factory.mktemp("q") / "tiny_int8.onnx", crops, method="minmax")


def test_int8_export_records_its_weight_type_and_reference_outputs(int8_tiny: Path):
    from maskwatch.export.quantize import read_meta
    from maskwatch.runtime.classifier import OnnxMaskClassifier

    meta = read_meta(int8_tiny)
    assert meta["calibration"]["weights"] == "s8-reduced"
    assert len(meta["reference"]["logits"]) == meta["reference"]["count"] == 8
    assert "isa" in meta["reference"]["recorded_on"]
    check = check_outputs(OnnxMaskClassifier(int8_tiny))
    assert check is not None and check.ok and check.max_logit_diff < 1e-3


def test_mean_kl_is_zero_for_the_same_probabilities_and_grows_with_a_changed_ranking():
    from maskwatch.export.quantize import mean_kl

    reference = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert mean_kl(reference, reference) == pytest.approx(0.0, abs=1e-9)
    same_argmax = np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])  # agreement 1.0, but not the same probabilities
    assert 0 < mean_kl(reference, same_argmax) < mean_kl(reference, reference[:, ::-1])


def test_auto_calibration_keeps_the_method_closest_to_fp32(tiny_model, tmp_path: Path):
    """``auto`` tries each method and records which it kept, and why, in the file."""
    from maskwatch.export.quantize import AUTO_METHODS, mean_kl, quantize_int8, read_meta
    from maskwatch.runtime.classifier import OnnxMaskClassifier

    crops = [synthetic_face(label, 48, seed=i) for i, label in enumerate(["with_mask", "without_mask", "mask_incorrect"] * 4)]
    fp32 = OnnxMaskClassifier(tiny_model[1]).predict_proba(crops)
    divergence = {}
    for method in AUTO_METHODS:
        path = quantize_int8(tiny_model[1], tmp_path / f"{method}.onnx", crops, method=method)
        divergence[method] = mean_kl(fp32, OnnxMaskClassifier(path).predict_proba(crops))
    chosen = quantize_int8(tiny_model[1], tmp_path / "auto.onnx", crops, method="auto")
    meta = read_meta(chosen)
    assert meta["calibration"]["method"] == min(divergence, key=divergence.get)
    assert "mean KL divergence from fp32" in meta["calibration"]["chosen_by"]


def int8_weight_extremes(path: Path) -> tuple[int, int]:
    """Smallest and largest value over every int8 initializer (the quantised weights) of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    values = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert values, f"{path} has no int8 weights"
    return min(int(v.min()) for v in values), max(int(v.max()) for v in values)


@pytest.mark.parametrize("model", ["shipped", "fresh"])
def test_int8_weights_fit_7_bits_so_avx2_pair_sums_cannot_saturate(model: str, int8_tiny: Path):
    """AVX2 without VNNI sums pairs of u8 activation x s8 weight products in int16: with |w| <= 64 a pair is at most
    2 x 255 x 64 = 32640 < 32767, so such a CPU computes what this one does."""
    from maskwatch.runtime.assets import DEFAULT_CLASSIFIER, asset_path

    path = asset_path(DEFAULT_CLASSIFIER) if model == "shipped" else int8_tiny
    low, high = int8_weight_extremes(path)
    assert -64 <= low and high <= 64, f"{path}: int8 weights span [{low}, {high}]"
    assert 2 * 255 * max(-low, high) <= 32767


def _with_reference_shifted(path: Path, out: Path, shift: float) -> Path:
    from maskwatch.export.onnx_export import set_metadata
    from maskwatch.export.quantize import read_meta

    meta = read_meta(path)
    meta["reference"]["logits"] = [[v + shift for v in row] for row in meta["reference"]["logits"]]
    out.write_bytes(path.read_bytes())
    set_metadata(out, meta)
    return out


def test_check_model_reports_a_cpu_that_departs_from_the_recorded_outputs(int8_tiny: Path, tmp_path: Path):
    from maskwatch.cli import app

    runner = CliRunner()
    good = runner.invoke(app, ["check-model", "--model", str(int8_tiny)])
    assert good.exit_code == 0, good.output
    assert "matches the outputs recorded at export" in good.output
    bad = _with_reference_shifted(int8_tiny, tmp_path / "bad.onnx", 0.5)
    result = runner.invoke(app, ["check-model", "--model", str(bad)])
    assert result.exit_code == 1
    assert "DEPARTS FROM the outputs recorded at export" in result.output and "0.5000" in result.output
    assert "Traceback" not in result.output


def test_pipeline_warns_once_when_this_cpu_departs(int8_tiny: Path, tmp_path: Path, caplog):
    from maskwatch.runtime.pipeline import DetectorConfig, MaskDetector

    bad = _with_reference_shifted(int8_tiny, tmp_path / "bad.onnx", 0.5)
    with caplog.at_level("WARNING"):
        MaskDetector(DetectorConfig(model=str(int8_tiny), detector_size=64))
        assert not [r for r in caplog.records if "DEPARTS" in r.getMessage()]
        MaskDetector(DetectorConfig(model=str(bad), detector_size=64))
    assert len([r for r in caplog.records if "DEPARTS" in r.getMessage()]) == 1


def test_evaluate_on_a_manifest_split_writes_per_source_scores_and_error_galleries(
    tiny_model, tmp_path: Path, class_tree, voc_scenes
):
    from maskwatch.cli import app
    from maskwatch.data.index import index_sources

    samples = index_sources([class_tree, voc_scenes]).samples
    rows = [ManifestRow(s, str(s.path), "test" if i % 2 else "train") for i, s in enumerate(samples)]
    manifest = write_manifest(rows, tmp_path / "splits.csv.gz") or tmp_path / "splits.csv.gz"
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(manifest),
            "--split",
            "test",
            "--model",
            str(tiny_model[1]),
            "--json",
            str(out),
            "--gallery",
            str(tmp_path / "g"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n"] == sum(1 for r in rows if r.split == "test")
    assert set(report["per_source"]) == {"faces", "scenes"}
    assert sum(v["n"] for v in report["per_source"].values()) == report["n"]
    mistakes = json.loads((tmp_path / "g" / "mistakes.json").read_text())
    assert len(mistakes) == report["n"] - round(report["accuracy"] * report["n"])
    for source in {m["source"] for m in mistakes}:
        assert (tmp_path / "g" / f"errors_{source}.png").stat().st_size > 1000
    assert all(m["label"] != m["predicted"] for m in mistakes)


def test_box_shape_fit_recovers_a_known_distortion_and_applies_it():
    from maskwatch.runtime.boxes import BoxShape, fit_box_shape

    rng = np.random.default_rng(0)
    detected = np.column_stack([rng.uniform(0, 100, 50), rng.uniform(0, 100, 50)])
    detected = np.column_stack([detected, detected + rng.uniform(10, 60, (50, 2))]).astype(np.float32)
    truth = BoxShape(width_scale=0.9, height_scale=1.2, dx=0.05, dy=-0.1)
    fitted = fit_box_shape(truth.apply(detected), detected)
    assert fitted.width_scale == pytest.approx(0.9, abs=1e-4) and fitted.height_scale == pytest.approx(1.2, abs=1e-4)
    assert fitted.dx == pytest.approx(0.05, abs=1e-4) and fitted.dy == pytest.approx(-0.1, abs=1e-4)
    assert np.allclose(BoxShape().apply(detected), detected, atol=1e-4)


def _faces_with_landmarks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` detected boxes and five landmarks each, the face turned by a random amount (nose off centre)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 200, (n, 2))
    size = rng.uniform(20, 80, (n, 1)) * np.array([[1.0, 1.2]])
    boxes = np.column_stack([corner, corner + size])
    template = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    turn = rng.uniform(-0.15, 0.15, (n, 1, 1)) * np.array([[[1.0, 0.0]]])
    marks = boxes[:, None, :2] + (template[None] + turn + rng.normal(0, 0.01, (n, 5, 2))) * size[:, None, :]
    return boxes.astype(np.float32), marks.astype(np.float32)


def test_landmark_box_shape_learns_what_a_fixed_correction_cannot():
    from maskwatch.runtime.boxes import (
        BoxShape,
        LandmarkBoxShape,
        fit_box_shape,
        fit_landmark_box_shape,
        iou_matrix,
        mirrored_pairs,
    )

    boxes, marks = _faces_with_landmarks(400)
    # annotators centre the box on the nose: its offset from the detected centre moves the annotated box with it
    nose_x = (marks[:, 2, 0] - (boxes[:, 0] + boxes[:, 2]) / 2) / (boxes[:, 2] - boxes[:, 0])
    shift = BoxShape(width_scale=1.05, height_scale=0.95, dy=0.06).apply(boxes)
    annotated = shift + (nose_x * (boxes[:, 2] - boxes[:, 0]))[:, None] * np.array([1, 0, 1, 0], np.float32)
    annotated[:20] += 25.0  # wrong matches: the Huber weights must keep them from pulling the fit
    fitted = fit_landmark_box_shape(annotated, boxes, marks)
    by_landmarks = np.diag(iou_matrix(fitted.apply(boxes, marks)[20:], annotated[20:]))
    fixed = np.diag(iou_matrix(fit_box_shape(annotated, boxes).apply(boxes)[20:], annotated[20:]))
    assert by_landmarks.min() > 0.97 and fixed.min() < 0.85
    # a mirrored face gets the mirrored box
    _, mirror_boxes, mirror_marks = mirrored_pairs(annotated, boxes, marks)
    mirror_of_fit = mirrored_pairs(fitted.apply(boxes, marks), boxes, marks)[0]
    assert np.allclose(fitted.apply(mirror_boxes, mirror_marks), mirror_of_fit, atol=1e-3)
    # without landmarks it falls back to the fixed correction fitted on the same pairs
    assert np.allclose(fitted.apply(boxes, None), fit_box_shape(annotated, boxes).apply(boxes), atol=1e-3)
    # the fixed correction itself, as such a map, gives the same boxes
    plain = BoxShape(width_scale=1.03, height_scale=0.97, dx=0.01, dy=0.07)
    assert np.allclose(LandmarkBoxShape.from_box_shape(plain).apply(boxes, marks), plain.apply(boxes), atol=1e-3)


def test_best_matches_pair_each_annotated_face_with_its_most_overlapping_detection():
    from maskwatch.runtime.boxes import best_matches

    annotated = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]], np.float64)
    detected = np.array([[52, 50, 62, 60], [1, 0, 11, 10], [0, 0, 20, 20]], np.float64)
    assert best_matches(annotated, detected, 0.3) == [(0, 1), (1, 0)]  # the third face has no detection
    assert best_matches(annotated, np.zeros((0, 4)), 0.3) == []


def test_flip_fusion_averages_faces_seen_twice_and_scores_each_by_its_best_sighting():
    from maskwatch.runtime.boxes import fuse_passes

    plain = (np.array([[10, 10, 50, 50], [100, 100, 120, 120]], np.float32), np.array([0.9, 0.6], np.float32))
    mirrored = (np.array([[12, 10, 52, 50], [200, 10, 230, 40]], np.float32), np.array([0.9, 0.8], np.float32))
    boxes, scores, leaders = fuse_passes([plain, mirrored])
    assert len(boxes) == 3
    twice = int(np.argmax(scores))
    assert np.allclose(boxes[twice], [11, 10, 51, 50]) and scores[twice] == pytest.approx(0.9)
    assert np.allclose(sorted(scores), [0.6, 0.8, 0.9])  # a single sighting keeps its score (same threshold as one pass)
    # each fused box names its best-scored member (plain rows first, then mirrored): the face seen twice keeps the
    # plain pass's (the tie goes to the first), the two single sightings their own
    assert sorted(leaders.tolist()) == [0, 1, 3] and leaders[twice] == 0
    # a third box over a face both passes saw joins the next open face it overlaps, not a new duplicate
    plain = (np.array([[0, 0, 40, 40], [12, 0, 52, 40]], np.float32), np.array([0.9, 0.6], np.float32))
    mirrored = (np.array([[1, 0, 41, 40], [6, 0, 46, 40]], np.float32), np.array([0.8, 0.5], np.float32))
    boxes, scores, _ = fuse_passes([plain, mirrored])  # [6..46] overlaps the full first face most, the second next
    assert len(boxes) == 2 and sorted(scores.tolist()) == pytest.approx([0.6, 0.9])


def test_patience_counts_from_the_best_macro_f1_not_from_the_kept_epoch():
    from maskwatch.training.train import last_macro_f1_gain

    history = [{"epoch": e, "val_macro_f1": f} for e, f in [(1, 0.90), (2, 0.93), (3, 0.92), (4, 0.95), (5, 0.94)]]
    assert last_macro_f1_gain(history) == 4  # the kept epoch may be 1 (floor), yet the run is still improving


def test_still_image_box_shape_reshapes_and_clips_detections():
    from maskwatch.runtime.boxes import CENTERFACE_TO_ANNOTATED
    from maskwatch.runtime.detectors import Detections
    from maskwatch.runtime.pipeline import reshaped

    found = Detections(np.array([[10, 10, 60, 70], [0, 80, 40, 100]], np.float32), np.array([0.9, 0.5], np.float32))
    out = reshaped(found, (100, 120))
    assert np.allclose(out.boxes[0], CENTERFACE_TO_ANNOTATED.apply(found.boxes[:1])[0])
    assert out.boxes[:, [1, 3]].max() <= 100 and out.boxes.min() >= 0  # clipped to the 120 x 100 image
    assert np.array_equal(out.scores, found.scores)


def test_photos_at_the_image_default_size_reshape_boxes_by_their_landmarks():
    from maskwatch.runtime.boxes import CENTERFACE_TO_ANNOTATED, CENTERFACE_TO_ANNOTATED_BY_LANDMARKS
    from maskwatch.runtime.detectors import Detections
    from maskwatch.runtime.pipeline import box_shape_for, reshaped

    boxes, marks = _faces_with_landmarks(2, seed=3)
    boxes, marks = boxes + 300, marks + 300  # well inside the image: nothing clipped
    found = Detections(boxes, np.array([0.9, 0.5], np.float32), marks)
    turned = marks.copy()
    turned[1, :, 0] += 0.2 * (boxes[1, 2] - boxes[1, 0])  # the second face looks aside
    aside = Detections(boxes, found.scores, turned)
    for size in (960, 1280):  # the image default and above: where photos also get the 640 px pass
        assert box_shape_for(size) is CENTERFACE_TO_ANNOTATED_BY_LANDMARKS
        out = reshaped(found, (1000, 1000), box_shape_for(size)).boxes
        assert np.allclose(out, CENTERFACE_TO_ANNOTATED_BY_LANDMARKS.apply(boxes, marks), atol=1e-3)
        # the classifier's crops may be cut elsewhere (where it was trained and chosen)
        both = reshaped(found, (1000, 1000), box_shape_for(size), crop_shape=box_shape_for(320))
        assert np.allclose(both.boxes, out) and np.allclose(both.crop_boxes, CENTERFACE_TO_ANNOTATED.apply(boxes), atol=1e-3)
        moved = reshaped(aside, (1000, 1000), box_shape_for(size)).boxes
        assert np.allclose(moved[0], out[0]) and not np.allclose(moved[1], out[1], atol=0.5)
    # a face the image edge cuts has landmarks that were not clipped with its box: it gets the fixed correction
    at_edge = Detections(boxes - boxes[:, :1].min() * np.array([1, 0, 1, 0], np.float32), found.scores, marks)
    edge_out = reshaped(at_edge, (1000, 1000), box_shape_for(960)).boxes
    first = int(np.argmin(at_edge.boxes[:, 0]))
    assert np.allclose(edge_out[first], CENTERFACE_TO_ANNOTATED.apply(at_edge.boxes[first : first + 1]).clip(0)[0], atol=1e-3)
    # 640 px, the native size and the 320 px speed path keep the fixed correction, landmarks or not
    for size in (640, 0, 320):
        kept = reshaped(aside, (1000, 1000), box_shape_for(size))
        assert np.allclose(kept.boxes, CENTERFACE_TO_ANNOTATED.apply(boxes), atol=1e-3) and kept.crop_boxes is None


def test_landmark_map_keeps_degenerate_boxes_and_stray_landmarks_finite_and_near_the_face():
    from maskwatch.runtime.boxes import CENTERFACE_TO_ANNOTATED, CENTERFACE_TO_ANNOTATED_BY_LANDMARKS, fit_landmark_box_shape

    boxes = np.array([[100, 100, 100.5, 140], [50, 50, 50, 90], [10, 10, 50, 60], [10, 10, 50, 60]], np.float32)
    marks = np.tile(np.array([[20, 25], [40, 25], [30, 35], [22, 48], [38, 48]], np.float32), (4, 1, 1))
    marks[0] += 90  # a sliver of a box whose landmarks lie far outside it
    marks[2, 0] = np.nan
    marks[3, 4] = np.inf
    out = CENTERFACE_TO_ANNOTATED_BY_LANDMARKS.apply(boxes, marks)
    assert np.isfinite(out).all()
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (out[:, 2] - out[:, 0] <= 2.0 * widths + 1e-3).all() and (out[:, 3] - out[:, 1] <= 2.0 * heights + 1e-3).all()
    # rows with no finite answer get the fixed correction
    assert np.allclose(out[2:], CENTERFACE_TO_ANNOTATED.apply(boxes[2:]), atol=1e-3)
    # a fit needs at least one usable pair and one round
    assert not fit_landmark_box_shape(np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 5, 2))).uses_landmarks
    with pytest.raises(ValueError, match="at least one fit"):
        fit_landmark_box_shape(boxes[2:], boxes[2:], marks[2:], rounds=0)


def test_mirrored_landmark_order_is_what_centerface_gives_on_the_mirror_image():
    from maskwatch.runtime.boxes import mirrored_pairs
    from maskwatch.runtime.detectors import make_detector
    from maskwatch.runtime.pipeline import default_sample_image

    image = default_sample_image()[1]
    detector = make_detector("centerface", input_size=640, threshold=0.5, int8=False)
    plain, mirror = detector.detect(image), detector.detect(np.ascontiguousarray(image[:, ::-1]))
    assert len(plain.boxes) == len(mirror.boxes) == 1
    _, boxes, marks = mirrored_pairs(plain.boxes, plain.boxes, plain.landmarks)  # mirrored at x = 0
    shift = np.array([image.shape[1], 0.0])
    assert np.abs(marks + shift - mirror.landmarks).max() < 8.0  # pixels; the eyes are 46 px apart
    assert np.abs(boxes + np.array([image.shape[1], 0, image.shape[1], 0]) - mirror.boxes).max() < 8.0


@pytest.mark.parametrize(
    ("still", "size", "asked", "expected"),
    [
        (True, 960, (None, None), (True, True)),  # photos at the image default: both
        (True, 0, (None, None), (True, True)),  # native size counts as accuracy-first
        (True, 320, (None, None), (True, False)),  # the 320 px speed path: free reshaping only, one pass
        (False, 320, (None, None), (False, False)),  # video, webcams, streams: neither
        (False, 960, (True, True), (True, True)),  # what the user asks for wins
        (True, 960, (False, False), (False, False)),
    ],
)
def test_still_image_defaults_turn_on_refinements_for_photos_only(still, size, asked, expected):
    from maskwatch.runtime.pipeline import still_image_defaults

    assert still_image_defaults(still, size, *asked) == expected


def test_mirrored_pass_maps_back_onto_the_plain_detection_with_left_and_right_kept():
    from maskwatch.runtime.boxes import iou_matrix
    from maskwatch.runtime.detectors import make_detector
    from maskwatch.runtime.pipeline import default_sample_image, mirrored_back

    image = default_sample_image()[1]
    detector = make_detector("centerface", input_size=512)
    plain = detector.detect(image)
    back = mirrored_back(detector.detect(np.ascontiguousarray(image[:, ::-1])), image.shape[1])
    i, j = int(plain.scores.argmax()), int(back.scores.argmax())
    assert iou_matrix(plain.boxes[i : i + 1], back.boxes[j : j + 1])[0, 0] > 0.85
    assert np.abs(plain.landmarks[i] - back.landmarks[j]).max() < 6  # same points, same order (left eye first)
    assert back.landmarks[j, 0, 0] < back.landmarks[j, 1, 0]


def test_pipeline_with_flip_runs_both_passes_fuses_them_and_averages_mirrored_probabilities(tiny_model):
    from maskwatch.runtime.classifier import OnnxMaskClassifier
    from maskwatch.runtime.detectors import Detections
    from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig

    class LeftHalfDetector:
        """One face in the left half of whatever it is given: on the mirror image that is the right half."""

        calls = 0

        def detect(self, image):
            LeftHalfDetector.calls += 1
            h, w = image.shape[:2]
            return Detections(np.array([[0, 0, w / 2, h]], np.float32), np.array([0.9], np.float32))

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 120, 3), np.uint8)
    classifier = OnnxMaskClassifier()  # the shipped model: the tiny one gives nearly the same output for any input
    config = PipelineConfig(flip=True)  # detector "centerface" by name: refinements apply
    pipeline = MaskPipeline(config, detector=LeftHalfDetector(), classifier=classifier)
    result = pipeline(image)
    assert LeftHalfDetector.calls == 2
    assert len(result.faces) == 2  # the halves do not overlap: two faces, each scored as its one sighting
    assert sorted(f.box[0] for f in result.faces) == pytest.approx([0, 60], abs=2)
    for face in result.faces:  # the pipeline asks for the mirrored average
        crop = crop_face(image, face.box, margin=classifier.info.margin, size=classifier.info.input_size)
        expected = classifier.predict_proba([crop], mirrored=True)[0]
        assert np.allclose([face.probs[label] for label in classifier.labels], expected, atol=1e-5)
    crops = [synthetic_face(label, size=96, seed=k) for k, label in enumerate(("with_mask", "without_mask", "mask_incorrect"))]
    crops = [np.ascontiguousarray(np.concatenate([c[:, :60], c[:, :36] // 2], axis=1)) for c in crops]  # lopsided
    both = classifier.predict_proba(crops, mirrored=True)
    plain = classifier.predict_proba(crops)
    mirror = classifier.predict_proba([c[:, ::-1] for c in crops])
    assert np.allclose(both, (plain + mirror) / 2, atol=1e-6) and not np.allclose(both, plain, atol=1e-4)


class _FixedBox:
    """One face at a fixed place, whatever the image."""

    box = np.array([[180, 40, 320, 220]], np.float32)

    def detect(self, image):
        from maskwatch.runtime.detectors import Detections

        return Detections(self.box.copy(), np.array([0.9], np.float32))


def _crops_fed_to(classifier, monkeypatch) -> list[np.ndarray]:
    """Record every crop ``classifier`` is asked to classify."""
    seen: list[np.ndarray] = []
    classify = classifier.predict_proba
    monkeypatch.setattr(classifier, "predict_proba", lambda crops, **kw: seen.extend(crops) or classify(crops, **kw))
    return seen


def test_detected_faces_are_cut_with_the_models_margin_unless_more_is_asked(tmp_path: Path, monkeypatch):
    import cv2

    from maskwatch.cli import app
    from maskwatch.runtime.classifier import OnnxMaskClassifier
    from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig, default_sample_image

    _, image = default_sample_image()
    classifier = OnnxMaskClassifier()
    info = classifier.info
    seen = _crops_fed_to(classifier, monkeypatch)
    for extra in (0.0, 0.3):
        seen.clear()
        MaskPipeline(PipelineConfig(extra_margin=extra), detector=_FixedBox(), classifier=classifier)(image)
        expected = crop_face(image, _FixedBox.box[0], margin=info.margin + extra, size=info.input_size)
        assert np.array_equal(seen[0], expected)
    for bad in (-0.1, float("nan"), 1.5):
        with pytest.raises(ValueError, match="extra_margin"):
            PipelineConfig(extra_margin=bad)
    # the flag reaches the pipeline: what `detect --extra-margin 0.2` writes is what that pipeline classifies
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.ascontiguousarray(image[:, :, ::-1]))
    plain, wide = tmp_path / "plain.jsonl", tmp_path / "wide.jsonl"
    runner = CliRunner()
    one_pass = ["--no-box-shape", "--no-flip", "--no-multi-scale"]
    by_default = _faces_of(runner.invoke(app, ["detect", str(photo), "--json", str(plain), *one_pass]), plain)
    widened = _faces_of(runner.invoke(app, ["detect", str(photo), "--json", str(wide), *one_pass, "--extra-margin", "0.2"]), wide)
    assert [f["box"] for f in by_default] == [f["box"] for f in widened] and len(widened) == 1
    crop = crop_face(image, widened[0]["box"], margin=info.margin + 0.2, size=info.input_size)
    expected = OnnxMaskClassifier().predict_proba([crop])[0]
    assert np.allclose([widened[0]["probs"][label] for label in info.labels], expected, atol=1e-4)
    assert not np.allclose([by_default[0]["probs"][label] for label in info.labels], expected, atol=1e-4)


def test_the_service_cuts_detected_faces_as_detect_does(monkeypatch):
    from maskwatch.runtime.pipeline import MaskPipeline, default_sample_image
    from maskwatch.serve.worker import BatchInference

    _, image = default_sample_image()
    infer = BatchInference()
    monkeypatch.setattr(infer, "detector_for", lambda size: _FixedBox())
    served = _crops_fed_to(infer.classifier, monkeypatch)
    infer([(type("Camera", (), {"detector_size": 320, "min_face_px": 4})(), image)])
    pipeline = MaskPipeline(detector=_FixedBox())
    detected = _crops_fed_to(pipeline.classifier, monkeypatch)
    pipeline(image)
    assert len(served) == len(detected) == 1 and np.array_equal(served[0], detected[0])


def _faces_of(runner_result, path: Path) -> list[dict]:
    assert runner_result.exit_code == 0, runner_result.output
    return [face for line in path.read_text().splitlines() for face in json.loads(line)["faces"]]


def test_detect_refines_photos_by_default_and_leaves_video_alone(tmp_path: Path):
    import cv2

    from maskwatch.cli import app
    from maskwatch.runtime.pipeline import default_sample_image

    runner = CliRunner()
    photo, image = default_sample_image()
    default, plain = tmp_path / "default.jsonl", tmp_path / "plain.jsonl"
    refined = _faces_of(runner.invoke(app, ["detect", photo, "--json", str(default)]), default)
    one_pass = _faces_of(runner.invoke(app, ["detect", photo, "--json", str(plain), "--no-box-shape", "--no-flip"]), plain)
    assert len(refined) == len(one_pass) == 1
    (_, y1, _, y2), (_, q1, _, q2) = refined[0]["box"], one_pass[0]["box"]
    assert (y1 + y2) / 2 > (q1 + q2) / 2 + 0.03 * (q2 - q1)  # reshaped: centred lower (more chin)
    assert refined[0]["probs"] != one_pass[0]["probs"]

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (image.shape[1], image.shape[0]))
    for _ in range(3):
        writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    writer.release()
    video, video_plain = tmp_path / "video.jsonl", tmp_path / "video_plain.jsonl"
    by_default = _faces_of(runner.invoke(app, ["detect", str(clip), "--json", str(video)]), video)
    asked_off = _faces_of(
        runner.invoke(app, ["detect", str(clip), "--json", str(video_plain), "--no-box-shape", "--no-flip"]), video_plain
    )
    assert by_default and [f["box"] for f in by_default] == [f["box"] for f in asked_off]


@pytest.mark.parametrize(
    ("still", "size", "asked", "expected"),
    [
        (True, 960, None, (640,)),  # the image default gets a 640 px pass
        (True, 0, None, (640,)),  # native size too
        (True, 640, None, ()),  # nothing to add at 640 itself
        (True, 320, None, ()),  # nor below it: the speed path stays one pass
        (False, 960, None, ()),  # video, webcams, streams: only when asked
        (False, 960, True, (640,)),
        (True, 960, False, ()),
    ],
)
def test_photos_at_large_detector_sizes_get_a_second_scale(still, size, asked, expected):
    from maskwatch.runtime.pipeline import extra_sizes_for

    assert extra_sizes_for(still, size, asked) == expected


def test_an_extra_scale_runs_its_own_detector_and_is_fused_with_the_main_pass():
    from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig, default_sample_image

    image = default_sample_image()[1]
    both = MaskPipeline(PipelineConfig(detector_size=960, extra_detector_sizes=(640,), min_face_score=0.5))
    assert [d.input_size for d in both.extra_detectors] == [640]
    main_only = MaskPipeline(PipelineConfig(detector_size=960, min_face_score=0.5))
    fused, alone = both.find_faces(image), main_only.find_faces(image)
    assert len(fused.boxes) == len(alone.boxes) == 1  # one face, seen at both scales: fused, not doubled
    assert not np.allclose(fused.boxes, alone.boxes) and np.abs(fused.boxes - alone.boxes).max() < 10


@pytest.mark.parametrize("size", [960, 640, 320])
def test_the_pipeline_reshapes_with_the_box_shape_of_its_detector_size(size: int):
    from maskwatch.runtime.boxes import CENTERFACE_TO_ANNOTATED, CENTERFACE_TO_ANNOTATED_BY_LANDMARKS
    from maskwatch.runtime.pipeline import FIXED_BOX_SHAPE, MaskPipeline, PipelineConfig, default_sample_image

    image = default_sample_image()[1]
    plain = MaskPipeline(PipelineConfig(detector_size=size, min_face_score=0.5)).find_faces(image)
    shaped = MaskPipeline(PipelineConfig(detector_size=size, min_face_score=0.5, box_shape=True)).find_faces(image)
    assert len(plain.boxes) == 1 and plain.landmarks is not None
    expected = (CENTERFACE_TO_ANNOTATED_BY_LANDMARKS if size == 960 else FIXED_BOX_SHAPE).apply(plain.boxes, plain.landmarks)
    assert np.allclose(shaped.boxes, expected, atol=1e-3)
    assert (shaped.crop_boxes is None) == (size != 960)  # crop boxes only where the reported ones moved
    # crops are cut at the fixed correction whatever box is reported: the classifier was chosen on such crops
    crops_at = shaped.boxes if shaped.crop_boxes is None else shaped.crop_boxes
    assert np.allclose(crops_at, CENTERFACE_TO_ANNOTATED.apply(plain.boxes), atol=1e-3)


def test_photo_faces_are_classified_from_the_crop_boxes_not_the_reported_ones():
    from maskwatch.runtime.detectors import Detections
    from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig

    pipeline = MaskPipeline(PipelineConfig(min_face_score=0.1))
    image = _photo_with_a_face()
    face_box = np.array([[60, 30, 100, 90]], np.float32)
    corner_box = np.array([[0, 0, 40, 40]], np.float32)  # noise only
    score = np.array([0.9], np.float32)
    at_face = pipeline.classify_faces(image, Detections(face_box, score)).faces[0]
    reported_elsewhere = pipeline.classify_faces(image, Detections(corner_box, score, crop_boxes=face_box)).faces[0]
    assert reported_elsewhere.probs == pytest.approx(at_face.probs) and np.allclose(reported_elsewhere.box, corner_box)
    at_corner = pipeline.classify_faces(image, Detections(corner_box, score)).faces[0]
    assert at_corner.probs != pytest.approx(at_face.probs)
    # the size floor (--min-face-size) reads the box the user sees, whatever the crop box
    sliver = np.array([[60, 30, 63, 90]], np.float32)
    assert len(pipeline.classify_faces(image, Detections(sliver, score, crop_boxes=face_box)).faces) == 0
    assert len(pipeline.classify_faces(image, Detections(face_box, score, crop_boxes=sliver)).faces) == 1
    with pytest.raises(ValueError, match="crop_boxes must be"):
        Detections(corner_box, score, crop_boxes=np.zeros((2, 4), np.float32))


def _photo_with_a_face() -> np.ndarray:
    """A 120x160 photo: noise around a bright 40x60 'face' whose lower third is dark (a mask)."""
    photo = np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    photo[30:90, 60:100] = 220
    photo[70:90, 60:100] = 30
    return photo


def test_box_cut_copy_is_what_evaluate_makes_of_a_file_cut_at_the_box(tmp_path: Path):
    photo_path, file_path = tmp_path / "photo.png", tmp_path / "cut.png"
    Image.fromarray(_photo_with_a_face()).save(photo_path)
    Image.fromarray(_photo_with_a_face()[30:90, 60:100]).save(file_path)  # a crop set's file, cut exactly at the box
    from maskwatch.data.loading import box_cut_crops

    samples = [
        Sample(photo_path, "mask_incorrect", "scenes", (60.0, 30.0, 100.0, 90.0)),
        Sample(photo_path, "with_mask", "scenes", (300.0, 300.0, 340.0, 360.0)),  # outside the photo
        Sample(photo_path, "with_mask", "scenes", (-50.0, -50.0, -10.0, -10.0)),  # outside, negative: must not wrap
        Sample(photo_path, "with_mask", "scenes", (-10.4, 80.0, 30.0, 140.0)),  # partly outside: clipped to the photo
        Sample(file_path, "with_mask", "x"),  # a whole-face file has no box to cut at
    ]
    positions, crops, problems = box_cut_crops(samples, size=64, margin=0.15)
    assert positions == [0, 3] and crops.shape == (2, 64, 64, 3)
    as_evaluate_cuts_the_file = load_samples([Sample(file_path, "mask_incorrect", "x")], size=64, hash_files=False)
    assert np.array_equal(crops[0], as_evaluate_cuts_the_file.crops[0])
    in_photo = crop_face(_photo_with_a_face(), [60, 30, 100, 90], margin=0.15, size=64)
    assert not np.array_equal(crops[0], in_photo)  # the margin is replicated border, not the photo around the face
    clipped = crop_whole_image(_photo_with_a_face()[80:120, 0:30], margin=0.15, size=64)
    assert np.array_equal(crops[1], clipped)
    assert len(problems) == 2 and all(str(photo_path) in p and "no box-exact copy" in p for p in problems)


def test_box_cut_copies_join_the_train_split_only(tmp_path: Path):
    pytest.importorskip("torch")
    from maskwatch.training.config import TrainConfig
    from maskwatch.training.train import with_box_cut_copies

    photo_path = tmp_path / "photo.png"
    Image.fromarray(_photo_with_a_face()).save(photo_path)
    box = (60.0, 30.0, 100.0, 90.0)
    samples = [
        Sample(photo_path, "mask_incorrect", "scenes", box),
        Sample(photo_path, "with_mask", "scenes", (10.0, 10.0, 40.0, 50.0)),
        Sample(tmp_path / "file.png", "with_mask", "x"),
    ]
    loaded = LoadedSamples(samples, np.zeros((3, 64, 64, 3), np.uint8), {}, [])
    merged, splits, problems = with_box_cut_copies(loaded, ["train", "val", "train"], TrainConfig(input_size=64))
    assert splits == ["train", "val", "train", "train"] and problems == []  # no copy of the val face or the file
    assert merged.samples[3] == samples[0] and merged.crops.shape == (4, 64, 64, 3)
    from maskwatch.data.loading import box_cut_crops

    assert np.array_equal(merged.crops[:3], loaded.crops)
    assert np.array_equal(merged.crops[3], box_cut_crops([samples[0]], size=64, margin=0.15)[1][0])
