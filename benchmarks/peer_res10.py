"""The classic tutorial pipeline, run in its own environment (OpenCV < 5 for the Caffe importer):
OpenCV's res10 300x300 SSD face detector, then a MobileNetV2 classifier on the face box.

Called by benchmarks/peers.py; prints one JSON object (timings) and can write detect-style JSON Lines
for scene scoring. Needs only numpy, opencv-python-headless<5 and onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort


class Res10MobileNet:
    def __init__(self, prototxt: str, caffemodel: str, classifier: str, labels: list[str], size: int, threshold: float = 0.5):
        self.net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(classifier, options, providers=["CPUExecutionProvider"])
        self.labels, self.size, self.threshold = labels, size, threshold
        self.mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
        self.std = np.array([0.229, 0.224, 0.225], np.float32) * 255

    def __call__(self, bgr: np.ndarray) -> tuple[list[dict], dict]:
        h, w = bgr.shape[:2]
        t0 = time.perf_counter()
        blob = cv2.dnn.blobFromImage(cv2.resize(bgr, (300, 300)), 1.0, (300, 300), (104.0, 177.0, 123.0))
        self.net.setInput(blob)
        out = self.net.forward()[0, 0]
        keep = out[out[:, 2] >= self.threshold]
        boxes = np.clip(keep[:, 3:7] * [w, h, w, h], 0, [w, h, w, h])
        t1 = time.perf_counter()
        crops = []
        sizes = boxes[:, 2:] - boxes[:, :2]
        usable = (sizes >= 2).all(axis=1)  # the SSD sometimes returns boxes that collapse at the border
        boxes, keep = boxes[usable], keep[usable]
        for x1, y1, x2, y2 in boxes.astype(int):
            face = bgr[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
            crops.append(cv2.resize(cv2.cvtColor(face, cv2.COLOR_BGR2RGB), (self.size, self.size)))
        faces = []
        if crops:
            batch = ((np.stack(crops).astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
            logits = self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch)})[0]
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            for box, p, score in zip(boxes, probs, keep[:, 2]):
                k = int(p.argmax())
                faces.append(
                    {
                        "box": [float(v) for v in box],
                        "label": self.labels[k],
                        "score": float(p[k]),
                        "face_score": float(score),
                        "probs": dict(zip(self.labels, map(float, p))),
                    }
                )
        t2 = time.perf_counter()
        return faces, {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prototxt", required=True)
    parser.add_argument("--caffemodel", required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--labels", default="with_mask,without_mask,mask_incorrect")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", nargs="*", default=[], help="JPEG files to time")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--scenes", type=Path, help="folder of scene images to predict")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(2)
    pipeline = Res10MobileNet(args.prototxt, args.caffemodel, args.classifier, args.labels.split(","), args.size, args.threshold)
    timings = {}
    for path in args.frames:
        data = np.fromfile(path, np.uint8)
        totals = []
        for i in range(args.repeat + 3):
            started = time.perf_counter()
            faces, _ = pipeline(cv2.imdecode(data, cv2.IMREAD_COLOR))
            if i >= 3:
                totals.append((time.perf_counter() - started) * 1e3)
        timings[path] = {"ms": float(np.median(totals)), "faces": len(faces)}
    if args.scenes and args.json_out:
        with open(args.json_out, "w") as handle:
            for image in sorted(args.scenes.iterdir()):
                faces, _ = pipeline(cv2.imread(str(image)))
                handle.write(json.dumps({"source": str(image), "frame": 0, "faces": faces}) + "\n")
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
