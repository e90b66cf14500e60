import numpy as np
import pytest

from maskwatch.explain.focus import face_box_in_crop, focus_score, lower_face_region
from maskwatch.results import Face
from maskwatch.runtime.scene_eval import Detection, average_precision, score_scenes, voc_ap
from maskwatch.runtime.tracking import Tracker

LABELS = ("with_mask", "without_mask", "mask_incorrect")


def face(box, with_mask_p):
    probs = {"with_mask": with_mask_p, "without_mask": 1 - with_mask_p, "mask_incorrect": 0.0}
    label = max(probs, key=probs.get)
    return Face(np.array(box, np.float32), label, probs[label], probs, 0.9)


def test_tracker_smooths_a_flickering_label_and_keeps_the_id():
    tracker = Tracker(LABELS, smoothing=0.7)
    sequence = [0.9, 0.9, 0.45, 0.9, 0.4, 0.9]  # per-frame classifier flickers twice
    labels, ids = [], []
    for i, p in enumerate(sequence):
        (out,) = tracker.update([face([10 + i, 10, 50 + i, 50], p)])
        labels.append(out.label)
        ids.append(out.track_id)
    assert labels == ["with_mask"] * len(sequence)
    assert ids == [1] * len(sequence)
    assert tracker.counts() == {"people_seen": 1, "compliant": 1, "non_compliant": 0}


def test_tracker_gives_new_people_new_ids():
    tracker = Tracker(LABELS)
    tracker.update([face([0, 0, 10, 10], 0.9)])
    out = tracker.update([face([0, 0, 10, 10], 0.9), face([100, 100, 120, 120], 0.1)])
    assert [f.track_id for f in out] == [1, 2]
    tracker.update([face([0, 0, 10, 10], 0.9), face([100, 100, 120, 120], 0.1)])
    tracker.update([face([0, 0, 10, 10], 0.9), face([100, 100, 120, 120], 0.1)])  # the second person's 3rd hit
    assert tracker.counts() == {"people_seen": 2, "compliant": 1, "non_compliant": 1}


def test_voc_ap_by_hand():
    # 2 truths; ranked detections: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 0.5, 0.5, 1.0
    truths = {"a": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)}
    dets = [
        Detection("a", np.array([0, 0, 10, 10.0]), 0.9),
        Detection("a", np.array([50, 50, 60, 60.0]), 0.8),
        Detection("a", np.array([20, 20, 30, 30.0]), 0.7),
    ]
    ap, recall, precision = average_precision(dets, truths)
    # envelope: p=1 on (0, 0.5], p=2/3 on (0.5, 1] -> 0.5 + 0.5 * 2/3
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert recall.tolist() == [0.5, 0.5, 1.0]
    assert voc_ap(np.array([1.0]), np.array([1.0])) == 1.0


def test_duplicate_detections_count_as_false_positives():
    truths = {"a": np.array([[0, 0, 10, 10]], float)}
    dets = [Detection("a", np.array([0, 0, 10, 10.0]), 0.9), Detection("a", np.array([0, 0, 10, 10.0]), 0.8)]
    ap, _, precision = average_precision(dets, truths)
    assert ap == 1.0 and precision.tolist() == [1.0, 0.5]


def test_scene_scores_per_class_face_and_compliance():
    truth = {"img": [("with_mask", np.array([0, 0, 10, 10.0])), ("mask_incorrect", np.array([20, 0, 30, 10.0]))]}
    predictions = {
        "img": [
            {
                "box": [0, 0, 10, 10],
                "label": "with_mask",
                "score": 0.9,
                "face_score": 1.0,
                "probs": {"with_mask": 0.9, "without_mask": 0.05, "mask_incorrect": 0.05},
            },
            {
                "box": [20, 0, 30, 10],
                "label": "without_mask",
                "score": 0.6,
                "face_score": 1.0,
                "probs": {"with_mask": 0.1, "without_mask": 0.6, "mask_incorrect": 0.3},
            },
        ]
    }
    report = score_scenes(truth, predictions)
    assert report["face_ap"] == 1.0
    assert report["class"]["with_mask"]["ap"] == 1.0
    assert report["class"]["mask_incorrect"]["ap"] == 0.0  # predicted the wrong non-compliant class
    assert np.isnan(report["class"]["without_mask"]["ap"])  # no truth: left out of the mean
    assert report["map_3class"] == 0.5
    assert report["map_compliance"] == 1.0  # without_mask and mask_incorrect are both non-compliant


def test_focus_score_on_maps_with_known_answers():
    cam = np.zeros((100, 100))
    cam[60:90, 30:70] = 1.0  # all mass in the lower face
    region = lower_face_region(np.array([0, 0, 100, 100]))
    assert focus_score(cam, region) == 1.0
    cam = np.zeros((100, 100))
    cam[5:20, 5:95] = 1.0  # all mass on the forehead/hair
    assert focus_score(cam, region) == 0.0
    cam = np.zeros((100, 100))
    cam[40:60, :] = 1.0  # half above the template's top (y=45), half below... by rows
    assert focus_score(cam, np.array([0, 50, 100, 100])) == pytest.approx(0.5)
    assert focus_score(np.zeros((10, 10)), region) == 0.0


def test_landmark_region_spans_nose_to_chin():
    marks = np.array([[30, 40], [70, 40], [50, 60], [35, 75], [65, 75]], np.float32)
    x1, y1, x2, y2 = lower_face_region(np.array([10, 10, 90, 100]), marks)
    assert y1 == pytest.approx(50) and y2 == pytest.approx(100)
    assert x1 < 35 and x2 > 65
    box = face_box_in_crop(160, 0.15)
    assert box[0] == pytest.approx(160 * 0.15 / 1.3)
