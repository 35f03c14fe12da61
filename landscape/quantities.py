"""Per-point quantities: the one table that engines, the store, plots, info and exports iterate.

Each grid point's evaluation gathers, batch by batch, its per-sample losses ``ℓ_i`` and its count of
correct top-1 predictions (:class:`PointStats`), and reduces the losses once, when the point is
done, in one fixed procedure: float64 pairwise sums of the whole vector (numpy's, whose order
depends on the vector's length alone), so no batch size, engine chunking or accumulation order
changes a bit of a value computed from the same per-sample losses. Every quantity is a function
of those statistics, declared once below; a surface file stores quantity ``q`` of split ``s`` as
the dataset ``<s>_<q.suffix>`` (``train_loss``, ``test_acc``, ...).

- ``loss``: Σℓ / n, the exact mean over the set (not a mean of batch means);
- ``acc``: correct / n (NaN when the targets are not class labels);
- ``loss_se``: the standard error of that mean, sqrt(M2 / (n − 1)) / sqrt(n) with
  M2 = Σ(ℓ_i − mean)² taken in a second pass over the vector: the sample standard deviation of
  the per-sample losses (ddof = 1) over √n. A point is always evaluated whole by one process, so
  workers and MPI ranks change nothing. Two points whose losses differ by less than about twice
  their standard errors differ within sampling noise.

Adding a quantity is one entry in ``TABLE`` (and, if it needs a statistic not kept yet, one more
field of ``PointStats`` in the engine's accumulation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Values = dict[str, float]  # one point's quantities by suffix: {"loss": ..., "acc": ..., ...}


@dataclass
class PointStats:
    """K points' per-sample losses, gathered batch by batch as the loss gave them (on its
    device), and their correct counts; reduced once by :meth:`values`."""

    losses: list[torch.Tensor]  # per batch, (K, b)
    correct: torch.Tensor  # (K,) correct top-1 predictions (float64 integers: exact in any order)
    labelled: bool = True  # every batch had class-label targets (accuracy is defined)
    n: int = 0  # samples (or counted tokens) so far

    @classmethod
    def zeros(cls, k: int, device: torch.device | str = "cpu") -> PointStats:
        return cls([], torch.zeros(k, dtype=torch.float64, device=device))

    def add(self, losses: torch.Tensor, correct: torch.Tensor | float | None) -> None:
        """One batch: ``losses`` (K, b) per-sample losses; ``correct`` each point's count of
        correct predictions in it, (K,), or None when the targets are not class labels."""
        if int(losses.shape[1]) == 0:
            return
        self.losses.append(losses.detach())
        self.n += int(losses.shape[1])
        if correct is None:
            self.labelled = False
        else:
            self.correct += torch.as_tensor(
                correct, dtype=torch.float64, device=self.correct.device
            )

    def values(self) -> list[Values]:
        """Every quantity of ``TABLE`` at each of the K points."""
        k = len(self.correct)
        if self.n == 0:
            return [{q.suffix: math.nan for q in TABLE} for _ in range(k)]
        rows = torch.cat(self.losses, dim=1).double().cpu().numpy()  # (K, n): one copy
        sums = [fixed_sums(np.ascontiguousarray(row)) for row in rows]
        r = Reduced(self.n, [t for t, _ in sums], [m for _, m in sums],
                    self.correct.cpu().tolist(), self.labelled)  # fmt: skip
        return [{q.suffix: q.value(r, i) for q in TABLE} for i in range(k)]


@dataclass(frozen=True)
class Reduced:
    """K points' statistics, reduced: n, Σℓ and M2 = Σ(ℓ − mean)² per point, correct counts."""

    n: int
    total: list[float]
    m2: list[float]
    correct: list[float]
    labelled: bool


def fixed_sums(row: np.ndarray) -> tuple[float, float]:
    """Σℓ and Σ(ℓ − Σℓ/n)² of one point's float64 losses (a contiguous row), each by numpy's
    pairwise summation of the whole row, whose order depends on the row's length alone: the
    same bits whatever batches the losses came in (``math.fsum``'s exact sums would cost 50x
    more: 0.8 ms a point on the demo's 64-point chunks, half a point's evaluation)."""
    with np.errstate(all="ignore"):  # NaN and inf losses are kept as they come
        total = float(np.add.reduce(row))
        return total, float(np.add.reduce(np.square(row - total / len(row))))


@dataclass(frozen=True)
class Quantity:
    """One per-point quantity: where it is stored, how it is computed, how it is shown."""

    suffix: str  # stored as <split>_<suffix>
    kind: str  # "loss": plotted and analysed; "acc": a fraction, plotted in %; "se": an error bar
    value: Callable[[Reduced, int], float]  # from point i's statistics
    description: str
    of: str | None = None  # for an error bar: the suffix of the quantity it belongs to


def _loss(s: Reduced, i: int) -> float:
    return float(s.total[i]) / s.n


def _acc(s: Reduced, i: int) -> float:
    return float(s.correct[i]) / s.n if s.labelled else math.nan


def _loss_se(s: Reduced, i: int) -> float:
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
