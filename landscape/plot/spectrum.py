"""Figures of a Hessian spectrum: its density (log scale) and its eigenvalues (bars).

Each function takes the spectrum's numbers (``store.spectrum.SpectrumData`` or anything with its
attributes) and returns a matplotlib ``Figure`` built without pyplot: no backend is chosen or
changed. ``spectrum_figures`` gives every figure that applies, by name; ``write_figures`` saves
them as ``<stem>_<name>.<fmt>`` into a folder, each written whole (never through a link).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape._files import writable_folder
from landscape.plot.render import Figures, save_figure
from landscape.plot.text import plain

DENSITY_FLOOR = 1e-10  # the density's log axis starts this far below its peak
COLOURS = {"top": "tab:red", "bottom": "tab:blue"}


def density_figure(spectrum: Any) -> Figure:
    """φ̂(λ) on a log axis, as Ghorbani et al. (2019) and PyHessian draw it: the bulk near 0 and
    the outliers it hides on a linear axis."""
    d = spectrum.density
    values = np.asarray(d["values"])
    floor = DENSITY_FLOOR * float(values.max())
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(d["grid"], np.maximum(values, floor), color="tab:purple", lw=1.2)
    ax.set_ylim(floor, float(values.max()) * 2)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density φ(λ)")
    runs, steps = np.asarray(d["nodes"]).shape
    ax.set_title(
        plain(
            f"Hessian spectral density ({steps} Lanczos steps x {runs} start(s), "
            f"σ² = {d['sigma2']:.3g})\n{_subject(spectrum)}"
        ),
        fontsize=9,
    )
    return fig


def eigenvalue_figure(spectrum: Any) -> Figure:
    """One bar per eigenvalue, top (red) then bottom (blue), labelled λ1, λ2, ... / λn, ..."""
    values = np.asarray(spectrum.eigenvalues, dtype=float)
    ends = list(spectrum.ends)
    labels = _labels(ends)
    fig = Figure(figsize=(max(4.0, 0.6 * len(values) + 2), 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(values)), values, color=[COLOURS[e] for e in ends])
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(values)), labels)
    ax.set_ylabel("eigenvalue")
    for i, v in enumerate(values):
        ax.annotate(f"{v:.4g}", (i, v), ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax.set_title(plain(f"Hessian eigenvalues\n{_subject(spectrum)}"), fontsize=9)
    return fig


def layers_figure(spectrum: Any) -> Figure:
    """Per module: its block's largest eigenvalue and trace/parameters (mean curvature)."""
    names = list(spectrum.per_layer)
    rows = [spectrum.per_layer[k] for k in names]
    top = [r["eigenvalues"][0] for r in rows]
    fig = Figure(figsize=(7.0, 1.0 + 0.35 * len(names)), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(names))
    left.barh(y, top, color="tab:red")
    left.set_yticks(y, [plain(n) for n in names])
    left.invert_yaxis()
    left.set_xlabel("largest eigenvalue of the block")
    if all(r.get("trace") is not None for r in rows):
        mean = [r["trace"] / r["parameters"] for r in rows]
        err = [r["trace_se"] / r["parameters"] for r in rows]
        right.barh(y, mean, xerr=err, color="tab:green")
        right.set_xlabel("trace / parameters (± s.e.)")
    fig.suptitle(plain(f"Hessian per layer\n{_subject(spectrum)}"), fontsize=9)
    return fig


def spectrum_figures(spectrum: Any) -> Figures:
    """Every figure that applies, by name: ``eigenvalues``, ``density``, ``layers``."""
    return Figures((name, make(spectrum)) for name, make in _makers(spectrum))


def write_figures(spectrum: Any, folder: str | Path, stem: str, fmt: str = "png") -> list[Path]:
    """Save every figure as ``folder/<stem>_<name>.<fmt>``; returns the paths."""
    out = writable_folder(folder, "--plot")
    return [
        save_figure(lambda m=make: m(spectrum), out / f"{stem}_{name}.{fmt}", 120)
        for name, make in _makers(spectrum)
    ]


def _makers(spectrum: Any) -> list[tuple[str, Callable[[Any], Figure]]]:
    makers: list[tuple[str, Callable[[Any], Figure]]] = []
    if len(spectrum.eigenvalues):
        makers.append(("eigenvalues", eigenvalue_figure))
    if spectrum.density is not None:
        makers.append(("density", density_figure))
    if spectrum.per_layer:
        makers.append(("layers", layers_figure))
    return makers


def _labels(ends: list[str]) -> list[str]:
    """λ1, λ2, ... for the top values; λmin, λmin+1, ... for the bottom ones."""
    top = sum(e == "top" for e in ends)
    bottom = [("λmin" if j == 0 else f"λmin+{j}") for j in range(len(ends) - top)]
    return [f"λ{j + 1}" for j in range(top)] + bottom


def _subject(spectrum: Any) -> str:
    """``mlp on digits (train), 1000 samples, 83 parameters``."""
    p = spectrum.provenance or {}
    data = p.get("data") or {}
    name = data.get("name", "data") if isinstance(data, dict) else str(data)
    samples, count = p.get("samples", "?"), p.get("parameters", "?")
    return f"{p.get('model', 'model')} on {name}, {samples} samples, {count} parameters"
