"""Per-point quantities: the one table that engines, the store, plots, info and exports iterate.

Each grid point's evaluation accumulates, batch by batch, a few statistics of the per-sample
losses ``ℓ_i`` and predictions (:class:`PointStats`: the count n, the float64 sum Σℓ, the sum of
squared deviations M2 = Σ(ℓ_i − mean)² and the number of correct top-1 predictions). Every
quantity is a function of those statistics, declared once below; a surface file stores quantity
``q`` of split ``s`` as the dataset ``<s>_<q.suffix>`` (``train_loss``, ``test_acc``, ...).

- ``loss``: Σℓ / n, the exact mean over the set (not a mean of batch means);
- ``acc``: correct / n (NaN when the targets are not class labels);
- ``loss_se``: the standard error of that mean, sqrt(M2 / (n − 1)) / sqrt(n): the sample standard
  deviation of the per-sample losses (ddof = 1) over √n. M2 is combined over batches with Chan
  et al.'s update, ``M2 ← M2 + M2_b + δ² · n·b / (n + b)`` with δ the batch mean minus the running
  mean, so it is exact under any batching. A point is always evaluated whole by one process, so
  workers and MPI ranks change nothing. Two points whose losses differ by less than about twice
  their standard errors differ within sampling noise.

Adding a quantity is one entry in ``TABLE`` (and, if it needs a statistic not kept yet, one more
field of ``PointStats`` in the engine's accumulation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Values = dict[str, float]  # one point's quantities by suffix: {"loss": ..., "acc": ..., ...}


@dataclass
class PointStats:
    """The statistics of K points' per-sample losses, accumulated batch by batch (float64)."""

    n: int
    total: torch.Tensor  # (K,) Σℓ
    m2: torch.Tensor  # (K,) Σ(ℓ − mean)²
    correct: torch.Tensor  # (K,) correct top-1 predictions
    labelled: bool = True  # every batch had class-label targets (accuracy is defined)

    @classmethod
    def zeros(cls, k: int, device: torch.device | str = "cpu") -> PointStats:
        z = torch.zeros(k, dtype=torch.float64, device=device)
        return cls(0, z.clone(), z.clone(), z.clone())

    def add(self, losses: torch.Tensor, correct: torch.Tensor | float | None) -> None:
        """One batch: ``losses`` (K, b) per-sample losses; ``correct`` each point's count of
        correct predictions in it, (K,), or None when the targets are not class labels."""
        losses = losses.double()
        b = int(losses.shape[1])
        if b == 0:
            return
        batch_total = losses.sum(dim=1)
        batch_mean = batch_total / b
        batch_m2 = (losses - batch_mean.unsqueeze(1)).square().sum(dim=1)
        if self.n:
            delta = batch_mean - self.total / self.n
            self.m2 += batch_m2 + delta.square() * (self.n * b / (self.n + b))
        else:
            self.m2 += batch_m2
        self.total += batch_total
        self.n += b
        if correct is None:
            self.labelled = False
        else:
            self.correct += torch.as_tensor(
                correct, dtype=torch.float64, device=self.correct.device
            )

    def values(self) -> list[Values]:
        """Every quantity of ``TABLE`` at each of the K points."""
        k = len(self.total)
        if self.n == 0:
            return [{q.suffix: math.nan for q in TABLE} for _ in range(k)]
        return [{q.suffix: q.value(self, i) for q in TABLE} for i in range(k)]


@dataclass(frozen=True)
class Quantity:
    """One per-point quantity: where it is stored, how it is computed, how it is shown."""

    suffix: str  # stored as <split>_<suffix>
    kind: str  # "loss": plotted and analysed; "acc": a fraction, plotted in %; "se": an error bar
    value: Callable[[PointStats, int], float]  # from point i's statistics
    description: str
    of: str | None = None  # for an error bar: the suffix of the quantity it belongs to


def _loss(s: PointStats, i: int) -> float:
    return float(s.total[i]) / s.n


def _acc(s: PointStats, i: int) -> float:
    return float(s.correct[i]) / s.n if s.labelled else math.nan


def _loss_se(s: PointStats, i: int) -> float:
    if s.n < 2:
        return math.nan
    m2 = max(float(s.m2[i]), 0.0)  # round-off can leave -0.0
    return math.sqrt(m2 / (s.n - 1)) / math.sqrt(s.n)


TABLE: tuple[Quantity, ...] = (
    Quantity("loss", "loss", _loss, "mean loss over the evaluation set"),
    Quantity("acc", "acc", _acc, "fraction of correct top-1 predictions"),
    Quantity(
        "loss_se",
        "se",
        _loss_se,
        "standard error of the mean loss: std of the per-sample losses (ddof=1) / sqrt(n)",
        of="loss",
    ),
)
_BY_SUFFIX = {q.suffix: q for q in TABLE}
# longest first, so that "train_loss_se" is the loss_se of train, not a loss of "train_loss"
_SUFFIXES = sorted(_BY_SUFFIX, key=len, reverse=True)


def dataset_names(split: str) -> list[str]:
    """The datasets a split's quantities are stored in: ``train_loss``, ``train_acc``, ..."""
    return [f"{split}_{q.suffix}" for q in TABLE]


def parse(name: str) -> tuple[str, Quantity] | None:
    """``(split, quantity)`` of a stored name such as ``test_loss_se``; None for other names."""
    for suffix in _SUFFIXES:
        if name.endswith(f"_{suffix}") and len(name) > len(suffix) + 1:
            return name[: -len(suffix) - 1], _BY_SUFFIX[suffix]
    return None


def kind_of(name: str) -> str | None:
    """``loss``, ``acc`` or ``se`` for a stored quantity name; None for anything else."""
    found = parse(name)
    return None if found is None else found[1].kind


def is_value(name: str) -> bool:
    """Whether ``name`` is a stored per-point quantity."""
    return parse(name) is not None


def error_of(name: str) -> str | None:
    """The name of the error bar stored for quantity ``name`` (``train_loss`` → ``train_loss_se``)."""
    found = parse(name)
    if found is None:
        return None
    split, q = found
    bar = next((e for e in TABLE if e.of == q.suffix), None)
    return None if bar is None else f"{split}_{bar.suffix}"
