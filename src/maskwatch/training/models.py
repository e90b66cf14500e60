"""Model registry: torchvision backbones split into a frozen trunk and a trainable top.

Splitting the network in two (rather than only setting ``requires_grad``) lets training run the
frozen trunk once per image and cache its output - the trick that makes fine-tuning practical on a
2-core CPU - and lets export and Grad-CAM treat the whole thing as one ordinary ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models as tv

from maskwatch.training.weights import load_state_dict, resolve_imagenet_weights


@dataclass(frozen=True)
class Backbone:
    """How to build a torchvision model and cut it into blocks."""

    build: Callable[[], nn.Module]
    blocks: Callable[[nn.Module], list[nn.Module]]
    head_in: Callable[[nn.Module], int]
    default_trainable_blocks: int


def _mobilenet_blocks(model: nn.Module) -> list[nn.Module]:
    return list(model.features)  # stem, 17 inverted residuals, final 1x1 conv


def _resnet_blocks(model: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    return [stem, model.layer1, model.layer2, model.layer3, model.layer4]


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(lambda: tv.mobilenet_v2(weights=None), _mobilenet_blocks, lambda m: m.classifier[-1].in_features, 5),
    "resnet18": Backbone(lambda: tv.resnet18(weights=None), _resnet_blocks, lambda m: m.fc.in_features, 1),
    "resnet50": Backbone(lambda: tv.resnet50(weights=None), _resnet_blocks, lambda m: m.fc.in_features, 1),
}


class MaskClassifierNet(nn.Module):
    """``trunk`` (frozen, always in eval mode) followed by ``top`` (trainable blocks + head)."""

    def __init__(self, trunk: nn.Sequential, top: nn.Sequential, head: nn.Linear, dropout: float):
        super().__init__()
        self.trunk = trunk
        self.top = top
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), head)

    def forward_top(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.top(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_top(self.trunk(images))

    def train(self, mode: bool = True) -> MaskClassifierNet:
        super().train(mode)
        self.trunk.eval()  # frozen BatchNorm keeps its ImageNet statistics
        return self

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional block: Grad-CAM's target layer for every backbone."""
        return self.top[-1] if len(self.top) else self.trunk[-1]


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    trainable_blocks: int | None = None,
    dropout: float = 0.2,
) -> MaskClassifierNet:
    """Build ``name`` with a new ``num_classes`` head; only the last ``trainable_blocks`` train.

    ``trainable_blocks=0`` trains the head only; a number >= the block count fine-tunes everything.
    """
    try:
        backbone = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(BACKBONES)}") from None
    model = backbone.build()
    if pretrained:
        model.load_state_dict(load_state_dict(resolve_imagenet_weights(name)))
    net = MaskClassifierNet(
        nn.Sequential(), nn.Sequential(*backbone.blocks(model)), nn.Linear(backbone.head_in(model), num_classes), dropout
    )
    k = backbone.default_trainable_blocks if trainable_blocks is None else trainable_blocks
    return resplit(net.train(), k)


def resplit(model: MaskClassifierNet, trainable_blocks: int) -> MaskClassifierNet:
    """Cut the blocks into a frozen trunk and a trainable top: only the last ``trainable_blocks`` blocks (and the head)
    train. Also re-cuts a built model, which lets ``--init`` fine-tune a fully fine-tuned checkpoint on a CPU, where
    only the cached-features recipe is fast.
    """
    blocks = [*model.trunk, *model.top]
    k = max(0, min(trainable_blocks, len(blocks)))
    model.trunk, model.top = nn.Sequential(*blocks[: len(blocks) - k]), nn.Sequential(*blocks[len(blocks) - k :])
    for parameter in model.trunk.parameters():
        parameter.requires_grad_(False)
    for parameter in [*model.top.parameters(), *model.head.parameters()]:
        parameter.requires_grad_(True)
    return model.train(model.training)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
