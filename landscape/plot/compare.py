"""Several surfaces in one figure on one colour scale and one level set (``plot --compare``).

The same network under different direction families, or different networks under one family,
can only be judged on equal terms when every panel maps the same value to the same colour and
draws the same contour levels. Here the colour range (and so the levels) is the union of all
surfaces' finite values, or ``vmin``/``vmax``/``levels`` as given, and one colour bar serves
every panel. Each panel keeps its own grid extents, so surfaces on different grids compare too.

2-D surfaces: one panel per surface for contour, contourf, heatmap and surface3d (3-D panels
share z-limits). 1-D surfaces: the curves overlaid on one axes, sharing the y-axis. Files are
named ``compare_{quantity}_{kind}_{scale}.{fmt}``.
When every 1-D surface is a path between two networks (``interpolate``: straight or aligned;
any family of ``landscape.barrier.PATH_FAMILIES``), ``compare_paths_{split}.{fmt}`` adds loss and
error against t with ± 2 s.e. bands and the barriers marked (``landscape.plot.paths``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from landscape import quantities
from landscape._files import writable_folder
from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot import figures
from landscape.plot.figures import CMAP, Levels, Prepared
from landscape.plot.render import (
    KINDS,
    KINDS_2D,
    PLOTTED,
    SCALES,
    check_choice,
    check_format,
    has_data,
    save_figures,
)
from landscape.plot.text import plain
from landscape.store.values import SurfaceValues

ACC_KINDS: tuple[str, ...] = ("contourf", "heatmap", "1d")  # accuracies: linear scale only
KIND_NAMES = {
    "contour": "contour",
    "contourf": "filled contour",
    "heatmap": "heat map",
    "surface3d": "3-D surface",
}


# ---------------------------------------------------------------------------------------------
# What can be compared


def common_dims(surfaces: Sequence[SurfaceValues]) -> int:
    """The dimension shared by all surfaces; ConfigError when none are given or they differ."""
    if not surfaces:
        raise ConfigError("compare needs at least one surface file")
    dims = {s.dims for s in surfaces}
    if max(dims) > 2:
        raise ConfigError(
            f"--compare draws 1-D and 2-D surfaces side by side; {max(dims)}-D ones are plotted "
            "each alone (its planes)"
        )
    if len(dims) > 1:
        listing = ", ".join(f"{Path(s.path).name} is {s.dims}-D" for s in surfaces)
        raise ConfigError(
            f"cannot compare 1-D and 2-D surfaces ({listing}); compare files of one dimension"
        )
    return dims.pop()


def common_quantities(surfaces: Sequence[SurfaceValues]) -> list[str]:
    """Losses and accuracies with finite values in every surface, in the first surface's order.

    Raises SurfaceFileError for a surface with nothing computed, ConfigError when no quantity
    is common to all.
    """
    available = []
    for s in surfaces:
        if not np.any(s.done):
            raise SurfaceFileError(
                f"{s.path} has no computed points yet; run landscape compute first"
            )
        available.append(
            [q for q in s.values if quantities.kind_of(q) in PLOTTED and has_data(s, q)]
        )
    common = [q for q in available[0] if all(q in a for a in available[1:])]
    if not common:
        listing = "; ".join(
            f"{Path(s.path).name} has {', '.join(a) or 'nothing finite'}"
            for s, a in zip(surfaces, available, strict=True)
        )
        raise ConfigError(
            f"the surfaces have no quantity in common to compare ({listing}); "
            "compare surfaces computed on the same split"
        )
    return common


def panel_titles(surfaces: Sequence[SurfaceValues]) -> list[str]:
    """Each surface's label (file name and direction method), with its folder when ambiguous."""
    labels = [s.label for s in surfaces]
    if len(set(labels)) == len(labels):
        return labels
    return [
        f"{Path(s.path).parent.name}/{label}" for s, label in zip(surfaces, labels, strict=True)
    ]


