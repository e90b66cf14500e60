"""Grad-CAM over the classifier with the ``grad-cam`` package, and overlays/grids to look at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from maskwatch.data.transforms import eval_transform
from maskwatch.metrics import read_logit_offsets


class CamClassifier(Protocol):
    """What Grad-CAM needs of a classifier: logits from a batch, and the block whose activations it weighs.

    :class:`maskwatch.training.models.MaskClassifierNet` is one. Typed by shape rather than imported, so that
    ``explain`` does not depend on ``training``: training's report draws Grad-CAM grids with this module.
    """

    @property
    def cam_layer(self) -> torch.nn.Module: ...

    def eval(self) -> CamClassifier: ...

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


class Explainer:
    """Grad-CAM maps for batches of square RGB crops at the model's input size."""

    def __init__(
        self,
        model: CamClassifier,
        labels: Sequence[str],
        temperature: float = 1.0,
        logit_offsets: Sequence[float] | None = None,
    ):
        self.model, self.labels, self.temperature = model.eval(), list(labels), temperature
        offsets = read_logit_offsets(
            {"labels": self.labels, "logit_offsets": None if logit_offsets is None else list(logit_offsets)}
        )
        self.logit_offsets = torch.tensor(offsets, dtype=torch.float32)
        self.cam = GradCAM(model=self.model, target_layers=[self.model.cam_layer])
        self.transform = eval_transform()

    def predict(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Calibrated probabilities (N, K), prior correction included, without the cost of a CAM."""
        with torch.no_grad():
            logits = self.model(torch.stack([self.transform(c) for c in crops]))
        return torch.softmax(logits / self.temperature + self.logit_offsets, dim=1).numpy()

    def __call__(self, crops: Sequence[np.ndarray], target: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(cams (N, S, S) in [0, 1], calibrated probabilities (N, K)); CAM of ``target`` or of the prediction."""
        batch = torch.stack([self.transform(c) for c in crops])
        probs = self.predict(crops)
        classes = [self.labels.index(target)] * len(crops) if target else probs.argmax(1).tolist()
        # The trunk is frozen (no parameter needs a gradient); asking for the input's gradient makes autograd keep the
        # graph through it, so any block - frozen or not - can be the Grad-CAM target layer.
        batch.requires_grad_(True)
        cams = self.cam(input_tensor=batch, targets=[ClassifierOutputTarget(c) for c in classes])
        return np.asarray(cams), probs


def overlay(crop: np.ndarray, cam: np.ndarray) -> np.ndarray:
    return show_cam_on_image(crop.astype(np.float32) / 255.0, cam, use_rgb=True)
