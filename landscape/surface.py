"""The in-memory surface: what ``store.read_surface`` returns and every plot consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class OnGrid:
    """What a value map over the axes ``x`` and ``y`` (None in 1-D) knows of its grid."""

    x: np.ndarray
    y: np.ndarray | None

    @property
    def dims(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))


@dataclass
class Repeat:
    """One more surface on the same grid, along directions drawn with another seed (--repeat)."""

    seed: int
    values: dict[str, np.ndarray]  # the same quantities as the surface's own values
    done: np.ndarray
    direction_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Surface(OnGrid):
    """A loss surface over a 1-D or 2-D grid, in our orientation.

    ``values[q][i]`` (1-D) or ``values[q][i, j]`` (2-D) is quantity ``q`` at ``(x[i], y[j])``.
    Losses are means over samples; accuracies are fractions in [0, 1]; NaN where not computed
    (``done`` is False there) or where the loss itself was NaN (``done`` is True there).
    """

    path: str
    x: np.ndarray
    y: np.ndarray | None
    values: dict[str, np.ndarray]  # e.g. {"train_loss": ..., "train_acc": ...}
    done: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)  # provenance (config, versions, ...)
    direction_attrs: dict[str, Any] = field(default_factory=dict)
    source_format: str = "landscape"  # or "li2018" for Li et al.'s reference files
    notes: list[str] = field(default_factory=list)  # conversions applied on read
    trajectory: dict[str, np.ndarray] | None = None  # projected training path: x, y, labels, loss
    landmarks: dict[str, np.ndarray] | None = None  # named points on the plane: names, x, y
    analysis: dict[str, Any] = field(default_factory=dict)  # by quantity, from /analysis
    # repeats 1..R-1 of a --repeat R file (the surface itself is repeat 0); empty otherwise
    repeats: list[Repeat] = field(default_factory=list)

    @property
    def repeat_count(self) -> int:
        """R: how many surfaces along directions of different seeds the file holds."""
        return 1 + len(self.repeats)

    def stacked(self, quantity: str) -> np.ndarray:
        """``quantity`` of every repeat, shape ``(R, *grid)``; NaN where a repeat is not done."""
        return np.stack(
            [
                np.where(done, np.asarray(values[quantity], dtype=float), np.nan)
                for values, done in [(self.values, self.done)]
                + [(r.values, r.done) for r in self.repeats]
            ]
        )

    def repeat_mean_std(self, quantity: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread over the repeats at each point; NaN where a repeat is not done (or
        its value is NaN).

        The spread is the sample standard deviation, ``sqrt(Σ_r (v_r - mean)² / (R - 1))``.
        """
        stack = self.stacked(quantity)
        if len(stack) < 2:
            raise ValueError("a surface without repeats has no spread")
        return stack.mean(axis=0), stack.std(axis=0, ddof=1)

    def quantities(self, kind: str) -> list[str]:
        """Names of stored quantities of one kind (``loss`` or ``acc``), e.g. ``train_loss``."""
        return [q for q in self.values if q.endswith(f"_{kind}")]

    @property
    def label(self) -> str:
        """A short title for plots: the direction method and the file name."""
        from pathlib import Path

        method = self.direction_attrs.get("method") or self.attrs.get("direction") or "surface"
        return f"{Path(self.path).name} ({method})"
