"""The planes of an n-D surface (3 to 5 axes), which the 2-D figures draw.

For each pair of axes ``(i, j)``:

- the **slice** through the centre: the values on the plane of axes i and j with every other
  axis held at its coordinate nearest 0 (through the trained weights θ when the grid has 0);
- the **projection**: at each ``(a_i, a_j)`` the minimum of the loss over every other axis,
  ``min_{c_k, k ∉ {i, j}} L(θ + Σ c_k d_k)``: the lowest loss reachable in the other directions
  (a basin that a slice misses shows here). Only losses are projected (an accuracy's minimum
  says nothing of the basin), and a cell is drawn only once every point along the other axes is
  computed.

Each plane is a 2-D ``SurfaceValues`` (its x and y are axes i and j), so every 2-D figure draws
it as it draws a plane; ``label`` names its axes and what the plane is for the figure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from matplotlib.figure import Figure

from landscape import quantities
from landscape.config import AXIS_NAMES
from landscape.store.values import SurfaceValues

HOWS = ("slice", "min")


@dataclass(frozen=True)
class Plane:
    """One drawable plane of an n-D surface: axes ``i`` and ``j``, ``how`` it was taken."""

    i: int
    j: int
    how: str  # "slice" or "min"
    surface: SurfaceValues

    @property
    def name(self) -> str:
        """The file name's part: ``xz_slice``, ``yz_min``."""
        return f"{AXIS_NAMES[self.i]}{AXIS_NAMES[self.j]}_{self.how}"

    def label(self, fig: Figure) -> Figure:
        """Name the figure's axes by their directions and add what the plane is to its title."""
        ax = fig.axes[0]
        ax.set_xlabel(f"{AXIS_NAMES[self.i]} (direction {self.i + 1})")
        ax.set_ylabel(f"{AXIS_NAMES[self.j]} (direction {self.j + 1})")
        ax.set_title(f"{ax.get_title()}\n{self.surface.notes[-1]}")
        return fig


def planes(surface: SurfaceValues) -> list[Plane]:
    """Every pair of axes' slice through the centre, then every pair's projection."""
    pairs = list(itertools.combinations(range(surface.dims), 2))
    return [Plane(i, j, how, plane(surface, i, j, how)) for how in HOWS for i, j in pairs]


def plane(surface: SurfaceValues, i: int, j: int, how: str) -> SurfaceValues:
    """The plane of axes ``i`` and ``j`` of an n-D ``surface``: its slice through the centre or
    its projection (the minimum over the other axes), as a 2-D surface."""
    axes = surface.axes
    others = tuple(k for k in range(surface.dims) if k not in (i, j))
    if how == "slice":
        held = {k: int(np.argmin(np.abs(axes[k]))) for k in others}
        index = tuple(held.get(k, slice(None)) for k in range(surface.dims))
        values = {q: np.asarray(v, dtype=float)[index] for q, v in surface.values.items()}
        done = surface.done[index]
        at = ", ".join(f"{AXIS_NAMES[k]}={axes[k][n]:.3g}" for k, n in held.items())
        note = f"slice through the centre at {at}"
    else:
        done = surface.done.all(axis=others)  # the minimum over a line is known once it is all in
        values = {
            q: np.where(done, _minimum(np.where(surface.done, v, np.nan), others), np.nan)
            for q, v in surface.values.items()
            if quantities.kind_of(q) == "loss"
        }
        note = f"minimum over {', '.join(AXIS_NAMES[k] for k in others)}"
    return replace(
        surface,
        x=np.asarray(axes[i]),
        y=np.asarray(axes[j]),
        beyond=(),
        values=values,
        done=done,
        repeats=[],
        stored_analysis={},  # the file's analysis is of the whole grid, not of this plane
        notes=[*surface.notes, note],
        partial_of=None,
    )


def _minimum(values: np.ndarray, over: tuple[int, ...]) -> np.ndarray:
    """The minimum over the axes ``over``, NaN left out (``fmin``: NaN only where all are)."""
    return np.fmin.reduce(np.asarray(values, dtype=float), axis=over)
