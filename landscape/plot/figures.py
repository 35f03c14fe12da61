"""Figures of one surface: 1-D curves, contours, heat maps and 3-D views.

Every function returns a matplotlib ``Figure`` and never saves, shows or closes it: the caller
names files (``render.render_all``) and closes what it made. Figures are built with
``matplotlib.figure.Figure`` directly, so nothing is registered with pyplot's global state.

Orientation: ``values[q][i, j]`` is at ``(x[i], y[j])``; x is always the horizontal axis.
Points not computed (NaN) and non-finite values are masked, never drawn as a colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.errors import ConfigError, SurfaceFileError
from landscape.surface import Surface

CMAP = "viridis"
DEFAULT_LEVELS = 30

Levels = int | Sequence[float] | None


@dataclass(frozen=True)
class Prepared:
    """A quantity ready to draw: masked values in plotted units and the colour range."""

    z: np.ma.MaskedArray  # (nx, ny) or (nx,), in plotted units (log10 or percent applied)
    vmin: float
    vmax: float
    label: str  # what the values are, e.g. "log10(train_loss)" or "train_acc (%)"
    scale: str  # "linear" or "log"
    floor: float  # under log: the stand-in for values <= 0 (plotted units before log10)


# ---------------------------------------------------------------------------------------------
# Data preparation


def is_accuracy(quantity: str) -> bool:
    """True for accuracy quantities (``*_acc``), which are plotted in percent."""
    return quantity.endswith("_acc")


def splits(surface: Surface) -> list[str]:
    """The splits stored in a surface, in file order: ``train_loss`` → ``train``."""
    names: list[str] = []
    for q in surface.values:
        split = q.rsplit("_", 1)[0]
        if q.endswith(("_loss", "_acc")) and split not in names:
            names.append(split)
    return names


def check_computed(surface: Surface, quantity: str) -> np.ndarray:
    """Return the raw values of ``quantity``; raise if it is unknown or has nothing to plot."""
    if quantity not in surface.values:
        known = ", ".join(surface.values) or "none"
        raise ConfigError(f"{surface.path} has no quantity {quantity!r}; stored: {known}")
    raw = np.asarray(surface.values[quantity], dtype=float)
    if not np.any(surface.done):
        raise SurfaceFileError(
            f"{surface.path} has no computed points yet; run landscape compute first"
        )
    if not np.any(np.isfinite(raw)):
        raise SurfaceFileError(
            f"{surface.path}: every computed value of {quantity} is NaN or infinite "
            "(the loss diverged?); there is nothing to plot"
        )
    return raw


def _positive_floor(raw: np.ndarray) -> float:
    """Smallest positive finite value, the stand-in for losses <= 0 under a log scale."""
    positive = raw[np.isfinite(raw) & (raw > 0)]
    return float(positive.min()) if positive.size else 1e-12


def _to_log(values: np.ndarray | float, floor: float) -> np.ndarray:
    """log10 of values, with values <= floor clipped to floor (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        return np.log10(np.maximum(values, floor))


def _spread(vmin: float, vmax: float) -> tuple[float, float]:
    """Widen a degenerate range (a flat surface) so levels and colour maps stay defined."""
    if vmax > vmin:
        return vmin, vmax
    pad = max(abs(vmin) * 1e-3, 1e-6)
    return vmin - pad, vmax + pad


def prepare(
    surface: Surface,
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Prepared:
    """Values of one quantity in plotted units, masked where not finite, with a colour range.

    Accuracies are shown in percent. Under ``log`` the values become ``log10(value)``, values
    <= 0 clipped to the smallest positive one; ``vmin``/``vmax`` are given in the quantity's own
    units (loss, or percent for accuracies) and transformed the same way.
    """
    raw = check_computed(surface, quantity)
    if is_accuracy(quantity):
        raw = raw * 100.0
    label = f"{quantity} (%)" if is_accuracy(quantity) else quantity
    floor = _positive_floor(raw)
    if log:
        raw = _to_log(raw, floor)
        vmin = None if vmin is None else float(_to_log(vmin, floor))
        vmax = None if vmax is None else float(_to_log(vmax, floor))
        label = f"log10({label})"
    z = np.ma.masked_invalid(raw)
    lo = float(z.min()) if vmin is None else float(vmin)
    hi = float(z.max()) if vmax is None else float(vmax)
    if hi < lo:
        raise ConfigError(f"vmin ({vmin}) must be below vmax ({vmax})")
    lo, hi = _spread(lo, hi)
    return Prepared(z, lo, hi, label, "log" if log else "linear", floor)


def contour_levels(levels: Levels, prep: Prepared) -> np.ndarray:
    """Contour levels in plotted units: a count, a sequence (in the quantity's units), or 30.

    A sequence given under a log scale is transformed with ``log10`` (values <= 0 clipped to
    ``prep.floor``) so that the user names levels in loss units whichever scale is drawn.
    """
    if levels is None or isinstance(levels, (int, np.integer)):
        count = DEFAULT_LEVELS if levels is None else int(levels)
        if count < 2:
            raise ConfigError(f"levels must be at least 2, got {count}")
        return np.linspace(prep.vmin, prep.vmax, count)
    seq = np.unique(np.asarray(list(levels), dtype=float))
    if seq.size < 1 or not np.all(np.isfinite(seq)):
        raise ConfigError(f"levels must be finite numbers, got {list(levels)!r}")
    if prep.scale == "log":
        seq = np.unique(_to_log(seq, prep.floor))
    return seq


# ---------------------------------------------------------------------------------------------
# Shared drawing helpers


def _require_dims(surface: Surface, dims: int, what: str) -> None:
    if surface.dims != dims:
        hint = "use curve_1d (kind 1d)" if surface.dims == 1 else "use a 2-D kind"
        raise ConfigError(
            f"{what} needs a {dims}-D surface; {surface.path} is {surface.dims}-D ({hint})"
        )


def _title(quantity: str, scale: str, surface: Surface, kind: str = "") -> str:
    head = f"{quantity} {kind}".strip()
    return f"{head}, {scale} scale\n{surface.label}"


def _grid(surface: Surface) -> tuple[np.ndarray, np.ndarray]:
    """X, Y of shape (nx, ny) so that X[i, j] = x[i], Y[i, j] = y[j], matching values[i, j]."""
    return np.meshgrid(np.asarray(surface.x), np.asarray(surface.y), indexing="ij")


def _label_axes(ax: Axes) -> None:
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel("y (direction 2)")


def draw_trajectory(ax: Axes, surface: Surface) -> None:
    """Draw the projected training path, if stored: a line with markers, start and end marked."""
    traj = surface.trajectory
    if not traj or "x" not in traj or "y" not in traj:
        return
    tx = np.asarray(traj["x"], dtype=float).ravel()
    ty = np.asarray(traj["y"], dtype=float).ravel()
    if tx.size == 0 or tx.size != ty.size:
        return
    ax.plot(tx, ty, "-o", color="tab:red", ms=3, lw=1.2, label="trajectory", gid="trajectory")
    ax.plot(tx[:1], ty[:1], "s", color="white", mec="black", ms=7, label="start", gid="traj-start")
    ax.plot(tx[-1:], ty[-1:], "*", color="gold", mec="black", ms=12, label="end", gid="traj-end")
    ax.legend(loc="best", fontsize="small", framealpha=0.7)


# ---------------------------------------------------------------------------------------------
# Figures


def curve_1d(
    surface: Surface,
    split: str | None = None,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """Loss (left axis) and accuracy in % (right twin axis) against x for a 1-D surface.

    ``split`` picks one split (``train``, ``test``, ...); None draws every stored split, solid
    for the first and dashed for the others. ``log`` uses a log y-scale for the loss (values
    <= 0 clipped to the smallest positive loss); ``vmin``/``vmax`` bound the loss axis.
    """
    _require_dims(surface, 1, "curve_1d")
    chosen = splits(surface) if split is None else [split]
    losses = [f"{s}_loss" for s in chosen if f"{s}_loss" in surface.values]
    if not losses:
        known = ", ".join(splits(surface)) or "none"
        raise ConfigError(f"{surface.path} has no loss for split {split!r}; splits: {known}")
    for q in losses:
        check_computed(surface, q)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    acc_ax = ax.twinx()
    x = np.asarray(surface.x, dtype=float)
    styles = ["-", "--", ":", "-."]
    for k, s in enumerate(chosen):
        _draw_split(ax, acc_ax, surface, s, x, log, styles[k % len(styles)])
    if log:
        ax.set_yscale("log")
    ax.set_ylim(bottom=vmin, top=vmax)
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel("loss" + (" (log scale)" if log else ""), color="tab:blue")
    acc_ax.set_ylabel("accuracy (%)", color="tab:red")
    ax.tick_params(axis="y", colors="tab:blue")
    acc_ax.tick_params(axis="y", colors="tab:red")
    handles = ax.get_lines() + acc_ax.get_lines()
    labels = [h.get_label() for h in handles]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize="small")
    name = split if split is not None else ", ".join(chosen)
    ax.set_title(_title(name, "log" if log else "linear", surface, "loss / accuracy"))
    return fig


def _draw_split(
    ax: Axes, acc_ax: Axes, surface: Surface, split: str, x: np.ndarray, log: bool, style: str
) -> None:
    """One split's loss on ``ax`` and accuracy (%) on ``acc_ax``; NaN points leave gaps."""
    loss = np.asarray(surface.values[f"{split}_loss"], dtype=float)
    if log:
        floor = _positive_floor(loss)
        with np.errstate(invalid="ignore"):
            loss = np.where(np.isfinite(loss), np.maximum(loss, floor), np.nan)
    ax.plot(x, loss, style, color="tab:blue", marker=".", label=f"{split} loss")
    acc = surface.values.get(f"{split}_acc")
    if acc is not None and np.any(np.isfinite(acc)):
        pct = np.asarray(acc, dtype=float) * 100.0
        acc_ax.plot(x, pct, style, color="tab:red", marker=".", label=f"{split} acc")


def contour(
    surface: Surface,
    quantity: str = "train_loss",
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    levels: Levels = None,
    filled: bool = False,
) -> Figure:
    """Contour lines with inline labels, or (``filled``) a filled contour with a colour bar.

    Under ``log`` the contours are those of ``log10(quantity)``; ``levels`` (a count or a
    sequence in the quantity's units) default to 30 evenly spaced in the plotted scale.
    """
    _require_dims(surface, 2, "contour")
    prep = prepare(surface, quantity, log=log, vmin=vmin, vmax=vmax)
    lv = contour_levels(levels, prep)
    X, Y = _grid(surface)
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    if filled:
        cs = ax.contourf(X, Y, prep.z, levels=lv, cmap=CMAP, extend="both")
        step = max(1, len(lv) // 8)
        fig.colorbar(cs, ax=ax, label=prep.label, ticks=lv[::step], format="%.3g")
    else:
        cs = ax.contour(X, Y, prep.z, levels=lv, cmap=CMAP, linewidths=0.9)
        if len(cs.levels):
            ax.clabel(cs, cs.levels[::2], inline=True, fontsize=7, fmt="%.3g")
    _label_axes(ax)
    ax.set_aspect("auto")
    draw_trajectory(ax, surface)
    kind = "filled contour" if filled else "contour"
    ax.set_title(_title(prep.label, prep.scale, surface, kind))
    return fig


def heatmap(
    surface: Surface,
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """A heat map (``pcolormesh`` centred on the grid points) with a colour bar.

    The mesh is drawn from ``values.T`` so that rows run along y and columns along x; cells are
    centred on the coordinates, so non-uniform grids are drawn true to scale.
    """
    _require_dims(surface, 2, "heatmap")
    prep = prepare(surface, quantity, log=log, vmin=vmin, vmax=vmax)
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.asarray(surface.x, dtype=float)
    y = np.asarray(surface.y, dtype=float)
    # (ny, nx): row j is y[j], column i is x[i]
    mesh = ax.pcolormesh(
        x, y, prep.z.T, shading="nearest", cmap=CMAP, vmin=prep.vmin, vmax=prep.vmax
    )
    fig.colorbar(mesh, ax=ax, label=prep.label)
    _label_axes(ax)
    draw_trajectory(ax, surface)
    ax.set_title(_title(prep.label, prep.scale, surface, "heat map"))
    return fig


def surface_3d(
    surface: Surface,
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """A 3-D surface coloured by value; values beyond ``[vmin, vmax]`` are clipped to it.

    Clipping keeps one spike (a diverged corner of the grid) from flattening the whole view.
    """
    _require_dims(surface, 2, "surface_3d")
    prep = prepare(surface, quantity, log=log, vmin=vmin, vmax=vmax)
    X, Y = _grid(surface)
    z = np.ma.clip(prep.z, prep.vmin, prep.vmax)
    fig = Figure(figsize=(7.0, 5.6), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    surf = ax.plot_surface(
        X, Y, z, cmap=CMAP, vmin=prep.vmin, vmax=prep.vmax, linewidth=0, antialiased=True
    )
    ax.set_zlim(prep.vmin, prep.vmax)
    fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.08, label=prep.label)
    _label_axes(ax)
    ax.set_zlabel(prep.label)
    ax.set_title(_title(prep.label, prep.scale, surface, "3-D surface"))
    return fig