def shared_prepare(
    surfaces: Sequence[SurfaceValues],
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> list[Prepared]:
    """``quantity`` of every surface in plotted units, all on one colour range and log floor."""
    floor = min(figures.quantity_floor(s, quantity) for s in surfaces)
    preps = [figures.prepare(s, quantity, log=log, floor=floor) for s in surfaces]
    return figures.share(preps, vmin=vmin, vmax=vmax)


# ---------------------------------------------------------------------------------------------
# Figures


def _panels(fig: Figure, n: int, three_d: bool) -> list[Axes]:
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    projection = "3d" if three_d else None
    return [fig.add_subplot(nrows, ncols, k + 1, projection=projection) for k in range(n)]


def _figure(n: int, three_d: bool) -> Figure:
    ncols, nrows = min(n, 3), math.ceil(n / min(n, 3))
    width = (5.2 if three_d else 4.6) * ncols + 1.2
    height = (4.6 if three_d else 4.0) * nrows + 1.0
    return Figure(figsize=(width, height), layout="constrained")


def _one_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """Replace the panels' own legends (the trajectory's) by one legend under the figure."""
    handles: dict[str, object] = {}
    for ax in axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        legend.remove()
        for h in ax.get_lines():
            if not h.get_label().startswith("_"):
                handles.setdefault(h.get_label(), h)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncols=len(handles),
            fontsize="small",
        )


def compare_2d(
    surfaces: Sequence[SurfaceValues],
    quantity: str = "train_loss",
    kind: str = "contourf",
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    levels: Levels = None,
) -> Figure:
    """One panel per 2-D surface, all on one colour range and level set, one colour bar.

    ``kind`` is contour, contourf, heatmap or surface3d; 3-D panels share their z-limits.
    ``vmin``/``vmax``/``levels`` are in the quantity's units (default: the union of every
    surface's finite values, and 30 levels across it).
    """
    if kind not in KIND_NAMES:
        raise ConfigError(f"unknown 2-D plot kind {kind!r}; choose from {', '.join(KIND_NAMES)}")
    for s in surfaces:
        figures.require_dims(s, 2, f"compare {kind}")
    preps = shared_prepare(surfaces, quantity, log=log, vmin=vmin, vmax=vmax)
    pooled = np.concatenate([p.z.compressed() for p in preps])
    lv = figures.contour_levels(levels, preps[0], pooled)
    fig = _figure(len(surfaces), kind == "surface3d")
    axes = _panels(fig, len(surfaces), kind == "surface3d")
    drawn = []
    for ax, s, prep, title in zip(axes, surfaces, preps, panel_titles(surfaces), strict=True):
        if kind in ("contour", "contourf"):
            drawn.append(figures.draw_contour(ax, s, prep, lv, filled=kind == "contourf"))
        elif kind == "heatmap":
            drawn.append(figures.draw_heatmap(ax, s, prep))
        else:
            drawn.append(figures.draw_surface3d(ax, s, prep))
            ax.set_zlabel("")  # the shared colour bar names the quantity
        ax.set_title(plain(title), fontsize="medium")
    _one_legend(fig, axes)
    _shared_colorbar(fig, axes, kind, drawn[0], preps[0], lv)
    scale = preps[0].scale
    fig.suptitle(
        plain(f"{preps[0].label}, {KIND_NAMES[kind]} ({scale} scale, one colour scale for all)")
    )
    return fig


def _shared_colorbar(
    fig: Figure, axes: Sequence[Axes], kind: str, first: object, prep: Prepared, lv: np.ndarray
) -> None:
    """One colour bar for every panel: they share norm and levels, so any panel's will do."""
    if kind in ("contour", "contourf"):
        figures.colour_bar(fig, first, prep, ax=axes)
    else:
        mappable = ScalarMappable(Normalize(prep.vmin, prep.vmax), cmap=CMAP)
        shrink = 0.7 if kind == "surface3d" else 1.0
        figures.colour_bar(fig, mappable, prep, ax=axes, shrink=shrink)


