"""Figures of a ``--repeat R`` surface: the mean over the direction seeds and its spread.

A feature of one random slice (a valley, a ridge, a flat region) that belongs to the network and
not to the directions drawn shows in the mean surface and leaves the spread map low there; one that
moves or vanishes with the seed lights the spread map up. The spread is the sample standard
deviation over the R repeats at each point (``Surface.repeat_mean_std``), drawn only where every
repeat is done. Like ``figures``, every function returns a Figure and saves nothing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from matplotlib.figure import Figure

from landscape.errors import ConfigError
from landscape.plot.figures import (
    colour_bar,
    draw_heatmap,
    draw_landmarks,
    figure_title,
    is_accuracy,
    positive_floor,
    prepare,
    require_dims,
)
from landscape.store.values import SurfaceValues


def _check_repeats(surface: SurfaceValues) -> None:
    if not surface.repeats:
        raise ConfigError(
            f"{surface.path} holds one surface; the mean and spread over seeds need a file "
            "computed with --repeat R (R > 1)"
        )


def _relabelled(surface: SurfaceValues, what: str) -> dict:
    """Direction attributes whose method names what a derived surface shows (for titles)."""
    method = surface.direction_attrs.get("method") or surface.attrs.get("direction") or "surface"
    return {**surface.direction_attrs, "method": f"{method}, {what}"}


def mean_surface(surface: SurfaceValues) -> SurfaceValues:
    """The mean over the repeats as a surface of its own (no repeats), done where every repeat is.

    Every figure function draws it; its titles say ``mean of R seeds``.
    """
    _check_repeats(surface)
    means = {q: surface.repeat_mean_std(q)[0] for q in surface.values}
    done = surface.done & np.logical_and.reduce([r.done for r in surface.repeats])
    attrs = _relabelled(surface, f"mean of {surface.repeat_count} seeds")
    return replace(surface, values=means, done=done, direction_attrs=attrs, repeats=[])


def spread_map(surface: SurfaceValues, quantity: str = "train_loss") -> Figure:
    """A heat map of the std over seeds of ``quantity`` at each point (accuracies in % points).

    It is 0 at the centre, which every repeat shares; high values mark where the picture depends
    on the directions drawn.
    """
    require_dims(surface, 2, "spread_map")
    _check_repeats(surface)
    if quantity not in surface.values:
        known = ", ".join(surface.values) or "none"
        raise ConfigError(f"{surface.path} has no quantity {quantity!r}; stored: {known}")
    _, std = surface.repeat_mean_std(quantity)
    attrs = _relabelled(surface, f"{surface.repeat_count} seeds")
    derived = replace(
        surface, values={quantity: std}, done=np.isfinite(std), direction_attrs=attrs, repeats=[]
    )
    prep = prepare(derived, quantity)
    prep = replace(prep, label=f"std over seeds of {prep.label}")
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    mesh = draw_heatmap(ax, derived, prep)
    colour_bar(fig, mesh, prep, ax=ax)
    ax.set_title(figure_title(prep.label, prep.scale, derived, "heat map"))
    return fig


def repeat_curves(
    surface: SurfaceValues,
    split: str = "train",
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """A 1-D surface's loss along every repeat's direction (thin grey), their mean (bold) and a
    band of ±1 std over seeds around it. ``log``: a log y-scale, the band clipped to the smallest
    positive loss; ``vmin``/``vmax`` bound the loss axis."""
    require_dims(surface, 1, "repeat_curves")
    _check_repeats(surface)
    q = f"{split}_loss"
    if q not in surface.values or is_accuracy(q):
        raise ConfigError(f"{surface.path} has no loss for split {split!r}")
    stack = surface.stacked(q)  # (R, nx), NaN where a repeat is not done
    mean, std = surface.repeat_mean_std(q)
    lower, upper = mean - std, mean + std
    if log:
        floor = positive_floor(stack)
        lower, stack = np.maximum(lower, floor), np.where(~(stack <= 0), stack, floor)  # NaN stays
    x = np.asarray(surface.x, dtype=float)
    seeds = [surface.attrs.get("seed", 0), *(r.seed for r in surface.repeats)]
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for k, (seed, values) in enumerate(zip(seeds, stack, strict=True)):
        label = "each seed" if k == 0 else "_each seed"
        ax.plot(x, values, color="0.55", lw=0.8, alpha=0.9, label=label, gid=f"repeat-{seed}")
    band = ax.fill_between(x, lower, upper, color="tab:blue", alpha=0.25, label="mean ± 1 std")
    band.set_gid("repeat-band")
    R = surface.repeat_count
    ax.plot(x, mean, color="tab:blue", lw=2.0, marker=".", label=f"mean of {R}", gid="repeat-mean")
    if log:
        ax.set_yscale("log")
    ax.set_ylim(bottom=vmin, top=vmax)
    draw_landmarks(ax, surface, color="0.25")
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    ax.legend(loc="best", fontsize="small", framealpha=0.7)
    title_surface = replace(surface, direction_attrs=_relabelled(surface, f"{R} seeds"))
    ax.set_title(figure_title(q, "log" if log else "linear", title_surface, "over seeds"))
    return fig
