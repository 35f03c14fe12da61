"""Small built-in networks for quick runs and tests: an MLP and a LeNet-5 style CNN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from landscape.errors import ConfigError


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model argument {name} must be a positive integer, got {value!r}")
    return value


class MLP(nn.Module):
    """``depth`` hidden Linear+ReLU layers of width ``hidden``, then a Linear classifier.

    Inputs of any shape (B, ...) are flattened to (B, in_features). Parameters are named
    ``layers.{0,2,4,...}.weight/bias`` (odd indices are the ReLUs).
    """

    def __init__(
        self, in_features: int = 64, hidden: int = 64, depth: int = 2, num_classes: int = 10
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden)):
            positive_int(name, value)
        positive_int("num_classes", num_classes)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ConfigError(f"model argument depth must be an integer >= 0, got {depth!r}")
        modules: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            modules += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        modules.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))  # (B, in_features) -> (B, num_classes)


class LeNet(nn.Module):
    """LeNet-5 style: conv(6, 5x5)-relu-pool-conv(16, 5x5)-relu-pool-fc120-fc84-fc(num_classes).

    No padding, so a side of s pixels becomes ((s - 4) // 2 - 4) // 2: 5 for 32, 4 for 28.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("num_classes", num_classes)
        side = _lenet_side(positive_int("image_size", image_size))
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 6, (s-4)//2, ...)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)  # (B, 16, side, side)
        out = F.relu(self.fc1(out.flatten(1)))
        out = F.relu(self.fc2(out))
        return self.fc3(out)


def _lenet_side(image_size: int) -> int:
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ConfigError(
            f"model argument image_size must be at least 16 for lenet, got {image_size}"
        )
    return side


def mlp(in_features: int = 64, hidden: int = 64, depth: int = 2, num_classes: int = 10) -> MLP:
    return MLP(in_features, hidden, depth, num_classes)


def lenet(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> LeNet:
    return LeNet(in_channels, image_size, num_classes)
