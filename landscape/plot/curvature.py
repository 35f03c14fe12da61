"""Figures of a curvature file (``landscape curvature``): Li et al. (2018) Fig. 7 and its parts.

2-D: heat maps of ``|λmin/λmax|`` (colour scale from 0 to its largest value, or ``vmax``: dark
blue where the loss is locally convex, yellow where negative curvature is significant), of
``λmin`` and of ``λmax`` (a diverging scale centred on 0 when the values have both signs), with
the centre ``θ`` marked. 1-D: ``λmin`` and ``λmax`` against x, the ratio on a twin axis.

Figure functions return Figures; ``render_curvature`` names and writes the files:
``{stem}_ratio_heatmap.{fmt}``, ``{stem}_lambda_min_heatmap.{fmt}``,
``{stem}_lambda_max_heatmap.{fmt}`` (1-D: ``{stem}_curvature_1d.{fmt}``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure

from landscape._files import writable_folder
from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot.figures import CMAP
from landscape.plot.render import check_format, save_figures
from landscape.plot.text import plain
from landscape.store.curvature import CurvatureMap

TITLES = {
    "ratio": "|λmin / λmax|",
    "lambda_min": "λmin (smallest Hessian eigenvalue)",
    "lambda_max": "λmax (largest Hessian eigenvalue)",
}
DIVERGING = "RdBu_r"  # eigenvalue maps with both signs: blue negative, red positive


def _values(curv: CurvatureMap, quantity: str) -> np.ma.MaskedArray:
    """A map masked where not computed or not finite; raise if nothing can be drawn."""
    if not np.any(curv.done):
        raise SurfaceFileError(
            f"{curv.path} has no computed points yet; run landscape curvature first"
        )
    z = np.ma.masked_invalid(np.asarray(curv.maps[quantity], dtype=float))
    if z.count() == 0:
        raise SurfaceFileError(
            f"{curv.path}: every computed {quantity} is NaN (eigsh did not converge or the loss "
            "was not finite); there is nothing to plot"
        )
    return z


def _mark_centre(ax: Axes, curv: CurvatureMap) -> None:
    """A white-edged cross at the origin (the trained weights θ), when it lies on the grid."""
    inside_x = curv.x.min() <= 0 <= curv.x.max()
    inside_y = curv.y is not None and curv.y.min() <= 0 <= curv.y.max()
    if inside_x and inside_y:
        ax.plot([0], [0], "P", ms=10, mfc="white", mec="black", gid="centre")
        ax.annotate(
            "θ",
            (0, 0),
            xytext=(7, 7),
            textcoords="offset points",
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
        )


def _heatmap(curv: CurvatureMap, quantity: str, norm: Normalize, cmap: str) -> Figure:
    z = _values(curv, quantity)
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    # (ny, nx): row j is y[j], column i is x[i]; cells centred on the grid points
    mesh = ax.pcolormesh(curv.x, curv.y, z.T, shading="nearest", cmap=cmap, norm=norm)
    fig.colorbar(mesh, ax=ax, label=TITLES[quantity])
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel("y (direction 2)")
    _mark_centre(ax, curv)
    ax.set_title(plain(f"{TITLES[quantity]}\n{Path(curv.path).name}"))
    return fig


def ratio_map(curv: CurvatureMap, *, vmax: float | None = None) -> Figure:
    """``|λmin/λmax|`` as a heat map, colour scale from 0 to ``vmax`` (default: its maximum)."""
    _require_2d(curv, "ratio_map")
    if vmax is not None and not vmax > 0:
        raise ConfigError(f"--vmax must be above 0 for the |λmin/λmax| map, got {vmax}")
    z = _values(curv, "ratio")
    # an all-zero map (convex everywhere) keeps a non-empty scale
    top = float(vmax) if vmax is not None else max(float(z.max()), 1e-6)
    return _heatmap(curv, "ratio", Normalize(0.0, top), CMAP)


def eigenvalue_map(curv: CurvatureMap, quantity: str) -> Figure:
    """``λmin`` or ``λmax`` as a heat map: diverging around 0 when it has both signs."""
    _require_2d(curv, "eigenvalue_map")
    if quantity not in ("lambda_min", "lambda_max"):
        raise ConfigError(f"eigenvalue_map draws lambda_min or lambda_max, not {quantity!r}")
    z = _values(curv, quantity)
    lo, hi = float(z.min()), float(z.max())
    if lo < 0 < hi:
        return _heatmap(curv, quantity, TwoSlopeNorm(0.0, lo, hi), DIVERGING)
    if hi <= lo:  # a constant map
        lo, hi = lo - max(abs(lo) * 1e-3, 1e-9), hi + max(abs(hi) * 1e-3, 1e-9)
    return _heatmap(curv, quantity, Normalize(lo, hi), CMAP)


def curvature_1d(curv: CurvatureMap) -> Figure:
    """A 1-D map: ``λmin`` and ``λmax`` against x (left axis), ``|λmin/λmax|`` (right axis)."""
    if curv.dims != 1:
        raise ConfigError(f"curvature_1d needs a 1-D curvature file; {curv.path} is 2-D")
    _values(curv, "lambda_max")
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    ratio_ax = ax.twinx()
    ax.plot(curv.x, curv.maps["lambda_max"], ".-", color="tab:red", label="λmax")
    ax.plot(curv.x, curv.maps["lambda_min"], ".-", color="tab:blue", label="λmin")
    ax.axhline(0.0, color="0.6", lw=0.8)
    ratio_ax.plot(curv.x, curv.maps["ratio"], "s--", ms=3, color="0.3", label="|λmin/λmax|")
    if curv.x.min() <= 0 <= curv.x.max():
        ax.axvline(0.0, color="0.25", ls=":", lw=1.0, gid="centre")
    ax.set_xlabel("x (direction 1)")
    ax.set_ylabel("Hessian eigenvalue")
    ratio_ax.set_ylabel("|λmin / λmax|")
    ratio_ax.set_ylim(bottom=0.0)
    handles = ax.get_lines()[:2] + ratio_ax.get_lines()
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=3)
    ax.set_title(plain(f"Hessian curvature along x\n{Path(curv.path).name}"))
    return fig


def _require_2d(curv: CurvatureMap, what: str) -> None:
    if curv.dims != 2:
        raise ConfigError(f"{what} needs a 2-D curvature file; {curv.path} is 1-D (curvature_1d)")


def render_curvature(
    curv: CurvatureMap,
    out_dir: str | Path,
    *,
    fmt: str = "png",
    dpi: int = 150,
    vmax: float | None = None,
) -> list[Path]:
    """Write the figures of a curvature file to ``out_dir``; return their paths.

    ``vmax`` caps the colour scale of the ratio map (to put several maps on one scale).
    """
    fmt = check_format(fmt)
    _values(curv, "lambda_max")  # fail before making the folder when there is nothing to draw
    out = writable_folder(out_dir)
    stem = Path(curv.path).stem
    if curv.dims == 1:
        return save_figures([(out / f"{stem}_curvature_1d.{fmt}", lambda: curvature_1d(curv))], dpi)
    jobs = {
        "ratio": lambda: ratio_map(curv, vmax=vmax),
        "lambda_min": lambda: eigenvalue_map(curv, "lambda_min"),
        "lambda_max": lambda: eigenvalue_map(curv, "lambda_max"),
    }
    return save_figures(
        [(out / f"{stem}_{q}_heatmap.{fmt}", make) for q, make in jobs.items()], dpi
    )
