"""Paths between two networks on one picture (``plot --compare`` of 1-D path surfaces).

The straight path from A to B, the path to B aligned by weight matching, the one aligned by
activation matching, a trained connecting curve (``Bézier curve``): each a 1-D surface of a
path family (``landscape.barrier.PATH_FAMILIES``) with t = a, A at t = 0 and B at t = 1. One
figure per split: the loss (left) and the error rate 1 − accuracy in % (right) against t, each
path with a band of ± 2 standard errors (the loss's stored ``<split>_loss_se``; the error's
binomial sqrt(e(1 − e)/n)), and its barrier marked at t* (from the chord to the curve) with its
value ± 1 s.e. in the legend. Each path is labelled by its family and options
(``path_label``), so any number of them, of any path family, join the figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape import families
from landscape.barrier import Rise, error_rise, evaluation_samples, is_path, rise
from landscape.plot.text import plain
from landscape.store.surface import stored_config
from landscape.store.values import SurfaceValues

CURVE_NAMES = {"bezier": "Bézier", "polychain": "polychain"}
BAND_SE = 2.0  # the band's half-width, in standard errors
ALIGN_LABELS = {"none": "straight", "weights": "aligned (weights)", "activations": "aligned (activations)"}  # fmt: skip


def all_paths(surfaces: Sequence[SurfaceValues]) -> bool:
    """Whether every surface is a 1-D path between two networks (so the path figure applies)."""
    return bool(surfaces) and all(is_path(s) for s in surfaces)


def path_label(surface: SurfaceValues) -> str:
    """``straight``, ``aligned (weights)``, ``aligned (activations)`` for interpolate; for another
    path family its name and the options it was given (``curve (curve=bezier)``)."""
    direction = (stored_config(surface) or {}).get("direction") or {}
    name = str(direction.get("name") or surface.direction_attrs.get("method", "?"))
    if name == "interpolate":
        return ALIGN_LABELS.get(str(direction.get("align", "none")), "interpolate")
    if name == "curve":  # a trained curve: named by its kind (its file is the study's own)
        return curve_label(surface)
    given = [
        f"{opt.field}={direction[opt.field]}"
        for opt, names in families.options()
        if name in names and opt.kind != "files" and opt.field in direction
        and opt.given(direction[opt.field])
    ]  # fmt: skip
    return f"{name} ({', '.join(given)})" if given else name


def curve_label(surface: SurfaceValues) -> str:
    """``Bézier curve`` or ``polychain curve``: the kind a curve surface stores."""
    kind = str(surface.direction_attrs.get("kind", ""))
    return f"{CURVE_NAMES.get(kind, kind)} curve".strip()


def _labels(surfaces: Sequence[SurfaceValues]) -> list[str]:
    """Each path's label; the file's name added where two would read alike."""
    labels = [path_label(s) for s in surfaces]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{lab}: {s.label}" for s, lab in zip(surfaces, labels, strict=True)]


def _draw(ax: Axes, t: np.ndarray, f: np.ndarray, se: np.ndarray | None, found: Rise | str,
          colour: str, label: str, scale: float) -> None:  # fmt: skip
    """One path: its curve, its ± BAND_SE s.e. band and its barrier (chord to curve at t*)."""
    if not isinstance(found, str):
        pm = "" if found.se is None else f" ± {found.se * scale:.2g}"
        label += f", barrier {found.value * scale:.3g}{pm} at t={found.t:.2g}"
    ax.plot(t, f * scale, color=colour, marker=".", label=plain(label))
    if se is not None and np.isfinite(se).any():
        lo, hi = ((f + sign * BAND_SE * se) * scale for sign in (-1.0, 1.0))
        ax.fill_between(t, lo, hi, color=colour, alpha=0.2, linewidth=0)
    if not isinstance(found, str):
        chord = (1.0 - found.t) * found.start + found.t * found.end
        ax.plot([0.0, 1.0], [found.start * scale, found.end * scale], color=colour, lw=0.8, ls=":")
        ax.annotate("", xy=(found.t, found.at_t * scale), xytext=(found.t, chord * scale),
                    arrowprops={"arrowstyle": "<->", "color": colour, "lw": 1.2})  # fmt: skip


def paths_figure(surfaces: Sequence[SurfaceValues], split: str = "train") -> Figure:
    """Loss and error (%) against t for every path, bands of ± 2 s.e., barriers marked."""
    fig = Figure(figsize=(11.0, 5.4), layout="constrained")
    loss_ax, err_ax = fig.subplots(1, 2)
    for k, (s, label) in enumerate(zip(surfaces, _labels(surfaces), strict=True)):
        colour, t = f"C{k % 10}", np.asarray(s.x, dtype=np.float64)
        f = np.asarray(s.values[f"{split}_loss"], dtype=np.float64)
        se = s.values.get(f"{split}_loss_se")
        _draw(loss_ax, t, f, se, rise(t, f, se), colour, label, 1.0)
        acc = s.values.get(f"{split}_acc")
        if acc is not None and np.isfinite(acc).any():
            e, n = 1.0 - np.asarray(acc, dtype=np.float64), evaluation_samples(s)
            e_se = np.sqrt(np.clip(e * (1 - e), 0, None) / n) if n else None
            _draw(err_ax, t, e, e_se, error_rise(t, acc, n), colour, label, 100.0)
    for ax, what in ((loss_ax, f"{split} loss"), (err_ax, f"{split} error (%)")):
        for end, name in ((0.0, "A"), (1.0, "B")):
            ax.axvline(end, color="0.6", lw=0.8, ls="--")
            ax.text(end, 1.0, f" {name}", transform=ax.get_xaxis_transform(), va="top")
        ax.set_xlabel("t (A at 0, B at 1)")
        ax.set_ylabel(plain(what))
        # below the axes: the curves' peaks (the barriers) are what the axes must show
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", frameon=False)
    loss_ax.set_title(plain(f"{split} loss along the paths, ± {BAND_SE:g} s.e."))
    err_ax.set_title(plain(f"{split} error along the paths, ± {BAND_SE:g} s.e."))
    if not err_ax.lines:
        err_ax.set_visible(False)  # no accuracies stored (targets that are not class labels)
    return fig


def path_splits(surfaces: Sequence[SurfaceValues]) -> list[str]:
    """The splits whose loss every path stores, in the first path's order."""
    first = [q.removesuffix("_loss") for q in surfaces[0].quantities("loss")]
    return [sp for sp in first if all(f"{sp}_loss" in s.values for s in surfaces)]
