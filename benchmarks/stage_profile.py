"""Where one image or video frame's time goes, stage by stage, in one process (what to attack first).

Stages: decode (+ EXIF; PIL and the OpenCV fast path side by side), detector pre-processing (resize, layout),
detector (ONNX Runtime), detector post-processing (peaks, NMS), crops, classifier (pre-processing + ONNX Runtime),
tracking (video), JSON, drawing. Photos: the scene photos with the most faces; video: the 640x480 panning clip of
``whole_process.py``. Every stage is timed on every item in turn, ``--rounds`` times; medians per item are summed.

    python benchmarks/stage_profile.py --images 30 --video-frames 60 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from maskwatch.crop import crop_face
from maskwatch.draw import annotate
from maskwatch.fastjpeg import load_plain_jpeg
from maskwatch.imaging import MAX_PIXELS, _to_rgb_uint8
from maskwatch.runtime.detectors import decode_centerface, nms
from maskwatch.runtime.pipeline import MaskPipeline, PipelineConfig
from maskwatch.runtime.tracking import Tracker

HERE = Path(__file__).resolve().parent


def _whole_process():
    spec = importlib.util.spec_from_file_location("whole_process", HERE / "whole_process.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pil_decode(path: Path) -> np.ndarray:
    """The decode path before issue 15 (PIL, EXIF transpose, mode conversion)."""
    with Image.open(path) as image:
        image.load()
        return _to_rgb_uint8(ImageOps.exif_transpose(image) or image)


def profile_frame(pipeline: MaskPipeline, rgb: np.ndarray, tracker: Tracker | None, times: dict[str, list[float]]) -> None:
    """One image through every stage of ``MaskPipeline.__call__`` and the output, timing each."""
    det, clf = pipeline.detector, pipeline.classifier
    clock = time.perf_counter
    t = [clock()]
    height, width = rgb.shape[:2]
    new_h, new_w = det._scaled_shape(height, width)
    blob = np.ascontiguousarray(cv2.resize(rgb, (new_w, new_h)).transpose(2, 0, 1)[None], dtype=np.float32)
    t.append(clock())
    heatmap, scale, offset, marks = det.session.run(None, {det.input_name: blob})
    t.append(clock())
    boxes, scores, _ = decode_centerface(heatmap[0, 0], scale[0], offset[0], marks[0], det.threshold)
    nms(boxes, scores, det.nms_iou)
    t.append(clock())
    result = pipeline(rgb)  # the real call, for crops/classifier split and for the outputs below
    found = [f.box for f in result.faces]
    t.append(clock())
    crops = [crop_face(rgb, box, margin=pipeline.margin, size=clf.info.input_size) for box in found]
    t.append(clock())
    clf.predict_proba(crops)
    t.append(clock())
    if tracker is not None:
        result.faces = tracker.update(result.faces)
        result.counts = tracker.counts()
    t.append(clock())
    json.dumps(result.to_json())
    t.append(clock())
    annotate(rgb, result.faces, counts=result.counts)
    t.append(clock())
    names = ["detector pre", "detector", "detector post", None, "crops", "classifier", "tracking", "JSON", "drawing"]
    for name, a, b in zip(names, t, t[1:]):
        if name is not None:
            times[name].append((b - a) * 1e3)


def table(title: str, per_item: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(v) for name, v in per_item.items()}
    total = sum(v for k, v in medians.items() if k != "decode (PIL, before)")
    print(f"\n{title}\n{'stage':28s} {'ms':>7s} {'share':>6s}")
    for name, value in medians.items():
        share = "" if name == "decode (PIL, before)" else f"{100 * value / total:5.1f}%"
        print(f"{name:28s} {value:7.2f} {share:>6s}")
    print(f"{'total (with fast decode)':28s} {total:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--video-frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crowded", action="store_true", help="the photos with the most faces, not a spread")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mw-profile-"))
    helpers = _whole_process()
    photos = sorted(helpers.crowd_folder(work, args.images, crowded=args.crowded).iterdir())
    clip = helpers.video_clip(work, args.video_frames)
    for label, size, items in (
        ("folder of scene photos", 320, photos),
        ("folder of scene photos", 960, photos),
        ("video 640x480", 320, [clip]),
    ):
        pipeline = MaskPipeline(PipelineConfig(detector_size=size))
        times: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for item in items:
                if item.suffix == ".mp4":
                    capture, tracker = cv2.VideoCapture(str(item)), Tracker(pipeline.classifier.labels)
                    while True:
                        t0 = time.perf_counter()
                        ok, bgr = capture.read()
                        if not ok:
                            break
                        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                        times["decode"].append((time.perf_counter() - t0) * 1e3)
                        profile_frame(pipeline, rgb, tracker, times)
                    capture.release()
                    continue
                t0 = time.perf_counter()
                pil_decode(item)
                t1 = time.perf_counter()
                rgb = load_plain_jpeg(str(item), max_pixels=MAX_PIXELS)
                rgb = pil_decode(item) if rgb is None else rgb
                t2 = time.perf_counter()
                times["decode (PIL, before)"].append((t1 - t0) * 1e3)
                times["decode"].append((t2 - t1) * 1e3)
                profile_frame(pipeline, rgb, None, times)
        table(f"{label}, detector {size}, median ms per image/frame", times)


if __name__ == "__main__":
    main()
