"""Augmentation presets (torchvision transforms v2) over square uint8 face crops."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transform(
    *,
    size: int,
    rotation: float = 15.0,
    flip: float = 0.5,
    jitter: float = 0.3,
    min_scale: float = 0.7,
    low_res_prob: float = 0.25,
    low_res_size: int = 24,
) -> v2.Compose:
    """Random resized crop, flip, rotation, colour jitter and, sometimes, a low-resolution round
    trip - the last one makes sharp dataset crops look like the small faces of a crowd camera."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=(min_scale, 1.0), ratio=(0.85, 1.15), antialias=True),
            v2.RandomHorizontalFlip(flip),
            v2.RandomRotation(rotation),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.03),
            v2.RandomApply([v2.Resize(low_res_size, antialias=True), v2.Resize(size, antialias=True)], p=low_res_prob),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform() -> v2.Compose:
    """Crops are already at the model's size (the runtime resizes the same way); just normalise."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
