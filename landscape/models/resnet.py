"""CIFAR ResNets exactly as in Li et al. 2018 (tomgoldstein/loss-landscape, ``cifar10/models``).

Parameter names and registration order match the reference code, so its released checkpoints load
strictly and ``model.parameters()`` order equals the order of its direction files (datasets
``0..N`` of ``xdirection``/``ydirection``).

Shape walk for a (B, 3, 32, 32) input, depth = 6n + 2:
    conv1 + bn1 + relu  -> (B, 16, 32, 32)
    layer1 (n blocks)   -> (B, 16, 32, 32)
    layer2 (n blocks)   -> (B, 32, 16, 16)   first block has stride 2
    layer3 (n blocks)   -> (B, 64, 8, 8)     first block has stride 2
    avg_pool2d(8)       -> (B, 64)
    linear              -> (B, num_classes)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from landscape.models.zoo import positive_int

STAGE_PLANES = (16, 32, 64)


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); ``shortcut=False`` drops the skip."""

    __constants__ = ("has_shortcut",)  # TorchScript then prunes the branch it cannot take

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # The -noshort blocks have no ``shortcut`` attribute at all (no keys in the state dict).
        self.has_shortcut = shortcut
        if shortcut:
            self.shortcut = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.has_shortcut:
            out = out + self.shortcut(x)  # not in place: stays safe under torch.func transforms
        return F.relu(out)


def _projection(in_planes: int, planes: int, stride: int) -> nn.Sequential:
    """Identity (empty Sequential) when the shape is kept, else 1x1 conv with stride + BN."""
    if stride == 1 and in_planes == planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(planes),
    )


class CifarResNet(nn.Module):
    """ResNet for 32x32 images with three stages of ``blocks`` BasicBlocks each."""

    def __init__(self, blocks: int, num_classes: int = 10, shortcut: bool = True) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for stage, planes in enumerate(STAGE_PLANES, start=1):
            stride = 1 if stage == 1 else 2
            layer = nn.Sequential()
            for i in range(blocks):
                layer.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            self.add_module(f"layer{stage}", layer)
        self.linear = nn.Linear(STAGE_PLANES[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, 16, 32, 32)
        out = self.layer3(self.layer2(self.layer1(out)))  # (B, 64, 8, 8)
        out = F.avg_pool2d(out, 8).flatten(1)  # (B, 64)
        return self.linear(out)


def _blocks_for_depth(depth: int) -> int:
    """depth = 6n + 2 (two convs per block, three stages, plus conv1 and linear)."""
    return (depth - 2) // 6


def resnet20(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(_blocks_for_depth(20), num_classes)


def resnet20_noshort(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(_blocks_for_depth(20), num_classes, shortcut=False)


def resnet56(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(_blocks_for_depth(56), num_classes)


def resnet56_noshort(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(_blocks_for_depth(56), num_classes, shortcut=False)


def resnet110(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(_blocks_for_depth(110), num_classes)


def resnet110_noshort(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(_blocks_for_depth(110), num_classes, shortcut=False)
