"""Figures of an inspection report. Figure functions return matplotlib Figures; ``render_plots``
names and writes the files: ``weights.png`` (one panel per layer's weight histogram; more pages
as ``weights-2.png``, ...), ``activations.png`` (each layer's output histogram on the first
batch) and, with checkpoints, ``checkpoints.png``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from landscape._files import check_replaceable, replaced_atomically, writable_folder
from landscape.diagnostics.activations import ActivationStats
from landscape.diagnostics.report import Report
from landscape.diagnostics.training import Movement
from landscape.diagnostics.weights import Histogram, LayerReport
from landscape.plot.text import plain

PANELS_PER_FIGURE = 30  # 6 columns x 5 rows; more layers go on further pages
COLUMNS = 6


def weight_histograms(layers: Sequence[LayerReport]) -> Figure:
    """One panel per layer: the histogram of its weight tensor."""
    panels = []
    for layer in layers:
        stats = layer.tensors.get("weight") or next(iter(layer.tensors.values()), None)
        if stats is not None and stats.histogram is not None:
            title = plain(f"{layer.name} ({'x'.join(map(str, stats.shape))})")
            panels.append((title, stats.histogram, f"std {stats.std:.3g}"))
    return _histogram_grid(panels, "weights")


def activation_histograms(records: Sequence[ActivationStats]) -> Figure:
    """One panel per recorded output (first batch), with its RMS and share of dead units."""
    panels = []
    for r in records:
        hist = r.histogram()
        if hist is not None:
            note = f"rms {r.rms:.3g}" + (
                f", dead {r.dead_fraction:.0%}" if r.dead_fraction is not None else ""
            )
            panels.append((plain(r.name), hist, note))
    return _histogram_grid(panels, "activations (first batch)")


def movement_figure(movement: Movement) -> Figure:
    """Relative change from the first checkpoint, and the weight std, per layer and checkpoint.

    A layer that did not move at all (change 0) is drawn at 1e-12 on the log scale."""
    # layer and file names are drawn as they are, never read as mathtext
    names = [plain(m.name) for m in movement.layers]
    files = [plain(Path(f).name) for f in movement.files]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.35 * len(names) + 2), 7), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for k in range(1, len(files)):
        rel = [m.relative_change[k] for m in movement.layers]
        ax1.plot(x, np.maximum(rel, 1e-12), marker="o", label=f"#{k} {files[k]}")
    for k in range(len(files)):
        ax2.plot(
            x, [m.weight_std[k] for m in movement.layers], marker="o", label=f"#{k} {files[k]}"
        )
    ax1.set_yscale("log")
    ax1.set_ylabel("‖θ_k − θ_0‖ / ‖θ_0‖")
    ax1.set_title(f"relative change of each layer from #0 {files[0]}")
    ax2.set_ylabel("weight std")
    ax2.set_xticks(x, names, rotation=90, fontsize=7)
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def _histogram_grid(panels: list[tuple[str, Histogram, str]], title: str) -> Figure:
    n = max(len(panels), 1)
    cols = min(COLUMNS, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 * cols, 2.0 * rows + 0.6))  # not pyplot's: no backend involved
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, hist, note) in zip(axes.flat, panels, strict=False):
        edges = np.asarray(hist.edges)
        ax.stairs(hist.counts, edges, fill=True, alpha=0.8)
        ax.set_title(name, fontsize=7)
        ax.text(0.98, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=6)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def render_plots(report: Report, out_dir: str | Path, dpi: int = 120) -> list[Path]:
    """Write the report's figures into ``out_dir`` (created); return the paths written."""
    folder = writable_folder(out_dir, "--plots")
    jobs = []
    for page, chunk in enumerate(_chunks(report.layers), start=1):
        jobs.append((_page_name("weights", page), lambda c=chunk: weight_histograms(c)))
    records = [r for r in report.activations if r.role in ("layer", "relu")]
    for page, chunk in enumerate(_chunks(records), start=1):
        jobs.append((_page_name("activations", page), lambda c=chunk: activation_histograms(c)))
    if report.checkpoints is not None:
        jobs.append(("checkpoints.png", lambda: movement_figure(report.checkpoints)))
    for name, _ in jobs:
        check_replaceable(folder / name)  # no figure drawn over a FIFO, device or link
    for name, make in jobs:
        with replaced_atomically(folder / name) as tmp:
            fig = make()
            try:
                fig.savefig(tmp, dpi=dpi)
            finally:
                fig.clear()  # a Figure object, not pyplot's: free its artists now
    return [folder / name for name, _ in jobs]


def _chunks(items: Sequence) -> list[Sequence]:
    return [items[i : i + PANELS_PER_FIGURE] for i in range(0, len(items), PANELS_PER_FIGURE)]


def _page_name(stem: str, page: int) -> str:
    return f"{stem}.png" if page == 1 else f"{stem}-{page}.png"
