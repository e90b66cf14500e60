"""Inference without torch: ONNX Runtime classifier, face detectors and the detection pipeline."""
