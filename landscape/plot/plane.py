"""The plane view of a pair study: the loss on the plane through A, B and a curve's bend C.

``compute --direction curve`` with a ``--y`` axis evaluates the plane that ``interpolate``
builds through three points: A at (0, 0), B at (1, 0), the bend C at its stored landmark
(x_C, y_C), and the trained curve's path stored with the directions. This figure draws the
loss there (filled contours, log scale: a basin and a ridge differ by orders of magnitude)
with the three points, the straight path A → B (the segment y = 0, 0 ≤ x ≤ 1: the straight
path lies in the plane) and the curved path marked, so a reader sees the ridge the straight
path crosses and the valley the curve follows. The aligned B is another point, off this plane,
so its path is not drawn here (the paths figure has it).
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.plot import figures
from landscape.plot.paths import curve_label
from landscape.plot.text import plain
from landscape.store.values import SurfaceValues

MAX_STRETCH = 4.0  # beyond this ratio of the axes' spans, y is stretched (and the panel says so)
FLAT = 0.6  # y's span under this share of x's: the colour bar goes under the panel
PLANE_LEVELS = 25  # filled-contour levels, evenly spaced in log10(loss)


def plane_figure(surface: SurfaceValues, quantity: str = "train_loss") -> Figure:
    """Filled contours of ``quantity`` (log scale) on the A-B-C plane, the points and the
    straight and curved paths marked."""
    figures.require_dims(surface, 2, "the plane view")
    prep = figures.prepare(surface, quantity, log=True)
    levels = np.linspace(prep.vmin, prep.vmax, PLANE_LEVELS)
    fig = Figure(figsize=_size(surface), layout="constrained")
    ax = fig.add_subplot()
    X, Y = np.meshgrid(np.asarray(surface.x), np.asarray(surface.y), indexing="ij")
    cs = ax.contourf(X, Y, prep.z, levels=levels, cmap=figures.CMAP, extend="both")
    flat = float(np.ptp(surface.y)) < FLAT * float(np.ptp(surface.x))
    # a flat panel drawn to scale: the colour bar under it, not beside (it would dwarf it)
    figures.colour_bar(fig, cs, prep, ax=ax, **({"location": "bottom"} if flat else {}))
    _aspect(ax, surface)
    # the straight path: t·(B − A) is the segment from A = (0, 0) to B = (1, 0)
    ax.plot([0.0, 1.0], [0.0, 0.0], "--", color="white", lw=1.8, label="straight path",
            gid="straight-path")  # fmt: skip
    path = figures.curve_path(surface)
    if path is not None:
        ax.plot(
            *path, "-", color="tab:orange", lw=1.8, label=curve_label(surface), gid="curve-path"
        )
    figures.draw_landmarks(ax, surface)
    ax.set_xlabel("x (A at 0, B at 1)")
    ax.set_ylabel("y (toward the bend C)")
    ax.legend(loc="upper right", fontsize="small", framealpha=0.8)
    what = quantity.replace("_", " ")
    ax.set_title(plain(f"{what} (log scale) on the plane through A, B and the bend C"))
    return fig


def _size(surface: SurfaceValues) -> tuple[float, float]:
    """The figure's size: flatter for a flat plane drawn to scale, so the colour bar fits it."""
    ratio = float(np.ptp(surface.y)) / float(np.ptp(surface.x))
    if not 1.0 / MAX_STRETCH <= ratio <= MAX_STRETCH:
        return (7.0, 5.4)  # y stretched to a square panel
    return (7.0, min(7.5, max(3.6, 2.6 + 5.0 * ratio)))


def _aspect(ax: Axes, surface: SurfaceValues) -> None:
    """x and y are in one unit (‖B − A‖ = 1): drawn to one scale when their spans are within
    MAX_STRETCH of each other; else y is stretched and the panel says by how much (a bend
    close to the line AB would otherwise look far from it)."""
    stretch = float(np.ptp(surface.x)) / float(np.ptp(surface.y))
    if 1.0 / MAX_STRETCH <= stretch <= MAX_STRETCH:
        ax.set_aspect("equal", adjustable="box")
        return
    ax.text(0.01, 0.01, f"y stretched {stretch:.2g}x against x", transform=ax.transAxes,
            fontsize=7, color="0.2", gid="aspect-note",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip


def plane_marks(surface: SurfaceValues) -> dict[str, tuple[float, float]]:
    """The named points drawn on the plane, ``{"A": (x, y), "B": ..., "C": ...}``."""
    return {n: (x, y) for n, x, y in figures.landmark_points(surface) if y is not None}
