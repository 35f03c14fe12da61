"""Figures of one surface: 1-D curves, contours, heat maps and 3-D views.

Every figure function returns a matplotlib ``Figure`` and never saves, shows or closes it: the
caller names files (``render.render_all``) and closes what it made. Figures are built with
``matplotlib.figure.Figure`` directly, so nothing is registered with pyplot's global state.

Each figure is a thin frame around a ``draw_*`` function that draws one panel onto a given Axes
from a ``Prepared`` quantity (values, colour range, levels); ``compare`` draws several surfaces
with the same functions on one shared colour range and level set.

Orientation: ``values[q][i, j]`` is at ``(x[i], y[j])``; x is always the horizontal axis.
Points not computed (NaN) and non-finite values are masked, never drawn as a colour.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.colors import Normalize
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape import quantities
from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot.text import plain
from landscape.store.values import SurfaceValues

CMAP = "viridis"
DEFAULT_LEVELS = 30
MAX_LEVELS = 1000  # contour levels one figure may ask for (each is a set of paths in memory)
MAX_DIGITS = 8  # significant digits a tick label may need on a narrow range

Levels = int | Sequence[float] | None


@dataclass(frozen=True)
class Prepared:
    """A quantity ready to draw: masked values in plotted units and the colour range."""

    z: np.ma.MaskedArray  # (nx, ny) or (nx,), in plotted units (log10 or percent applied)
    vmin: float
    vmax: float
    label: str  # what the values are, in their own units: "train_loss", "train_acc (%)"
    scale: str  # "linear" or "log"
    floor: float  # under log: the stand-in for values <= 0 (plotted units before log10)
    clipped_from: float | None = None  # the largest value, when the default range was clipped

    @property
    def axis_label(self) -> str:
        """The colour bar's or z axis' label: the quantity and, under log, the scale."""
        return f"{self.label} (log scale)" if self.scale == "log" else self.label

    def text(self, value: float) -> str:
        """A plotted value as the quantity's own value: ``10**v`` under log (0.001, not -3), with
        the significant digits the range needs (:attr:`digits`)."""
        shown = 10.0**value if self.scale == "log" else value
        return f"{shown:.{self.digits}g}"

    @property
    def digits(self) -> int:
        """Significant digits that keep ticks a tenth of the range apart distinct: 3 (2 under
        log) or, on a narrow range, as many as the relative step between such ticks needs,
        1 + ⌈−log10 r⌉ (6.9512 and 6.9537 for losses within 0.02 of 6.95, not 6.95 twice).
        Linear: r = (range / 10) / the largest |value|; log: r = ln 10 · (decades / 10)."""
        base = 2 if self.scale == "log" else 3
        span = abs(self.vmax - self.vmin) / 10
        top = max(abs(self.vmin), abs(self.vmax))
        step = np.log(10) * span if self.scale == "log" else span / top if top else 0.0
        if not np.isfinite(step) or step <= 0:
            return base
        return int(max(base, min(MAX_DIGITS, 1 + np.ceil(-np.log10(step)))))


# ---------------------------------------------------------------------------------------------
# Data preparation


def is_accuracy(quantity: str) -> bool:
    """True for accuracy quantities (``*_acc``), which are plotted in percent."""
    return quantities.kind_of(quantity) == "acc"


def splits(surface: SurfaceValues) -> list[str]:
    """The splits stored in a surface, in file order: ``train_loss`` → ``train``."""
    names: list[str] = []
    for q in surface.values:
        found = quantities.parse(q)
        if found is not None and found[0] not in names:
            names.append(found[0])
    return names


def check_computed(surface: SurfaceValues, quantity: str) -> np.ndarray:
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


def positive_floor(raw: np.ndarray) -> float:
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
    surface: SurfaceValues,
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    floor: float | None = None,
) -> Prepared:
    """Values of one quantity in plotted units, masked where not finite, with a colour range.

    Accuracies are shown in percent. Under ``log`` the values become ``log10(value)``, values
    <= 0 clipped to the smallest positive one (or to ``floor``, given when several surfaces
    share one scale); ``vmin``/``vmax`` are given in the quantity's own units (loss, or percent
    for accuracies) and transformed the same way.
    """
    raw = check_computed(surface, quantity)
    if is_accuracy(quantity):
        raw = raw * 100.0
    label = f"{quantity} (%)" if is_accuracy(quantity) else quantity
    floor = positive_floor(raw) if floor is None else float(floor)
    if log:
        raw = _to_log(raw, floor)
        vmin = None if vmin is None else float(_to_log(vmin, floor))
        vmax = None if vmax is None else float(_to_log(vmax, floor))
    z = np.ma.masked_invalid(raw)
    lo = float(z.min()) if vmin is None else float(vmin)
    hi = float(z.max()) if vmax is None else float(vmax)
    clipped = None
    if vmax is None and not log and not is_accuracy(quantity):
        top = robust_top(z.compressed())
        if top < hi:
            clipped, hi = hi, max(top, lo)
    if hi < lo:
        raise ConfigError(f"vmin ({vmin}) must be below vmax ({vmax})")
    lo, hi = _spread(lo, hi)
    return Prepared(z, lo, hi, label, "log" if log else "linear", floor, clipped)


CLIP_RATIO = 50.0  # range / (median − min) above which the linear colour range is clipped
CLIP_QUANTILE = 0.25  # ... to this quantile of the values


def robust_top(values: np.ndarray) -> float:
    """The top of a linear colour range that shows the basin: the largest value, unless the
    surface explodes, i.e. its range exceeds CLIP_RATIO × (median − min); then the
    CLIP_QUANTILE-th quantile (a quarter of the plane lies below it).

    A ResNet-56 without skip connections rises from 0.28 at the centre to 3.5e6 at the corners
    (range / (median − min) ≈ 640): on a linear scale to the maximum everything but the corners
    is one colour and the 3-D view is flat. Trained networks with skips stay below the ratio
    (the demo's MLP 8.5, Li et al.'s ResNet-20 over [-1, 1]² 34), so they are drawn in full.
    The log scale always shows the whole range; ``--vmax`` overrides the clip.
    """
    if values.size == 0:
        return math.inf
    lo, med, hi = float(values.min()), float(np.median(values)), float(values.max())
    if med <= lo or hi - lo <= CLIP_RATIO * (med - lo):
        return hi
    return float(np.quantile(values, CLIP_QUANTILE))


def share(
    preps: Sequence[Prepared], *, vmin: float | None = None, vmax: float | None = None
) -> list[Prepared]:
    """The same quantities on one colour range: the union of their ranges, or ``vmin``/``vmax``.

    ``vmin``/``vmax`` are in the quantity's units and transformed like the values (log10 under a
    log scale, clipped to the lowest ``floor``). All results carry the same range and floor, so
    ``contour_levels`` gives every one of them the same levels.
    """
    if not preps:
        raise ConfigError("nothing to put on a shared scale: no surfaces given")
    floor = min(p.floor for p in preps)
    log = preps[0].scale == "log"

    def plotted(value: float) -> float:
        return float(_to_log(value, floor)) if log else float(value)

    lo = min(p.vmin for p in preps) if vmin is None else plotted(vmin)
    hi = max(p.vmax for p in preps) if vmax is None else plotted(vmax)
    if hi < lo:
        raise ConfigError(f"vmin ({vmin}) must be below vmax ({vmax})")
    lo, hi = _spread(lo, hi)
    return [replace(p, vmin=lo, vmax=hi, floor=floor) for p in preps]


def check_levels(levels: Levels) -> None:
    """A level count from 2 to MAX_LEVELS, or at most MAX_LEVELS given levels (ConfigError,
    before any figure is drawn: each level is a set of contour paths in memory)."""
    if levels is None:
        return
    if isinstance(levels, (int, np.integer)):
        if not 2 <= levels <= MAX_LEVELS:
            raise ConfigError(f"levels must be between 2 and {MAX_LEVELS:,}, got {levels:,}")
    elif len(levels) > MAX_LEVELS:
        raise ConfigError(f"at most {MAX_LEVELS:,} levels may be given, got {len(levels):,}")


def contour_levels(levels: Levels, prep: Prepared, values: np.ndarray | None = None) -> np.ndarray:
    """Contour levels in plotted units: a count, a sequence (in the quantity's units), or 30.

    A sequence given under a log scale is transformed with ``log10`` (values <= 0 clipped to
    ``prep.floor``) so that the user names levels in loss units whichever scale is drawn. A
    count gives equal-area levels on a linear scale (``area_levels``; ``values``: several
    surfaces' values, for one shared set), evenly spaced ones on a log scale.
    """
    check_levels(levels)
    if levels is None or isinstance(levels, (int, np.integer)):
        count = DEFAULT_LEVELS if levels is None else int(levels)
        if prep.scale == "linear":
            return area_levels(prep, count, values)
        return np.linspace(prep.vmin, prep.vmax, count)
    seq = np.unique(np.asarray(list(levels), dtype=float))
    if seq.size < 1 or not np.all(np.isfinite(seq)):
        raise ConfigError(f"levels must be finite numbers, got {list(levels)!r}")
    if prep.scale == "log":
        seq = np.unique(_to_log(seq, prep.floor))
    return seq


def area_levels(prep: Prepared, count: int, values: np.ndarray | None = None) -> np.ndarray:
    """``count`` linear-scale levels that split the plane into bands of equal area: quantiles of
    the values in the colour range, rounded to two significant digits.

    Evenly spaced levels put most lines where the loss is large: a surface that rises from 0.001
    to 8 had no line below 0.585, so its whole basin was one blank region. Equal-area bands give
    the basin as many lines as any other part of the plane. ``values``: several surfaces' values
    together (one level set for ``plot --compare``); default the prepared ones.
    """
    z = prep.z.compressed() if values is None else np.asarray(values, dtype=float)
    z = z[np.isfinite(z) & (z >= prep.vmin) & (z <= prep.vmax)]
    even = np.linspace(prep.vmin, prep.vmax, count)
    if z.size < count:
        return even
    inner = np.quantile(z, np.linspace(0.0, 1.0, count)[1:-1])
    rounded = np.unique([float(f"{v:.2g}") for v in inner])
    rounded = rounded[(rounded > prep.vmin) & (rounded < prep.vmax)]
    if rounded.size < count // 2:  # a nearly flat surface: its quantiles coincide
        return even
    return np.concatenate([[prep.vmin], rounded, [prep.vmax]])


def quantity_floor(surface: SurfaceValues, quantity: str) -> float:
    """The log-scale stand-in for values <= 0: the smallest positive value, in plotted units."""
    raw = check_computed(surface, quantity)
    return positive_floor(raw * 100.0 if is_accuracy(quantity) else raw)


# ---------------------------------------------------------------------------------------------
# Overlays: the training path and named points


def require_dims(surface: SurfaceValues, dims: int, what: str) -> None:
    if surface.dims != dims:
        hint = "use curve_1d (kind 1d)" if surface.dims == 1 else "use a 2-D kind"
        raise ConfigError(
            f"{what} needs a {dims}-D surface; {surface.path} is {surface.dims}-D ({hint})"
        )


def figure_title(quantity: str, scale: str, surface: SurfaceValues, kind: str = "") -> str:
    """``train_loss, filled contour (log scale)`` over ``mlp on digits (train), filter-norm
    directions``: the quantity, the figure and the scale, then what the surface is of, each
    named once."""
    head = f"{quantity}, {kind}" if kind else quantity
    return plain(f"{head} ({scale} scale)\n{describe(surface)}")


def describe(surface: SurfaceValues) -> str:
    """The model, the data and the direction family of a surface, for a title."""
    from pathlib import PurePath

    from landscape.store import stored_config

    method = surface.direction_attrs.get("method") or surface.attrs.get("direction") or "?"
    if surface.source_format == "li2018":
        return f"Li et al. (2018) reference surface {PurePath(surface.path).name}"
    cfg = stored_config(surface)
    if not cfg:  # a surface made in memory, or a file without its config
        return f"{PurePath(surface.path).name}, {method} directions"
    model = _spec_name(str((cfg.get("model") or {}).get("name", "?")))
    data = cfg.get("data") or {}
    split = data.get("split")
    with contextlib.suppress(ValueError, AttributeError):  # formats with one set: no split
        split = json.loads(str(surface.attrs.get("data"))).get("split", split)
    where = _spec_name(str(data.get("name", "?"))) + (f" ({split})" if split else "")
    partial = ""
    if surface.partial_of is not None:  # a partial file's computed sub-lattice
        partial = f", {' x '.join(map(str, surface.done.shape))} of " + " x ".join(
            map(str, surface.partial_of)
        )
    return f"{model} on {where}, {method} directions{partial}"


def _spec_name(spec: str) -> str:
    """A spec short enough for a title: ``cifar10:/data/cifar-10-batches-py`` → ``cifar10``,
    ``npz:/runs/x/set.npz`` → ``set.npz``, ``/runs/net.py:make`` → ``net.py:make``."""
    from pathlib import PurePath

    prefix, sep, rest = spec.partition(":")
    if sep and prefix in ("cifar10", "mnist"):
        return prefix
    if sep and prefix in ("npz", "pt"):
        return PurePath(rest).name
    if sep and prefix.endswith(".py"):
        return f"{PurePath(prefix).name}:{rest}"
    return PurePath(spec).name if "/" in spec else spec


def _grid(surface: SurfaceValues) -> tuple[np.ndarray, np.ndarray]:
    """X, Y of shape (nx, ny) so that X[i, j] = x[i], Y[i, j] = y[j], matching values[i, j]."""
    return np.meshgrid(np.asarray(surface.x), np.asarray(surface.y), indexing="ij")


def x_label_1d(surface: SurfaceValues) -> str:
    """A 1-D surface's x axis: a direction's coefficient, or a curve's t (``--direction curve``
    runs along the curve itself, from A at 0 to B at 1)."""
    chart = surface.direction_attrs.get("chart")
    if isinstance(chart, str) and chart:
        return f"t (along the {chart} curve, A → B)"
    return "x (direction 1)"


def _label_axes(ax: Axes) -> None:
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel("y (direction 2)")


def _floats(value: object) -> np.ndarray | None:
    """A 1-D float array from a stored array or list, or None when it is not numeric."""
    try:
        return np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    except (TypeError, ValueError):
        return None


def _short_name(value: object) -> str:
    """A checkpoint label fit for a plot: a file's stem, or an integral number without '.0'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value)
    if "/" in text or "\\" in text or "." in text.rsplit("/", 1)[-1]:
        from pathlib import PurePath

        text = PurePath(text.replace("\\", "/")).stem or text
    return text if len(text) <= 24 else text[:23] + "…"


def landmark_points(surface: SurfaceValues) -> list[tuple[str, float, float | None]]:
    """The stored landmarks as ``(name, x, y)``; y is None when only x is stored (1-D).

    Malformed entries (non-numeric or non-finite coordinates) are left out; missing names become
    ``P1``, ``P2``, ...
    """
    marks = surface.landmarks
    if not isinstance(marks, dict) or "x" not in marks:
        return []
    xs = _floats(marks["x"])
    if xs is None:
        return []
    ys = _floats(marks["y"]) if "y" in marks else None
    raw_names = marks.get("names")
    names = (
        [str(n) for n in np.atleast_1d(np.asarray(raw_names, dtype=object)).ravel()]
        if raw_names is not None
        else []
    )
    points = []
    for k, x in enumerate(xs):
        y = float(ys[k]) if ys is not None and k < ys.size else None
        if not np.isfinite(x) or (y is not None and not np.isfinite(y)):
            continue
        points.append((names[k] if k < len(names) else f"P{k + 1}", float(x), y))
    return points


def draw_landmarks(
    ax: Axes, surface: SurfaceValues, *, color: str = "black", row: int = 0
) -> list[str]:
    """Draw the named points of ``surface`` (e.g. interpolation end points A, B, C) on ``ax``.

    2-D: a marker and a text label at each ``(x, y)``. 1-D (or points without y): a dotted
    vertical line at each x, labelled at the top of the axes (``row`` moves the labels down a
    line, so that several surfaces overlaid on one axes keep theirs apart). Returns the names
    drawn.
    """
    points = landmark_points(surface)
    if not points:
        return []
    if surface.dims == 2 and all(y is not None for _, _, y in points):
        xs = [x for _, x, _ in points]
        ys = [y for _, _, y in points]
        ax.plot(
            xs,
            ys,
            "D",
            ls="none",
            mfc="white",
            mec=color,
            ms=7,
            gid="landmarks",
            label="_landmarks",
        )
        for name, x, y in points:
            ax.annotate(
                plain(name),
                (x, y),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                color=color,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
                gid=f"landmark-{name}",
            )
        return [name for name, _, _ in points]
    for name, x, _ in points:
        ax.axvline(x, color=color, ls=":", lw=1.0, gid=f"landmark-{name}", label="_landmark")
        ax.text(
            x,
            0.98 - 0.07 * row,
            f" {plain(name)}",
            transform=ax.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=9,
            fontweight="bold",
            color=color,
            gid=f"landmark-{name}",
        )
    return [name for name, _, _ in points]


def draw_trajectory(ax: Axes, surface: SurfaceValues, *, legend: bool = True) -> None:
    """Draw the projected training path, if stored: a line with markers, start and end marked.

    The end (the final checkpoint, the centre of the plane) is labelled with its checkpoint
    label when one is stored.
    """
    traj = surface.trajectory
    if not traj or "x" not in traj or "y" not in traj:
        return
    tx, ty = _floats(traj["x"]), _floats(traj["y"])
    if tx is None or ty is None or tx.size == 0 or tx.size != ty.size:
        return
    ax.plot(tx, ty, "-o", color="tab:red", ms=3, lw=1.2, label="trajectory", gid="trajectory")
    ax.plot(tx[:1], ty[:1], "s", color="white", mec="black", ms=7, label="start", gid="traj-start")
    ax.plot(tx[-1:], ty[-1:], "*", color="gold", mec="black", ms=12, label="end", gid="traj-end")
    labels = traj.get("labels")
    flat = [] if labels is None else list(np.atleast_1d(np.asarray(labels, dtype=object)).ravel())
    text = f"final ({_short_name(flat[-1])})" if len(flat) == tx.size else "final"
    ax.annotate(
        plain(text),
        (tx[-1], ty[-1]),
        xytext=(8, -12),
        textcoords="offset points",
        fontsize=8,
        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
        gid="traj-end-label",
    )
    if legend:
        ax.legend(loc="best", fontsize="small", framealpha=0.7)


def draw_overlays(ax: Axes, surface: SurfaceValues, *, legend: bool = True) -> None:
    """Everything drawn over a 2-D panel: the trained point, the training path, a curve's
    path, the landmarks."""
    if not surface.trajectory:  # a trajectory marks its final checkpoint, the centre, itself
        draw_centre(ax, surface)
    draw_trajectory(ax, surface, legend=legend)
    draw_curve_path(ax, surface)
    draw_landmarks(ax, surface)


def curve_path(surface: SurfaceValues) -> tuple[np.ndarray, np.ndarray] | None:
    """The path of a curve on its plane (``compute --direction curve`` in 2-D: the directions'
    attribute ``path``, JSON ``{"t", "x", "y"}``) as x and y arrays; None when there is none or
    it is malformed."""
    raw = surface.direction_attrs.get("path")
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    if not isinstance(raw, dict):
        return None
    px, py = _floats(raw.get("x")), _floats(raw.get("y"))
    if px is None or py is None or px.size != py.size or px.size < 2:
        return None
    keep = np.isfinite(px) & np.isfinite(py)
    return px[keep], py[keep]


def draw_curve_path(ax: Axes, surface: SurfaceValues) -> None:
    """A trained curve's path from A to B over the plane through A, B and its bend C."""
    path = curve_path(surface)
    if path is None or surface.y is None:
        return
    kind = surface.direction_attrs.get("kind", "curve")
    ax.plot(*path, "-", color="tab:orange", lw=1.8, label=f"{kind} curve", gid="curve-path")


def has_centre(surface: SurfaceValues) -> bool:
    """Whether the grid's range holds the centre (0, 0), the trained weights θ."""
    inside = float(np.min(surface.x)) <= 0.0 <= float(np.max(surface.x))
    if surface.y is not None:
        inside &= float(np.min(surface.y)) <= 0.0 <= float(np.max(surface.y))
    return bool(inside)


def draw_centre(ax: Axes, surface: SurfaceValues) -> None:
    """Mark the trained point θ at (0, 0), as the curvature maps do: a white plus, labelled."""
    if not has_centre(surface):
        return
    ax.plot([0.0], [0.0], "P", ms=10, mfc="white", mec="black", gid="centre", label="_centre")
    ax.annotate(
        "θ",
        (0.0, 0.0),
        xytext=(7, 5),
        textcoords="offset points",
        fontsize=10,
        fontweight="bold",
        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
        gid="centre-label",
    )


def draw_centre_1d(ax: Axes, surface: SurfaceValues) -> None:
    """1-D: a dotted line at x = 0, labelled θ (unless a landmark, e.g. interpolation's A, is
    there already)."""
    if not has_centre(surface) or any(x == 0.0 for _, x, _ in landmark_points(surface)):
        return
    ax.axvline(0.0, color="0.25", ls=":", lw=1.0, gid="centre", label="_centre")
    ax.text(0.0, 0.98, " θ", transform=ax.get_xaxis_transform(), ha="left", va="top",
            fontsize=10, fontweight="bold", color="0.25", gid="centre-label")  # fmt: skip


def equal_aspect(surface: SurfaceValues) -> bool:
    """Whether a 2-D panel keeps x and y to one scale: a trajectory's plane (parameter units)
    whose axes' spans are within a factor of four of each other."""
    if not surface.trajectory or surface.y is None:
        return False
    wx = float(np.ptp(np.asarray(surface.x, dtype=float)))
    wy = float(np.ptp(np.asarray(surface.y, dtype=float)))
    return wx > 0 and wy > 0 and 0.25 <= wx / wy <= 4.0


def panel_size(surface: SurfaceValues) -> tuple[float, float]:
    """The figure size of a one-panel 2-D figure: taller or flatter for an equal aspect."""
    if not equal_aspect(surface):
        return (6.4, 5.2)
    ratio = float(np.ptp(surface.y)) / float(np.ptp(surface.x))
    return (6.4, min(7.5, max(3.0, 1.4 + 4.6 * ratio)))


def set_aspect(ax: Axes, surface: SurfaceValues) -> None:
    """Equal aspect for surfaces in parameter units (a trajectory's plane), so distances and
    angles read true, unless one axis is over four times the other; then the panel says so."""
    if equal_aspect(surface):
        ax.set_aspect("equal", adjustable="box")
        return
    ax.set_aspect("auto")
    if not surface.trajectory:
        return
    ax.text(0.99, 0.01, "x and y not to the same scale", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=7, color="0.3", gid="aspect-note",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip


def clip_note(ax: Axes, prep: Prepared) -> None:
    """Say in the panel that the default colour range was clipped, and how to change it."""
    if prep.clipped_from is None:
        return
    ax.text(
        0.01,
        0.01,
        f"colour range clipped at {prep.text(prep.vmax)} (max {prep.clipped_from:.3g}): "
        "--vmax to change; the log scale shows all",
        transform=ax.transAxes,
        fontsize=7,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.85},
        gid="clip-note",
    )


def value_ticks(prep: Prepared) -> np.ndarray | None:
    """Colour bar ticks: under log, at 1, 2, 5 × 10^k losses within the range (about eight);
    linear: None, matplotlib's own."""
    if prep.scale != "log":
        return None
    for mantissas in ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0)):
        ticks = [
            math.log10(m) + k
            for k in range(math.floor(prep.vmin) - 1, math.ceil(prep.vmax) + 1)
            for m in mantissas
            if prep.vmin <= math.log10(m) + k <= prep.vmax
        ]
        if len(ticks) >= 4 or (mantissas == (1.0, 2.0, 5.0) and len(ticks) >= 2):
            return np.asarray(ticks[:: max(1, len(ticks) // 9 + 1)] if len(ticks) > 10 else ticks)
    return np.linspace(prep.vmin, prep.vmax, 5)


def draw_error_band(
    ax: Axes, surface: SurfaceValues, quantity: str, line: Line2D, log: bool
) -> None:
    """Shade ±2 standard errors of ``quantity`` around its curve, where the file holds them:
    two points whose bands overlap differ within sampling noise."""
    bar = quantities.error_of(quantity)
    if bar is None or bar not in surface.values:
        return
    y = np.asarray(surface.values[quantity], dtype=float)
    se = np.asarray(surface.values[bar], dtype=float)
    if not np.any(np.isfinite(se)):
        return
    lower, upper = y - 2 * se, y + 2 * se
    if log:
        lower = np.maximum(lower, positive_floor(y))
    band = ax.fill_between(
        np.asarray(surface.x, dtype=float), lower, upper, color=line.get_color(), alpha=0.18,
        lw=0, label=f"{line.get_label()} ± 2 s.e.",
    )  # fmt: skip
    band.set_gid("error-band")


def colour_bar(fig: Figure, mappable: object, prep: Prepared, **kwargs: object) -> object:
    """A colour bar labelled in the quantity's own units (log scale: 0.001, 0.01, ...)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ticks = value_ticks(prep)
    if isinstance(mappable, ContourSet) and mappable.filled:
        kwargs.setdefault("spacing", "proportional")  # the bar in value units, not per band
    return fig.colorbar(
        mappable,
        label=plain(prep.axis_label),
        ticks=ticks if ticks is not None else MaxNLocator(8),
        format=FuncFormatter(lambda v, _: prep.text(v)),
        **kwargs,
    )


def label_contours(
    ax: Axes,
    cs: ContourSet,
    prep: Prepared,
    most: int = 9,
    avoid: Sequence[tuple[float, float]] = (),
) -> None:
    """Inline labels on about ``most`` of the lines, each placed away from the panel's edges (so
    none is cut off), from the labels already placed (so the centre is not crowded) and from the
    points in ``avoid`` (the centre's marker)."""
    levels = list(cs.levels)
    paths = cs.get_paths()
    if not levels or len(paths) != len(levels):
        return
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    picked: list[float] = []
    where = [((px - x0) / (x1 - x0), (py - y0) / (y1 - y0)) for px, py in avoid]
    kept = len(where)
    for k in range(0, len(levels), max(1, math.ceil(len(levels) / most))):
        pts = paths[k].vertices
        if len(pts) == 0:
            continue
        u, v = (pts[:, 0] - x0) / (x1 - x0), (pts[:, 1] - y0) / (y1 - y0)
        edge = np.minimum.reduce([u, 1.0 - u, v, 1.0 - v])  # 0 at the frame
        apart = np.full(len(pts), 1.0)
        for pu, pv in where:
            apart = np.minimum(apart, np.hypot(u - pu, v - pv))
        score = np.minimum(edge, 0.5 * apart)
        best = int(np.argmax(score))
        if edge[best] < 0.06:  # the line only runs along the frame: no room for a label
            continue
        picked.append(levels[k])
        where.append((u[best], v[best]))
    if picked:
        positions = [(x0 + pu * (x1 - x0), y0 + pv * (y1 - y0)) for pu, pv in where[kept:]]
        ax.clabel(cs, picked, inline=True, fontsize=7, fmt=prep.text, manual=positions)


# ---------------------------------------------------------------------------------------------
# Panels: one surface drawn onto a given Axes, with given levels / colour range


def draw_contour(
    ax: Axes, surface: SurfaceValues, prep: Prepared, levels: np.ndarray, *, filled: bool = False
) -> ContourSet:
    """Contour lines (inline labels) or a filled contour of ``prep`` on ``ax``, with overlays.

    Colours map ``[prep.vmin, prep.vmax]``, so panels given the same range and levels are drawn
    on equal terms. The caller adds a colour bar.
    """
    X, Y = _grid(surface)
    norm = Normalize(prep.vmin, prep.vmax)
    if filled:
        cs = ax.contourf(X, Y, prep.z, levels=levels, cmap=CMAP, norm=norm, extend="both")
    else:  # lines at the range's ends would be single points (the minimum, a corner)
        inner = levels[(levels > prep.vmin) & (levels < prep.vmax)]
        lines = inner if inner.size else levels
        cs = ax.contour(X, Y, prep.z, levels=lines, cmap=CMAP, norm=norm, linewidths=0.9)
    _label_axes(ax)
    set_aspect(ax, surface)
    if not filled:
        label_contours(ax, cs, prep, avoid=[(0.0, 0.0)] if has_centre(surface) else [])
    draw_overlays(ax, surface)
    clip_note(ax, prep)
    return cs


def draw_heatmap(ax: Axes, surface: SurfaceValues, prep: Prepared) -> QuadMesh:
    """A heat map of ``prep`` on ``ax`` (colour range ``[prep.vmin, prep.vmax]``), with overlays.

    The mesh is drawn from ``z.T`` so that rows run along y and columns along x; cells are
    centred on the coordinates, so non-uniform grids are drawn true to scale.
    """
    x = np.asarray(surface.x, dtype=float)
    y = np.asarray(surface.y, dtype=float)
    # (ny, nx): row j is y[j], column i is x[i]
    mesh = ax.pcolormesh(
        x, y, prep.z.T, shading="nearest", cmap=CMAP, vmin=prep.vmin, vmax=prep.vmax
    )
    _label_axes(ax)
    set_aspect(ax, surface)
    draw_overlays(ax, surface)
    clip_note(ax, prep)
    return mesh


def draw_surface3d(ax: Axes, surface: SurfaceValues, prep: Prepared) -> object:
    """A 3-D surface of ``prep`` on a 3-D ``ax``, clipped to and z-limited by the colour range.

    Clipping keeps one spike (a diverged corner of the grid) from flattening the whole view.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    X, Y = _grid(surface)
    z = np.ma.clip(prep.z, prep.vmin, prep.vmax)
    ax.computed_zorder = False  # draw the centre's marker over the surface
    surf = ax.plot_surface(
        X, Y, z, cmap=CMAP, vmin=prep.vmin, vmax=prep.vmax, linewidth=0, antialiased=True
    )
    ax.set_zlim(prep.vmin, prep.vmax)
    # five ticks an axis, small, so that neighbouring labels never run together; the axis
    # labels sit clear of them
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(5))
    ticks = value_ticks(prep)
    if ticks is not None:
        ax.set_zticks(ticks[:: max(1, math.ceil(len(ticks) / 5))])
    ax.zaxis.set_major_formatter(FuncFormatter(lambda v, _: prep.text(v)))
    ax.tick_params(labelsize=8, pad=1)
    ax.set_xlabel("x (direction 1)", labelpad=6)
    ax.set_ylabel("y (direction 2)", labelpad=6)
    ax.set_zlabel(plain(prep.axis_label), labelpad=8)
    if has_centre(surface):
        from landscape.analysis import find_centre

        axes = [np.asarray(surface.x), np.asarray(surface.y)]
        z0 = z[find_centre(axes, np.ma.filled(z, np.nan)).index]
        if z0 is not np.ma.masked:
            ax.plot([0.0], [0.0], [float(z0)], "P", ms=9, mfc="white", mec="black", zorder=10,
                    gid="centre")  # fmt: skip
    return surf


def draw_curve(
    ax: Axes,
    surface: SurfaceValues,
    quantity: str,
    *,
    log: bool = False,
    floor: float | None = None,
    **style: object,
) -> Line2D:
    """One quantity of a 1-D surface against x (accuracies in percent); NaN points leave gaps.

    Under ``log`` values <= 0 are clipped to ``floor`` (default: the smallest positive value) so
    that a log y-axis, set by the caller, can show them.
    """
    y = np.asarray(check_computed(surface, quantity), dtype=float)
    if is_accuracy(quantity):
        y = y * 100.0
    if log:
        floor = positive_floor(y) if floor is None else floor
        with np.errstate(invalid="ignore"):
            y = np.where(np.isfinite(y), np.maximum(y, floor), np.nan)
    style = {"marker": ".", **style}
    if "label" in style:
        style["label"] = plain(style["label"])
    (line,) = ax.plot(np.asarray(surface.x, dtype=float), y, **style)
    return line


# ---------------------------------------------------------------------------------------------
# Figures


def curve_1d(
    surface: SurfaceValues,
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
    Landmarks (e.g. interpolation end points) are drawn as labelled vertical lines.
    """
    require_dims(surface, 1, "curve_1d")
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
    styles = ["-", "--", ":", "-."]
    for k, s in enumerate(chosen):
        _draw_split(ax, acc_ax, surface, s, log, styles[k % len(styles)])
    if log:
        ax.set_yscale("log")
    ax.set_ylim(bottom=vmin, top=vmax)
    draw_landmarks(ax, surface, color="0.25")
    draw_centre_1d(ax, surface)
    ax.set_xlabel(x_label_1d(surface))
    ax.set_ylabel("loss" + (" (log scale)" if log else ""), color="tab:blue")
    acc_ax.set_ylabel("accuracy (%)", color="tab:red")
    ax.tick_params(axis="y", colors="tab:blue")
    acc_ax.tick_params(axis="y", colors="tab:red")
    handles = [h for h in ax.get_lines() + acc_ax.get_lines() if not h.get_label().startswith("_")]
    labels = [h.get_label() for h in handles]
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize="small")
    name = split if split is not None else ", ".join(chosen)
    ax.set_title(figure_title(f"{name} loss and accuracy", "log" if log else "linear", surface))
    return fig


def _draw_split(
    ax: Axes, acc_ax: Axes, surface: SurfaceValues, split: str, log: bool, style: str
) -> None:
    """One split's loss on ``ax`` and accuracy (%) on ``acc_ax``; NaN points leave gaps."""
    line = draw_curve(
        ax, surface, f"{split}_loss", log=log, ls=style, color="tab:blue", label=f"{split} loss"
    )
    draw_error_band(ax, surface, f"{split}_loss", line, log)
    acc = surface.values.get(f"{split}_acc")
    if acc is not None and np.any(np.isfinite(acc)):
        draw_curve(acc_ax, surface, f"{split}_acc", ls=style, color="tab:red", label=f"{split} acc")


def contour(
    surface: SurfaceValues,
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
    require_dims(surface, 2, "contour")
    prep = prepare(surface, quantity, log=log, vmin=vmin, vmax=vmax)
    lv = contour_levels(levels, prep)
    fig = Figure(figsize=panel_size(surface), layout="constrained")
    ax = fig.add_subplot()
    cs = draw_contour(ax, surface, prep, lv, filled=filled)
    if filled:
        colour_bar(fig, cs, prep, ax=ax)
    kind = "filled contour" if filled else "contour"
    ax.set_title(figure_title(prep.label, prep.scale, surface, kind))
    return fig


def heatmap(
    surface: SurfaceValues,
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """A heat map (``pcolormesh`` centred on the grid points) with a colour bar."""
    require_dims(surface, 2, "heatmap")
    prep = prepare(surface, quantity, log=log, vmin=vmin, vmax=vmax)
    fig = Figure(figsize=panel_size(surface), layout="constrained")
    ax = fig.add_subplot()
    mesh = draw_heatmap(ax, surface, prep)
    colour_bar(fig, mesh, prep, ax=ax)
    ax.set_title(figure_title(prep.label, prep.scale, surface, "heat map"))
    return fig


def surface_3d(
    surface: SurfaceValues,
    quantity: str,
    *,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Figure:
    """A 3-D surface coloured by value; values beyond ``[vmin, vmax]`` are clipped to it."""
    require_dims(surface, 2, "surface_3d")
    prep = prepare(surface, quantity, log=log, vmin=vmin, vmax=vmax)
    fig = Figure(figsize=(7.0, 5.6), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    surf = draw_surface3d(ax, surface, prep)
    colour_bar(fig, surf, prep, ax=ax, shrink=0.6, pad=0.1)
    if prep.clipped_from is not None:
        fig.text(0.01, 0.01, f"z clipped at {prep.text(prep.vmax)} (max {prep.clipped_from:.3g}): "
                 "--vmax to change", fontsize=7, gid="clip-note")  # fmt: skip
    ax.set_title(figure_title(prep.label, prep.scale, surface, "3-D surface"))
    return fig
