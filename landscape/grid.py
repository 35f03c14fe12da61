"""Grid axes and point indexing. Points are numbered row-major: flat k ↔ (i, j) = divmod(k, ny)."""

from __future__ import annotations

import numpy as np

from landscape.config import GridSpec, parse_axis


def coordinates(spec: GridSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """The x (and y) coordinates of a grid spec: ``linspace(MIN, MAX, NUM)`` per axis."""
    ax = parse_axis(spec.x, "grid.x")
    x = np.linspace(ax.lo, ax.hi, ax.num)
    if spec.y is None:
        return x, None
    ay = parse_axis(spec.y, "grid.y")
    return x, np.linspace(ay.lo, ay.hi, ay.num)


def point_coords(flat: int, x: np.ndarray, y: np.ndarray | None) -> tuple[float, ...]:
    """The direction coefficients (a,) or (a, b) of flat point index ``flat``."""
    if y is None:
        return (float(x[flat]),)
    i, j = divmod(int(flat), len(y))
    return (float(x[i]), float(y[j]))


def split_pending(pending: np.ndarray, parts: int) -> list[np.ndarray]:
    """Deal pending points round-robin into ``parts`` shares (neighbouring points spread out)."""
    return [pending[r::parts] for r in range(parts)]
