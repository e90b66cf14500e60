"""The photo default's face ranking (maskwatch.runtime.face_ranking): features, fit, mirror symmetry, and where the
runtime uses it."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.runtime.boxes import MIRRORED_LANDMARKS, landmark_features
from maskwatch.runtime.detectors import Detections
from maskwatch.runtime.face_ranking import (
    PHOTO_FACE_RANKING,
    PHOTO_FACE_RANKING_640,
    RANKING_FEATURES,
    FaceRanking,
    fit_face_ranking,
    pass_scores,
    ranking_features,
)
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig, default_sample_image, fused_passes, ranking_for


def _face(x: float, y: float, side: float, score: float) -> tuple[list[float], float, np.ndarray]:
    """A box, its score and landmarks a little turned to the right (so that its mirror image differs)."""
    marks = np.array([[0.35, 0.4], [0.7, 0.42], [0.6, 0.6], [0.4, 0.78], [0.68, 0.8]]) * side + [x, y]
    return [x, y, x + side, y + side], score, marks


def _detections(*faces) -> Detections:
    boxes = np.array([f[0] for f in faces], np.float32).reshape(-1, 4)
    scores = np.array([f[1] for f in faces], np.float32)
    return Detections(boxes, scores, np.array([f[2] for f in faces], np.float32).reshape(-1, 5, 2))


def _mirrored(found: Detections, width: int) -> Detections:
    boxes = found.boxes.copy()
    boxes[:, [0, 2]] = width - found.boxes[:, [2, 0]]
    marks = found.landmarks[:, MIRRORED_LANDMARKS].copy()
    marks[:, :, 0] = width - marks[:, :, 0]
    return Detections(boxes, found.scores, marks)


def test_pass_scores_give_each_pass_its_own_sighting_or_nothing():
    fused = _detections(_face(100, 100, 50, 0.9))
    seen = _detections(_face(100, 100, 50, 0.9))
    elsewhere = _detections(_face(300, 100, 50, 0.8))
    shifted = _detections(_face(105, 100, 50, 0.4))  # IoU 0.82
    faint = _detections(_face(100, 100, 50, 0.1))  # under the sighting floor the fit saw: not a sighting
    broken = _detections(_face(100, 100, 50, 0.7), _face(np.nan, 100, 50, 0.9))  # a NaN box hides nothing
    assert pass_scores(fused.boxes, [seen, elsewhere, shifted, Detections.empty(), faint, broken]) == pytest.approx(
        np.array([[0.9, 0.0, 0.4, 0.0, 0.0, 0.7]])
    )


def test_features_of_no_detections_and_of_faces_without_landmarks_are_well_formed():
    assert ranking_features(Detections.empty(), [Detections.empty()], (480, 640)).shape == (0, len(RANKING_FEATURES))
    assert PHOTO_FACE_RANKING.score(Detections.empty(), [Detections.empty()], (480, 640)).shape == (0,)
    plain = Detections(np.array([[10, 10, 60, 60]], np.float32), np.array([0.7], np.float32))
    features = ranking_features(plain, [plain], (480, 640))
    assert features.shape == (1, len(RANKING_FEATURES)) and np.isfinite(features).all()


def test_a_face_and_its_mirror_image_rank_the_same():
    width = 640
    fused = _detections(_face(100, 120, 60, 0.8), _face(400, 100, 24, 0.5))
    passes = [fused, _detections(_face(102, 120, 58, 0.7))]
    # any weights, not only the shipped ones (whose fit on mirror-averaged features made them symmetric too)
    arbitrary = FaceRanking(tuple(np.random.default_rng(0).normal(size=len(RANKING_FEATURES))), 0.0)
    for ranking in (PHOTO_FACE_RANKING, arbitrary):
        plain = ranking.score(fused, passes, (480, width))
        mirrored = ranking.score(_mirrored(fused, width), [_mirrored(p, width) for p in passes], (480, width))
        assert mirrored == pytest.approx(plain, abs=1e-6)
    # the raw landmark geometry does change under the mirror: the symmetry comes from the features
    flipped = _mirrored(fused, width)
    assert not np.allclose(landmark_features(fused.boxes, fused.landmarks), landmark_features(flipped.boxes, flipped.landmarks))


def test_a_small_face_ranks_lower_next_to_a_large_sure_one_than_alone():
    small = _face(500, 60, 20, 0.6)
    alone = _detections(small)
    crowd = _detections(_face(100, 100, 200, 0.95), small)
    shape = (480, 640)
    alone_score = PHOTO_FACE_RANKING.score(alone, [alone] * 3, shape)[0]
    crowd_scores = PHOTO_FACE_RANKING.score(crowd, [crowd] * 3, shape)
    assert crowd_scores[1] < alone_score < crowd_scores[0]


def test_a_broken_or_degenerate_face_changes_no_other_face_score():
    shape = (480, 640)
    faces = _detections(_face(100, 100, 80, 0.9), _face(400, 60, 20, 0.6))
    reference = PHOTO_FACE_RANKING.score(faces, [faces] * 3, shape)
    sliver = ([600.0, 10.0, 600.0, 40.0], 0.99, _face(585, 10, 30, 0.99)[2])  # zero width, a face's landmarks
    for odd in (_face(np.nan, 10, 30, 0.95), sliver):
        with_odd = _detections(_face(100, 100, 80, 0.9), _face(400, 60, 20, 0.6), odd)
        scores = PHOTO_FACE_RANKING.score(with_odd, [with_odd] * 3, shape)
        assert scores[:2] == pytest.approx(reference, abs=1e-6)
    assert np.isfinite(scores).all()  # the sliver's own score too, though its landmarks sit far outside its box
    landmark_columns = [i for i, name in enumerate(RANKING_FEATURES) if name.startswith("landmark") or "aspect" in name]
    assert np.abs(ranking_features(with_odd, [with_odd], shape)[2, landmark_columns]).max() <= 2.0
    nan_scored = Detections(faces.boxes, np.array([0.9, np.nan], np.float32), faces.landmarks)
    scores = PHOTO_FACE_RANKING.score(nan_scored, [nan_scored], shape)
    assert np.isfinite(scores[0]) and np.isnan(scores[1])  # the detector's own score back: the floor drops it


def test_a_face_every_pass_saw_ranks_above_one_seen_once():
    face = _detections(_face(100, 100, 40, 0.6))
    once = PHOTO_FACE_RANKING.score(face, [face, Detections.empty(), Detections.empty()], (480, 640))
    thrice = PHOTO_FACE_RANKING.score(face, [face, face, face], (480, 640))
    assert thrice[0] > once[0]


def test_the_fit_learns_what_the_best_score_alone_cannot_and_folds_its_scaling_into_the_weights():
    LogisticRegression = pytest.importorskip("sklearn.linear_model").LogisticRegression
    rng = np.random.default_rng(3)
    n = 600
    features = rng.normal(size=(n, len(RANKING_FEATURES))) * rng.uniform(0.1, 5, len(RANKING_FEATURES)) + 3
    covered = features[:, 1] > 3  # "passes that saw it" decides; the best score (column 0) is noise
    fitted = fit_face_ranking(features, covered)
    probability = fitted.probability(features)
    assert ((probability > 0.5) == covered).mean() > 0.95
    mean, scale = features.mean(0), features.std(0)
    reference = LogisticRegression(max_iter=2000).fit((features - mean) / scale, covered)
    assert probability == pytest.approx(reference.predict_proba((features - mean) / scale)[:, 1], abs=1e-6)


def test_a_ranking_must_have_one_weight_per_feature():
    with pytest.raises(ValueError, match="weights for"):
        FaceRanking((1.0, 2.0), 0.0)


PHOTO = {"detector_size": 960, "flip": True, "box_shape": True, "extra_detector_sizes": (640,)}


@pytest.mark.parametrize(
    ("changed", "ranked"),
    [
        ({}, PHOTO_FACE_RANKING),
        ({"detector_int8": False}, PHOTO_FACE_RANKING),
        ({"min_face_score": 0.5}, PHOTO_FACE_RANKING),
        ({"device": "cuda"}, PHOTO_FACE_RANKING),  # fp32 there too
        ({"detector_size": 640, "extra_detector_sizes": ()}, PHOTO_FACE_RANKING_640),
        ({"detector_size": 320, "extra_detector_sizes": (), "flip": False}, None),  # the speed path: not slowed down
        ({"detector_size": 320, "extra_detector_sizes": (), "flip": False, "detector_int8": False}, None),
        ({"detector_size": 320, "extra_detector_sizes": (), "flip": False, "device": "cuda"}, None),  # fp32 on a GPU
        ({"detector_size": 320, "extra_detector_sizes": ()}, None),  # mirrored: not the 320 px photo default
        ({"detector_size": 640, "extra_detector_sizes": (), "flip": False}, None),
        ({"detector_size": 1280}, None),
        ({"detector_size": 0}, None),
        ({"flip": False}, None),
        ({"box_shape": False}, None),
        ({"extra_detector_sizes": ()}, None),
        ({"extra_detector_sizes": (640, 800)}, None),
        ({"detector_int8": True}, None),
        ({"detector": "haar"}, None),
    ],
)
def test_only_the_setting_a_ranking_was_fitted_on_uses_it(changed, ranked):
    assert ranking_for(PipelineConfig(**{**PHOTO, **changed})) is ranked


def test_the_ranked_passes_are_detected_at_the_fitted_floor_whatever_min_face_score():
    ranked = MaskPipeline(PipelineConfig(**PHOTO, min_face_score=0.5))
    assert [d.threshold for d in [ranked.detector, *ranked.extra_detectors]] == [0.2, 0.2]
    assert MaskPipeline(PipelineConfig(detector_size=960, min_face_score=0.5)).detector.threshold == 0.35


def test_photo_faces_report_the_ranking_and_keep_the_detector_score_for_the_floor():
    image = default_sample_image()[1]
    config = PipelineConfig(**PHOTO, min_face_score=0.5)
    pipeline = MaskPipeline(config)
    found = pipeline.find_faces(image)
    assert found.face_scores is not None and len(found.face_scores) == 1
    passes = pipeline.detector_passes(image)
    expected = PHOTO_FACE_RANKING.score(fused_passes(passes), passes, image.shape[:2])
    assert found.face_scores == pytest.approx(expected)  # the fused passes are what is ranked, not the reshaped boxes
    face = pipeline.classify_faces(image, found).faces[0]
    assert face.detector_score == pytest.approx(float(found.scores[0]))
    assert face.face_score == pytest.approx(float(found.face_scores[0])) and face.face_score != face.detector_score
    assert face.to_json()["detector_score"] == round(face.detector_score, 4)
    # --min-face-score reads the detector's score: a face the ranking doubts is still kept when the detector is sure
    doubted = Detections(found.boxes, found.scores, found.landmarks, found.crop_boxes, np.array([0.01], np.float32))
    kept = pipeline.classify_faces(image, doubted).faces
    assert len(kept) == 1 and kept[0].face_score == pytest.approx(0.01)
    with pytest.raises(ValueError, match="face_scores must be"):
        Detections(found.boxes, found.scores, face_scores=np.zeros(2, np.float32))


def test_video_and_the_speed_path_report_the_detector_score_only():
    image = default_sample_image()[1]
    face = MaskPipeline(PipelineConfig(detector_size=320, min_face_score=0.5))(image).faces[0]
    assert face.detector_score is None and "detector_score" not in face.to_json()
