"""Figures of a surface's topology (``landscape.topology``): the persistence barcode, the merge
tree of its basins, and the significant minima marked on the contour plots and 1-D curves."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.analysis import ANALYSIS_VERSION, surface_topology
from landscape.plot.figures import figure_title
from landscape.plot.text import plain
from landscape.store.values import SurfaceValues
from landscape.topology import BasinMinimum, Topology

SIGNIFICANT = "tab:blue"
NOISE = "0.65"
DIM_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def topology_of(surface: SurfaceValues, quantity: str) -> Topology | None:
    """The topology stored in the file's analysis, else computed now; None when it cannot be
    (points not computed yet, gudhi not installed)."""
    stored = surface.stored_analysis.get(quantity) or {}
    if stored.get("analysis_version") == ANALYSIS_VERSION and stored.get("topology"):
        try:
            return Topology.from_dict(stored["topology"])
        except (KeyError, TypeError, ValueError):
            pass
    return surface_topology(surface, quantity)[0]


def _top(topo: Topology, surface: SurfaceValues, quantity: str) -> float:
    """Where infinite bars and the root branch end: a little above the highest finite loss."""
    f = np.asarray(surface.values[quantity], dtype=float)
    f = f[np.isfinite(f)]
    hi, lo = float(f.max()), float(f.min())
    return hi + 0.05 * (hi - lo or 1.0)


def barcode(surface: SurfaceValues, quantity: str, topo: Topology) -> Figure:
    """One bar per persistence pair, from birth to death in loss units. Dimension 0 (basins)
    comes from the merge tree: significant minima in blue, noise (persistence within
    ``noise_sigmas`` s.e.) in grey; higher dimensions (loops, voids) from gudhi's pairs. A bar
    that never dies runs to the top and ends in an arrow."""
    top = _top(topo, surface, quantity)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    minima = sorted(topo.minima, key=lambda m: (-m.persistence, m.value))
    row = 0
    for m in minima:
        colour = SIGNIFICANT if m.significant else NOISE
        end = top if m.saddle_value is None else m.saddle_value
        ax.plot([m.value, end], [row, row], color=colour, lw=4, solid_capstyle="butt",
                gid=f"bar-0-{m.id}")  # fmt: skip
        if m.saddle_value is None:
            ax.plot([end], [row], ">", color=colour, ms=7, gid=f"bar-0-{m.id}-inf")
        row += 1
    for dim in range(1, topo.dims):
        for birth, death in [(b, d) for k, b, d in topo.diagram if k == dim]:
            colour = DIM_COLOURS[dim % len(DIM_COLOURS)]
            end = top if math.isinf(death) else death
            ax.plot([birth, end], [row, row], color=colour, lw=4, solid_capstyle="butt",
                    gid=f"bar-{dim}")  # fmt: skip
            row += 1
    _barcode_legend(ax, topo)
    ax.set_ylim(row - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_xlabel(plain(f"{quantity} (sublevel set f ≤ t)"))
    ax.set_title(figure_title(quantity, "linear", surface, "persistence barcode"))
    return fig


def _barcode_legend(ax: Axes, topo: Topology) -> None:
    noise = f"noise (≤ {topo.noise_sigmas:g} s.e.)" if topo.se_known else "noise"
    handles = [
        ax.plot([], [], color=SIGNIFICANT, lw=4, label="basin (H0), significant")[0],
        ax.plot([], [], color=NOISE, lw=4, label=f"basin (H0), {noise}")[0],
    ]
    for dim in range(1, topo.dims):
        if any(k == dim for k, _, _ in topo.diagram):
            colour = DIM_COLOURS[dim % len(DIM_COLOURS)]
            handles.append(ax.plot([], [], color=colour, lw=4, label=f"H{dim}")[0])
    note = f"{topo.significant_minima} significant of {topo.total_minima} minima"
    if len(topo.minima) < topo.total_minima:
        note += f" ({len(topo.minima)} most persistent drawn)"
    # below the panel, where no bar can hide behind it
    ax.figure.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                     fontsize="small", title=note, title_fontsize="small")  # fmt: skip


def _tree_order(minima: tuple[BasinMinimum, ...]) -> dict[int, int]:
    """Each minimum's column in the merge tree: a parent, then its children by increasing saddle,
    each followed by its own subtree. A child's connector then passes above every nearer child's
    subtree (their saddles are lower), so no line crosses another."""
    children: dict[int | None, list[BasinMinimum]] = {}
    ids = {m.id for m in minima}
    for m in minima:
        parent = m.merges_into if m.merges_into in ids else None
        children.setdefault(parent, []).append(m)
    column: dict[int, int] = {}
    stack = sorted(children.get(None, []), key=lambda m: m.id, reverse=True)
    while stack:
        m = stack.pop()
        column[m.id] = len(column)
        kids = sorted(children.get(m.id, []), key=lambda c: (c.saddle_value, c.id))
        stack.extend(reversed(kids))
    return column


def merge_tree_figure(surface: SurfaceValues, quantity: str, topo: Topology) -> Figure:
    """The merge tree of the basins as its branch decomposition: each minimum a vertical branch
    from its loss up to the saddle where it merges, joined there by a horizontal edge to the
    branch of the deeper basin that absorbs it; the global minimum's branch runs to the top.
    Significant minima are filled blue dots, noise hollow grey ones."""
    top = _top(topo, surface, quantity)
    column = _tree_order(topo.minima)
    by_id = {m.id: m for m in topo.minima}
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for m in topo.minima:
        x = column[m.id]
        colour = SIGNIFICANT if m.significant else NOISE
        end = top if m.saddle_value is None else m.saddle_value
        ax.plot([x, x], [m.value, end], color=colour, lw=1.6, gid=f"branch-{m.id}")
        if m.merges_into in by_id and m.saddle_value is not None:
            ax.plot([x, column[m.merges_into]], [end, end], color=colour, lw=1.6,
                    gid=f"merge-{m.id}")  # fmt: skip
            ax.plot([x], [end], "s", color="0.3", ms=3)
        ax.plot([x], [m.value], "o", ms=6, mfc=colour if m.significant else "white", mec=colour,
                gid=f"minimum-{m.id}")  # fmt: skip
    if len(column) <= 20:  # label each branch with its minimum's rank by depth (0: the deepest)
        ax.set_xticks(list(column.values()), labels=[str(i) for i in column])
    else:
        ax.set_xticks([])
    note = f"{topo.significant_minima} significant of {topo.total_minima} minima"
    note += f", SMAD {topo.smad:.3g}"
    if len(topo.minima) < topo.total_minima:
        note += f"; the {len(topo.minima)} most persistent drawn"
    ax.set_xlabel(f"minima by depth (0: the deepest)\n{note}")
    ax.set_ylabel(plain(quantity))
    ax.margins(x=0.08)
    ax.set_title(figure_title(quantity, "linear", surface, "merge tree of the basins"))
    return fig


def mark_minima(fig: Figure, topo: Topology | None, *, log_floor: float | None = None) -> Figure:
    """Mark the significant minima on a figure's first panel: (x, y) points on a 2-D plane, the
    curve's points (x, loss) in 1-D (``log_floor``: the floor a log axis clips to)."""
    if topo is None or not fig.axes:
        return fig
    ax = fig.axes[0]
    chosen = topo.significant()
    if not chosen:
        return fig
    label = f"significant minima ({topo.significant_minima} of {topo.total_minima})"
    if topo.dims == 2:
        x = [m.at[0] for m in chosen]
        y = [m.at[1] for m in chosen]
    else:
        x = [m.at[0] for m in chosen]
        y = [m.value if log_floor is None else max(m.value, log_floor) for m in chosen]
    ax.plot(x, y, "v", ms=8, mfc="cyan", mec="black", ls="none", label=label, gid="minima",
            zorder=5)  # fmt: skip
    if topo.dims == 2:
        ax.legend(loc="upper right", fontsize="small", framealpha=0.7)
    return fig
