"""The detection pipeline: find faces, crop them as in training, classify, time each stage."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from maskwatch.crop import crop_face
from maskwatch.results import Face, FrameResult
from maskwatch.runtime.assets import SAMPLE_IMAGE, asset_path
from maskwatch.runtime.boxes import (
    CENTERFACE_TO_ANNOTATED,
    CENTERFACE_TO_ANNOTATED_BY_LANDMARKS,
    MIRRORED_LANDMARKS,
    LandmarkBoxShape,
    fuse_passes,
)
from maskwatch.runtime.classifier import OnnxMaskClassifier
from maskwatch.runtime.detectors import Detections, FaceDetector, int8_by_default, make_detector
from maskwatch.runtime.face_ranking import PHOTO_FACE_RANKINGS, SIGHTING_FLOOR, FaceRanking
from maskwatch.runtime.selfcheck import check_outputs

log = logging.getLogger(__name__)

#: Detected faces whose shorter side is below this many image pixels are dropped. A higher floor also drops small faces
#: people annotate and lowers AP (benchmarks/min_face_size.py; README, "Smallest face kept").
DEFAULT_MIN_FACE_SIZE = 6.0


@dataclass(frozen=True)
class PipelineConfig:
    """Options of the whole pipeline (detector, crop, classifier), mapped 1:1 to ``maskwatch detect`` flags. The
    still-image refinements are off here; ``detect`` turns them on for photos (:func:`still_image_defaults`)."""

    model: str | None = None  # ONNX classifier; None: the shipped int8 model
    detector: str = "centerface"
    detector_size: int = 640  # CenterFace input, longer side (0: the image's own size)
    min_face_score: float = 0.2
    min_face_size: float = DEFAULT_MIN_FACE_SIZE  # pixels, shorter side of the box
    uncertain_below: float = 0.5  # faces whose top probability is lower are flagged uncertain
    device: str = "cpu"
    threads: int = 0
    detector_int8: bool | None = None  # CenterFace's int8 copy; None: below 640 px on the CPU (detectors.INT8_BELOW_SIZE)
    # Still-image refinements (the CLI turns them on for photos; see still_image_defaults and extra_sizes_for):
    # reshape CenterFace's boxes to the face extent people annotate (box_shape_for: by the landmarks or fixed; free),
    # run detector and classifier on the mirror image too, fusing boxes and averaging probabilities (twice the time
    # of both), and run CenterFace at extra input sizes, fused the same way.
    box_shape: bool = False
    flip: bool = False
    extra_detector_sizes: tuple[int, ...] = ()  # more CenterFace passes at these input sizes, fused with the others
    # Cut detected faces with this much more margin than the model's (fraction of the box's longer side). 0: exactly as
    # training cut annotated faces. benchmarks/detected_face_margin.py measures whether a classifier gains from more.
    extra_margin: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.extra_margin <= 1.0:  # also refuses NaN
            raise ValueError(f"extra_margin {self.extra_margin}: must be between 0 and 1")
        if not 0.0 <= self.min_face_size < float("inf"):
            raise ValueError(f"min_face_size {self.min_face_size}: must be a number of pixels, 0 or more")


#: Detector inputs from which still images get the mirrored pass by default: the accuracy-first sizes. Below it (the
#: 320 px speed path, video) one pass only.
FLIP_FROM_SIZE = 640


#: The fixed correction as a landmark map that ignores the landmarks.
FIXED_BOX_SHAPE = LandmarkBoxShape.from_box_shape(CENTERFACE_TO_ANNOTATED)


def box_shape_for(detector_size: int) -> LandmarkBoxShape:
    """The box reshaping of a detector size. Read from the landmarks above :data:`MULTI_SCALE_SIZE` (the 960 px image
    default, where photos also get the 640 px pass): the map was fitted there, and on the val photos of both scene sets
    it lifts face AP and 3-class mAP and leaves ``mask_incorrect`` AP as it was. The fixed correction at 640 px and
    below, and at the native size (not measured): at 640 px the landmarks lifted scenes-ilc val face AP (0.7766 ->
    0.8068) but moved two borderline incorrectly worn masks under IoU 0.5 (``mask_incorrect`` AP 0.705 -> 0.647); at
    320 px they lowered it (0.7230 -> 0.7155, ``evaluate-scenes``). Either way the classifier's crops are cut at the
    fixed correction (:meth:`MaskPipeline.find_faces`); README, "Boxes placed by the landmarks"."""
    return CENTERFACE_TO_ANNOTATED_BY_LANDMARKS if detector_size > MULTI_SCALE_SIZE else FIXED_BOX_SHAPE


def still_image_defaults(still: bool, detector_size: int, box_shape: bool | None, flip: bool | None) -> tuple[bool, bool]:
    """(box_shape, flip) for a run: what the user asked for, else on for still images (flip only from
    :data:`FLIP_FROM_SIZE` px, or at the native size 0), off for video, webcams and streams."""
    accurate = detector_size == 0 or detector_size >= FLIP_FROM_SIZE
    return (
        still if box_shape is None else box_shape,
        (still and accurate) if flip is None else flip,
    )


#: The second detector scale photos get by default when the main one is larger (the 960 px image default): large
#: faces, which CenterFace finds less well when upscaled, are found at 640 px (val photos of both scene sets: face AP
#: 0.8118 -> 0.8224 on scenes-ilc, 0.8688 -> 0.8818 on the Kaggle scenes, on top of the mirrored pass and reshaping;
#: ``benchmarks/detector_boxes.py``).
MULTI_SCALE_SIZE = 640


def extra_sizes_for(still: bool, detector_size: int, multi_scale: bool | None) -> tuple[int, ...]:
    """The extra detector sizes of a run: :data:`MULTI_SCALE_SIZE` for photos whose main size is larger (or native),
    when asked or by default; none for video, webcams and streams unless asked."""
    larger = detector_size == 0 or detector_size > MULTI_SCALE_SIZE
    wanted = still if multi_scale is None else multi_scale
    return (MULTI_SCALE_SIZE,) if wanted and larger else ()


def ranking_for(config: PipelineConfig) -> FaceRanking | None:
    """The face ranking of a run: the one of :data:`~maskwatch.runtime.face_ranking.PHOTO_FACE_RANKINGS` fitted on
    exactly this setting (fp32 CenterFace at 960 or 640 px with the passes photos get by default there, boxes
    reshaped), none otherwise: not at 320 px (the speed path), and video, webcams and streams reshape no box, so they
    keep the detector's score. On the val photos at 960 px it lifted scenes-ilc face AP 0.829 -> 0.844 and 3-class mAP 0.769
    -> 0.787, the Kaggle scenes' 3-class mAP 0.712 -> 0.720 (face AP 0.9005 -> 0.8994); README, "Ranking photo faces"."""
    size = config.detector_size
    ranking = PHOTO_FACE_RANKINGS.get(size)
    if ranking is None or config.detector != "centerface" or not config.box_shape:
        return None
    int8 = config.detector_int8 if config.detector_int8 is not None else config.device == "cpu" and int8_by_default(size)
    fitted_setting = (
        config.flip == still_image_defaults(True, size, None, None)[1]
        and tuple(config.extra_detector_sizes) == extra_sizes_for(True, size, None)
        and int8 == int8_by_default(size)
    )
    return ranking if fitted_setting else None


