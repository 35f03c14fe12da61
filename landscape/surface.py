"""The in-memory surface: what ``store.read_surface`` returns and every plot consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Surface:
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

    @property
    def dims(self) -> int:
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))

    def quantities(self, kind: str) -> list[str]:
        """Names of stored quantities of one kind (``loss`` or ``acc``), e.g. ``train_loss``."""
        return [q for q in self.values if q.endswith(f"_{kind}")]

    @property
    def label(self) -> str:
        """A short title for plots: the direction method and the file name."""
        from pathlib import Path

        method = self.direction_attrs.get("method") or self.attrs.get("direction") or "surface"
        return f"{Path(self.path).name} ({method})"
