"""Focus guidance: a loss that asks the class evidence to come from the lower face (nose, mouth, chin).

For a network that ends in global average pooling and one linear layer - every backbone here - Grad-CAM on the
last block is exactly the classic CAM: the mean gradient of logit ``c`` over a feature map is ``w_c / (H * W)``
everywhere, so the map is ``relu(sum_k w_ck * A_k)`` up to scale, and the logit is that map's spatial mean (before
the ReLU) plus the bias. The score ``maskwatch explain`` reports can therefore be computed, differentiably, from
the activations training already has: no second backward pass, no hooks. Asking that score to be high is a
"right for the right reasons" penalty: a decision from hair, background or a dataset's framing costs loss.

The region masks come from the same place as the reported score (:func:`maskwatch.explain.focus.locate_lower_face`:
CenterFace landmarks, else a face-box template), drawn once per clean crop and moved with each augmented view by
torchvision's geometric transforms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskwatch.explain.focus import locate_lower_face, region_mask
from maskwatch.progress import track

#: Side of the stored region masks (and of the CAM when scored): on 48 real test crops at 160 px this grid differed
#: from pytorch-grad-cam's full-size score by 0.001 at most, and it keeps 5 views of 4k faces in ~40 MB.
MASK_GRID = 32


def lower_face_masks(crops: np.ndarray, margins: Sequence[float | None], detector) -> tuple[np.ndarray, float]:
    """(N, S, S) uint8 lower-face masks at crop size, and the share placed from landmarks (else the template)."""
    masks = np.zeros(crops.shape[:3], np.uint8)
    found = 0
    for i in track(range(len(crops)), description="lower-face regions", total=len(crops)):
        region, used_landmarks = locate_lower_face(detector, crops[i], margin=margins[i])
        masks[i] = region_mask(region, crops.shape[1])
        found += used_landmarks
    return masks, found / max(len(crops), 1)


def pool_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N, S, S) 0/1 masks -> (N, MASK_GRID, MASK_GRID) covered fractions (float16, to keep in memory)."""
    pooled = F.adaptive_avg_pool2d(masks.float().unsqueeze(1), MASK_GRID).squeeze(1)
    return pooled.half()


def class_maps(activations: torch.Tensor, head: torch.nn.Linear, classes: torch.Tensor) -> torch.Tensor:
    """(N, H, W) class-``classes`` activation maps before any ReLU; their spatial mean plus the bias is the logit."""
    return torch.einsum("nchw,nc->nhw", activations, head.weight[classes])


def _to_grid(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return F.interpolate(maps.unsqueeze(1), size=masks.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)


def map_focus(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-sample focus score of ``maps`` over ``masks`` (N, G, G), as pytorch-grad-cam scales a map.

    pytorch-grad-cam clips the map at zero, shifts its minimum to zero, divides by its maximum and resizes it
    bilinearly to the input; the share of mass inside the region is then unaffected by the resize target, so a
    ``G x G`` grid stands in for the full input size.
    """
    cam = torch.relu(maps)
    flat = cam.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    cam = _to_grid((cam - low) / (high - low + 1e-7), masks)
    inside = (cam * masks.float()).flatten(1).sum(1)
    return inside / (cam.flatten(1).sum(1) + 1e-7)


def lower_face_evidence(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of the (un-clipped) map over the lower face: the class evidence that region holds, in logit units."""
    weights = masks.float()
    return (_to_grid(maps, masks) * weights).flatten(1).sum(1) / (weights.flatten(1).sum(1) + 1e-7)


def cam_focus(activations: torch.Tensor, head: torch.nn.Linear, classes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Focus score of each sample's class-``classes`` Grad-CAM - what ``maskwatch explain`` reports."""
    return map_focus(class_maps(activations, head, classes), masks)


def focus_penalty(
    maps: torch.Tensor, masks: torch.Tensor, *, goal: float, min_evidence: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, focus): the mean shortfall of focus below ``goal`` plus that of lower-face evidence below ``min_evidence``.

    The first term alone has a way out: a map that is negative everywhere has no Grad-CAM at all (focus 0, and no
    gradient), and a class can still win by the other classes' maps being more negative. Asking the lower face to
    hold positive evidence for the true class closes it. Faces past both bars cost nothing, so accuracy keeps the last word.
    """
    focus = map_focus(maps, masks)
    shortfall = torch.relu(goal - focus) + torch.relu(min_evidence - lower_face_evidence(maps, masks))
    return shortfall.mean(), focus