def reshaped(
    found: Detections,
    shape: tuple[int, int],
    box_shape: LandmarkBoxShape = FIXED_BOX_SHAPE,
    crop_shape: LandmarkBoxShape | None = None,
) -> Detections:
    """``found`` with its boxes given the annotated-face extent by ``box_shape`` (:func:`box_shape_for` a detector
    size) and, if ``crop_shape`` differs from it, crop boxes of that shape; all clipped to the image. A face the image
    edge cuts gets the fixed correction: its landmarks are not clipped with its box, and on the train and val photos
    of both scene sets such faces were boxed a little worse by the landmarks (val: 14 of 15 at IoU 0.5 against 15)."""

    def placed(shape_of: LandmarkBoxShape) -> np.ndarray:
        boxes = shape_of.apply(found.boxes, found.landmarks)
        cut = touching_edge(found.boxes, shape)
        boxes[cut] = shape_of.fallback.apply(found.boxes[cut])
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, shape[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, shape[0])
        return boxes

    crops = None if crop_shape in (None, box_shape) else placed(crop_shape)
    return Detections(placed(box_shape), found.scores, found.landmarks, crops, found.face_scores)


def touching_edge(boxes: np.ndarray, shape: tuple[int, int], within: float = 1.0) -> np.ndarray:
    """Which boxes reach within ``within`` pixels of the edge of an image of ``shape`` (height, width)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return (boxes[:, :2].min(1) <= within) | (boxes[:, 2] >= shape[1] - within) | (boxes[:, 3] >= shape[0] - within)


def mirrored_back(found: Detections, width: int) -> Detections:
    """Detections made on the mirror image, in the image's own coordinates (landmarks: left and right swapped back)."""
    boxes = found.boxes.copy()
    boxes[:, [0, 2]] = width - found.boxes[:, [2, 0]]
    landmarks = None
    if found.landmarks is not None:
        landmarks = found.landmarks[:, MIRRORED_LANDMARKS].copy()  # eyes, nose, mouth corners: left <-> right
        landmarks[:, :, 0] = width - landmarks[:, :, 0]
    return Detections(boxes, found.scores, landmarks)


