"""The settings of a curve-training run (``landscape connect``, ``landscape.connect``), each
default declared once here: the CLI's help and the API's keywords read them.

Kept free of torch, so that the command line can build its options without loading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from landscape.config import DataSpec, EvalSpec, ModelSpec
from landscape.errors import ConfigError

CURVES = ("bezier", "polychain")  # landscape.curves.KINDS, without importing torch


@dataclass(frozen=True)
class TrainSettings:
    """How the bend C is trained: SGD with momentum (and optional weight decay on C) on the
    training data, ``epochs`` passes of shuffled batches of ``batch_size``, a fresh t ~ U(0, 1)
    at every step; ``seed`` fixes the shuffles, the t's and any dropout, so a resumed run
    gives the uninterrupted run's C. ``save_seconds``: the training state is written to the
    ``.partial`` file beside the output at most this often (and at every epoch's end)."""

    curve: str = "bezier"
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    seed: int = 0
    save_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.curve not in CURVES:
            raise ConfigError(f"unknown curve {self.curve!r}; choose one of {', '.join(CURVES)}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be at least 0, got {self.weight_decay}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be at least 0, got {self.seed}")

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed training must share with the interrupted one (not how often it saves)."""
        out = asdict(self)
        out.pop("save_seconds")
        return out


@dataclass(frozen=True)
class ConnectConfig:
    """A ``landscape connect`` run as strings: the model at ``--checkpoint`` (A), the ``target``
    checkpoint B, the training data, the output file and the training settings."""

    model: ModelSpec
    data: DataSpec
    target: str
    out: str
    train: TrainSettings = field(default_factory=TrainSettings)
    loss: str = EvalSpec.loss
    device: str = EvalSpec.device
