"""VGG-9 for CIFAR exactly as in Li et al. 2018 (tomgoldstein/loss-landscape, ``cifar10/models``).

Parameter names (``features.{i}``, ``fc.{0,1}``, ``classifier``) and their order match the
reference, including the indices that ReLU and max-pool layers take in ``features``.

Shape walk for a (B, 3, 32, 32) input:
    features: [conv3x3+BN+ReLU] 64, 64, pool -> (B, 64, 16, 16)
              128, 128, pool                 -> (B, 128, 8, 8)
              256, 256, 256, pool            -> (B, 256, 4, 4)
    flatten                                  -> (B, 4096)
    fc: Linear(4096 -> 256), BatchNorm1d, ReLU -> (B, 256)
    classifier: Linear(256 -> num_classes)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from landscape.models.zoo import positive_int

VGG9_LAYERS: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


class VGG(nn.Module):
    """A VGG with BatchNorm after every conv and one hidden fully connected layer."""

    def __init__(
        self, layers: tuple[int | str, ...], num_classes: int = 10, image_size: int = 32
    ) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.features, channels, size = _make_features(layers, image_size)
        self.fc = nn.Sequential(
            nn.Linear(channels * size * size, channels),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x).flatten(1)  # (B, C * s * s)
        return self.classifier(self.fc(out))


def _make_features(
    layers: tuple[int | str, ...], image_size: int
) -> tuple[nn.Sequential, int, int]:
    """Build ``features``; return it with the output channel count and spatial size."""
    modules: list[nn.Module] = []
    channels, size = 3, image_size
    for item in layers:
        if item == "M":
            # ReLU is not in place (the reference's is): same output, safe under torch.func.
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            size = math.ceil(size / 2)
        else:
            width = int(item)
            modules += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
    return nn.Sequential(*modules), channels, size


def vgg9(num_classes: int = 10) -> VGG:
    return VGG(VGG9_LAYERS, num_classes)