def fused_passes(passes: list[Detections]) -> Detections:
    """The passes' boxes fused (:func:`~maskwatch.runtime.boxes.fuse_passes`); each face keeps its best-scored
    member's landmarks."""
    boxes, scores, leaders = fuse_passes([(found.boxes, found.scores) for found in passes])
    landmarks = None
    if all(found.landmarks is not None for found in passes):
        landmarks = np.concatenate([found.landmarks for found in passes])[leaders].reshape(-1, 5, 2)
    return Detections(boxes, scores, landmarks)


def warn_if_departed(classifier: OnnxMaskClassifier) -> None:
    """One warning when this CPU's outputs differ from those recorded at export (8 small inputs, a few ms)."""
    check = check_outputs(classifier)
    if check is not None and not check.ok:
        log.warning(
            "%s: this CPU's results %s; run `maskwatch check-model` for details, or use an fp32 model (--model)",
            classifier.path,
            check.summary(),
        )


class MaskPipeline:
    """Face detector + crop + mask classifier: faces and mask labels for one RGB image at a time; sessions are
    built once."""

    def __init__(
        self,
        config: PipelineConfig = PipelineConfig(),
        *,
        detector: FaceDetector | None = None,
        classifier: OnnxMaskClassifier | None = None,
    ):
        self.config = config
        self.classifier = classifier or OnnxMaskClassifier(config.model, device=config.device, threads=config.threads)
        warn_if_departed(self.classifier)
        options: dict = {"device": config.device, "threads": config.threads}
        self.ranking = ranking_for(config) if detector is None else None
        if config.detector == "centerface":
            threshold = min(config.min_face_score, 0.35)
            if self.ranking is not None:  # the passes the ranking reads are the ones it was fitted on, whatever the floor
                threshold = min(threshold, SIGHTING_FLOOR)
            options.update(input_size=config.detector_size, threshold=threshold, int8=config.detector_int8)
        self.detector = detector or make_detector(config.detector, **options)
        self.extra_detectors = [
            make_detector("centerface", **{**options, "input_size": size})
            for size in (config.extra_detector_sizes if config.detector == "centerface" and detector is None else ())
        ]

    @property
    def margin(self) -> float:
        """The margin detected faces are cut with: the model's, plus ``extra_margin`` if asked."""
        return self.classifier.info.margin + self.config.extra_margin

    def find_faces(self, image: np.ndarray) -> Detections:
        """The detector's faces, with the still-image refinements the config asks for (CenterFace only: the box
        shape was fitted to its boxes). Reshaped boxes are placed by the landmarks where :func:`box_shape_for` says
        so, but the classifier still cuts at the fixed correction: every classifier was chosen on val crops cut
        there, and cut at the landmark boxes the val photos' ``mask_incorrect`` AP fell (0.717 -> 0.707)."""
        passes = self.detector_passes(image)
        if self.config.detector != "centerface":
            return passes[0]
        found = fused_passes(passes) if len(passes) > 1 else passes[0]
        if self.ranking is not None:
            found = replace(found, face_scores=self.ranking.score(found, passes, image.shape[:2]))
        if self.config.box_shape:
            found = reshaped(found, image.shape[:2], box_shape_for(self.config.detector_size), crop_shape=FIXED_BOX_SHAPE)
        return found

    def detector_passes(self, image: np.ndarray) -> list[Detections]:
        """Each detector pass the config asks for, in image coordinates, before fusion: as given, mirrored (if
        ``flip``), then at each extra size (CenterFace only)."""
        passes = [self.detector.detect(image)]
        if self.config.detector != "centerface":
            return passes
        if self.config.flip:
            passes.append(mirrored_back(self.detector.detect(np.ascontiguousarray(image[:, ::-1])), image.shape[1]))
        return passes + [extra.detect(image) for extra in self.extra_detectors]

    def __call__(self, image: np.ndarray, *, source: str = "<array>", frame: int = 0) -> FrameResult:
        t0 = time.perf_counter()
        found = self.find_faces(image)
        detect_ms = (time.perf_counter() - t0) * 1e3
        result = self.classify_faces(image, found, source=source, frame=frame)
        result.timings_ms = {"detect": detect_ms, **result.timings_ms}
        return result

    def classify_faces(self, image: np.ndarray, found: Detections, *, source: str = "<array>", frame: int = 0) -> FrameResult:
        """Faces ``found`` in ``image`` that pass the score and size floors, cut and classified (benchmarks that
        compare box refinements on detections made once call this directly)."""
        t1 = time.perf_counter()
        sizes = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])  # as reported
        cut_at = found.boxes if found.crop_boxes is None else found.crop_boxes
        keep = np.nonzero((found.scores >= self.config.min_face_score) & (sizes >= self.config.min_face_size))[0]
        size = self.classifier.info.input_size
        crops = [crop_face(image, cut_at[i], margin=self.margin, size=size) for i in keep]
        t2 = time.perf_counter()
        probs = self.classifier.predict_proba(crops, mirrored=self.config.flip)
        t3 = time.perf_counter()
        labels = self.classifier.labels
        faces = []
        for row, i in zip(probs, keep):
            best = int(row.argmax())
            faces.append(
                Face(
                    box=found.boxes[i],
                    label=labels[best],
                    score=float(row[best]),
                    probs={label: float(p) for label, p in zip(labels, row)},
                    face_score=float(found.scores[i] if found.face_scores is None else found.face_scores[i]),
                    detector_score=None if found.face_scores is None else float(found.scores[i]),
                    landmarks=None if found.landmarks is None else found.landmarks[i],
                    uncertain=bool(row[best] < self.config.uncertain_below),
                )
            )
        timings = {"crop": (t2 - t1) * 1e3, "classify": (t3 - t2) * 1e3}
        return FrameResult(source, frame, faces, size=(image.shape[1], image.shape[0]), timings_ms=timings)


def default_sample_image() -> tuple[str, np.ndarray]:
    """The built-in demo input: NASA's public-domain astronaut portrait, shipped as package data so that the
    runtime install needs no scikit-image (see ``assets/SAMPLE.md``)."""
    from maskwatch.imaging import load_rgb

    path = asset_path(SAMPLE_IMAGE)
    return str(path), load_rgb(path)


def model_path_or_default(path: str | Path | None) -> str | None:
    return None if path in (None, "default") else str(path)


# The names before the pipeline was named for what it is; kept for one release.
DetectorConfig = PipelineConfig
MaskDetector = MaskPipeline