def compare_1d(
    surfaces: Sequence[SurfaceValues],
    quantity: str = "train_loss",
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """The curves of several 1-D surfaces overlaid on one axes (so one y-scale), with landmarks.

    Accuracies are in percent. Under ``log`` the y-axis is logarithmic and values <= 0 are
    clipped to the smallest positive value over all surfaces.
    """
    for s in surfaces:
        figures.require_dims(s, 1, "compare 1d")
    floor = min(figures.quantity_floor(s, quantity) for s in surfaces)
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for k, (s, title) in enumerate(zip(surfaces, panel_titles(surfaces), strict=True)):
        colour = f"C{k % 10}"
        figures.draw_curve(ax, s, quantity, log=log, floor=floor, color=colour, label=title)
        figures.draw_landmarks(ax, s, color=colour, row=k)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(bottom=vmin, top=vmax)
    unit = f"{quantity} (%)" if figures.is_accuracy(quantity) else quantity
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel(plain(unit + (" (log scale)" if log else "")))
    ax.legend(loc="best", fontsize="small", framealpha=0.7)
    scale = "log" if log else "linear"
    ax.set_title(plain(f"{unit}, {scale} scale: {len(surfaces)} surface(s) on one axis"))
    return fig


# ---------------------------------------------------------------------------------------------
# Files


def _jobs(
    surfaces: list[SurfaceValues],
    quantities: list[str],
    kinds: list[str],
    scales: list[str],
    vmin: float | None,
    vmax: float | None,
    levels: Levels,
) -> list[tuple[str, Callable[[], Figure]]]:
    """(file name part, figure maker) per quantity × kind × scale; accuracies linear only.

    ``vmin``/``vmax``/``levels`` are in loss units and apply to losses only.
    """
    jobs = []
    for q in quantities:
        acc = figures.is_accuracy(q)
        for kind in kinds:
            if acc and kind not in ACC_KINDS:
                continue
            for scale in ["linear"] if acc else scales:
                rng = {} if acc else {"vmin": vmin, "vmax": vmax}
                make = _maker(surfaces, q, kind, scale == "log", None if acc else levels, rng)
                jobs.append((f"{q}_{kind}_{scale}", make))
    return jobs


def _maker(
    surfaces: list[SurfaceValues], q: str, kind: str, log: bool, levels: Levels, rng: dict
) -> Callable[[], Figure]:
    """A deferred call of the comparison figure for one quantity, kind and scale."""
    if kind == "1d":
        return lambda: compare_1d(surfaces, q, log=log, **rng)
    return lambda: compare_2d(surfaces, q, kind, log=log, levels=levels, **rng)


def render_compare(
    surfaces: Iterable[SurfaceValues],
    out_dir: str | Path,
    *,
    kinds: Iterable[str] | None = None,
    scales: Iterable[str] = SCALES,
    fmt: str = "png",
    vmin: float | None = None,
    vmax: float | None = None,
    levels: Levels = None,
    dpi: int = 150,
) -> list[Path]:
    """Write one comparison figure per quantity × plot kind × scale and return the paths.

    Compares the losses common to all surfaces (contour, contourf, heatmap, surface3d or 1d, in
    each scale) and their accuracies (contourf, heatmap, 1d; linear). Mixing 1-D and 2-D
    surfaces, or surfaces without a common quantity, is a ConfigError.
    """
    fmt = check_format(fmt)
    figures.check_levels(levels)
    surfaces = list(surfaces)
    dims = common_dims(surfaces)
    picked = check_choice("plot kind", KINDS if kinds is None else kinds, KINDS)
    scale_list = check_choice("scale", scales, SCALES)
    applicable = ["1d"] if dims == 1 else list(KINDS_2D)
    picked = [k for k in picked if k in applicable]
    if not picked:
        raise ConfigError(
            f"the surfaces are {dims}-D: the plot kinds for them are {', '.join(applicable)}"
        )
    quantities = common_quantities(surfaces)
    jobs = _jobs(surfaces, quantities, picked, scale_list, vmin, vmax, levels)
    if not jobs:
        raise ConfigError(
            f"nothing to compare: the common quantities ({', '.join(quantities)}) have no "
            f"figure of kind {', '.join(picked)} in scale {', '.join(scale_list)} "
            "(accuracies are drawn in linear scale only)"
        )
    jobs += _path_jobs(surfaces) if dims == 1 and "1d" in picked else []
    out = writable_folder(out_dir)
    return save_figures([(out / f"compare_{part}.{fmt}", make) for part, make in jobs], dpi)


def _path_jobs(surfaces: list[SurfaceValues]) -> list[tuple[str, Callable[[], Figure]]]:
    """Paths between two networks (every surface one: ``plot.paths``): one figure per split of
    loss and error against t, bands and barriers marked (``compare_paths_<split>``)."""
    from landscape.plot.paths import all_paths, path_splits, paths_figure

    if not all_paths(surfaces):
        return []
    return [
        (f"paths_{split}", lambda split=split: paths_figure(surfaces, split))
        for split in path_splits(surfaces)
    ]
