"""Write every applicable figure of one surface to a folder: the caller-side of ``figures``.

File names: ``{stem}_{quantity}_{kind}_{scale}.{fmt}`` (1-D: ``{stem}_{split}_1d_{scale}``),
with ``stem`` the surface file's stem. A ``--repeat`` file adds the mean over its seeds, named as
its own figures with a ``_mean`` suffix (1-D: every seed's curve, the mean and a ±1 std band), and
per quantity a spread map ``{stem}_{quantity}_heatmap_linear_std``. Each loss of a complete grid
adds its topology (``landscape.topology``, with gudhi installed): ``{stem}_{quantity}_barcode``
and ``{stem}_{quantity}_mergetree``; its significant minima are marked on the contour plots and
1-D curves. An n-D surface (3 to 5 axes) is drawn plane by plane (``landscape.plot.ndgrid``):
each pair of axes' slice through the centre and projection (the minimum over the other axes),
``{stem}_{quantity}_{kind}_{scale}_{xz}_{slice|min}``; its topology over the whole grid.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape import quantities
from landscape._files import check_replaceable, replaced_atomically, writable_folder
from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot import figures, ndgrid, repeats
from landscape.plot import topology as topo_figures
from landscape.plot.figures import Levels
from landscape.store.values import SurfaceValues

# the kinds of quantity drawn as maps of their own; an error bar (loss_se) is drawn with its loss
PLOTTED = ("loss", "acc")

TOPOLOGY_KINDS: tuple[str, ...] = ("barcode", "mergetree")  # 1-D and 2-D, from the topology
KINDS: tuple[str, ...] = ("1d", "contour", "contourf", "heatmap", "surface3d", *TOPOLOGY_KINDS)
FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
SCALES: tuple[str, ...] = ("linear", "log")
KINDS_2D: tuple[str, ...] = ("contour", "contourf", "heatmap", "surface3d")
KINDS_ND: tuple[str, ...] = ("contour", "contourf", "heatmap")  # each plane of an n-D grid
ACC_KINDS: tuple[str, ...] = ("contourf", "heatmap")  # accuracies: linear scale only


def check_choice(name: str, given: Iterable[str], choices: tuple[str, ...]) -> list[str]:
    """Validate a set of names against the choices; the error lists what is allowed."""
    picked = list(dict.fromkeys(given))
    bad = [k for k in picked if k not in choices]
    if bad:
        raise ConfigError(
            f"unknown {name} {', '.join(map(repr, bad))}; choose from {', '.join(choices)}"
        )
    return picked


MIN_DPI = 30  # below it a figure's labels are unreadable
MAX_DPI = 1200  # a 6.4 x 4.8 inch figure at 1200 dpi is 44 M pixels (177 MB)


def check_format(fmt: str) -> str:
    """Normalise an output format (``png``, ``.PDF`` ...) or raise ConfigError."""
    norm = fmt.lower().lstrip(".")
    if norm not in FORMATS:
        raise ConfigError(f"unknown figure format {fmt!r}; choose from {', '.join(FORMATS)}")
    return norm


def has_data(surface: SurfaceValues, quantity: str) -> bool:
    """True when ``quantity`` has at least one finite value to draw."""
    return bool(np.any(np.isfinite(np.asarray(surface.values[quantity], dtype=float))))


def _jobs_1d(
    surface: SurfaceValues,
    scales: list[str],
    vmin: float | None,
    vmax: float | None,
    marks: dict[str, Any] | None = None,
) -> list[tuple[str, Callable[[], Figure]]]:
    """(file name part, figure maker) for each split's curve in each scale; ``marks``: each
    loss' topology, whose significant minima are marked on the curve."""
    marks = marks or {}
    jobs = []
    for split in figures.splits(surface):
        q = f"{split}_loss"
        if q not in surface.values or not has_data(surface, q):
            continue
        for scale in scales:
            log = scale == "log"

            def make(s: str = split, lg: bool = log) -> Figure:
                fig = figures.curve_1d(surface, s, log=lg, vmin=vmin, vmax=vmax)
                loss = np.asarray(surface.values[f"{s}_loss"], dtype=float)
                floor = figures.positive_floor(loss) if lg else None
                return topo_figures.mark_minima(fig, marks.get(f"{s}_loss"), log_floor=floor)

            jobs.append((f"{split}_1d_{scale}", make))
    return jobs


def _jobs_2d(
    surface: SurfaceValues,
    kinds: list[str],
    scales: list[str],
    vmin: float | None,
    vmax: float | None,
    levels: Levels,
    marks: dict[str, Any] | None = None,
) -> list[tuple[str, Callable[[], Figure]]]:
    """(file name part, figure maker) for each quantity × kind × scale that applies; ``marks``:
    each loss' topology, whose significant minima the contour plots mark.

    ``vmin``/``vmax``/``levels`` are in loss units and apply to losses only; accuracies are
    drawn over their own range, in percent, linear scale.
    """
    jobs = []
    for q in surface.values:
        if quantities.kind_of(q) not in PLOTTED or not has_data(surface, q):
            continue
        acc = figures.is_accuracy(q)
        for kind in kinds:
            if acc and kind not in ACC_KINDS:
                continue
            for scale in ["linear"] if acc else scales:
                rng = {} if acc else {"vmin": vmin, "vmax": vmax}
                make = _maker(surface, q, kind, scale, rng, levels, (marks or {}).get(q))
                jobs.append((f"{q}_{kind}_{scale}", make))
    return jobs


def _jobs_nd(
    surface: SurfaceValues,
    kinds: list[str],
    scales: list[str],
    vmin: float | None,
    vmax: float | None,
    levels: Levels,
) -> list[tuple[str, Callable[[], Figure]]]:
    """An n-D surface's planes (``ndgrid.planes``: each pair of axes' slice through the centre
    and projection), each drawn as the 2-D kinds draw a plane, named ``..._{scale}_xz_slice``."""
    jobs = []
    for p in ndgrid.planes(surface):
        for part, make in _jobs_2d(p.surface, kinds, scales, vmin, vmax, levels):
            jobs.append((f"{part}_{p.name}", lambda p=p, make=make: p.label(make())))
    return jobs


def _jobs_repeats(
    surface: SurfaceValues,
    kinds: list[str],
    scales: list[str],
    vmin: float | None,
    vmax: float | None,
    levels: Levels,
) -> list[tuple[str, Callable[[], Figure]]]:
    """The mean over the seeds (``..._mean``) and, in 2-D, each quantity's spread map (``_std``).

    Only points done in every repeat are drawn; nothing when there is none yet.
    """
    mean = repeats.mean_surface(surface)
    if not np.any(mean.done):
        return []
    if surface.dims == 1:
        jobs = []
        for part, _ in _jobs_1d(mean, scales, vmin, vmax):
            split, scale = part.split("_1d_")

            def make(s: str = split, lg: bool = scale == "log") -> Figure:
                return repeats.repeat_curves(surface, s, log=lg, vmin=vmin, vmax=vmax)

            jobs.append((f"{part}_mean", make))
        return jobs
    jobs = [
        (f"{part}_mean", make) for part, make in _jobs_2d(mean, kinds, scales, vmin, vmax, levels)
    ]
    for q in surface.values:
        if quantities.kind_of(q) in PLOTTED and has_data(mean, q):
            jobs.append((f"{q}_heatmap_linear_std", lambda q=q: repeats.spread_map(surface, q)))
    return jobs


def _maker(
    surface: SurfaceValues,
    q: str,
    kind: str,
    scale: str,
    rng: dict,
    levels: Levels,
    topo: Any = None,
) -> Callable[[], Figure]:
    """A deferred call of the figure function for one 2-D kind (contours: with ``topo``'s
    significant minima marked)."""
    log = scale == "log"
    if kind in ("contour", "contourf"):
        lv = None if figures.is_accuracy(q) else levels
        return lambda: topo_figures.mark_minima(
            figures.contour(surface, q, log=log, levels=lv, filled=kind == "contourf", **rng),
            topo,
        )
    if kind == "heatmap":
        return lambda: figures.heatmap(surface, q, log=log, **rng)
    return lambda: figures.surface_3d(surface, q, log=log, **rng)


def figure_jobs(
    surface: SurfaceValues,
    *,
    kinds: Iterable[str] | None = None,
    scales: Iterable[str] = SCALES,
    vmin: float | None = None,
    vmax: float | None = None,
    levels: Levels = None,
) -> list[tuple[str, Callable[[], Figure]]]:
    """(name, figure maker) for every applicable figure of ``surface``; the name is the file
    name's part after the stem (``train_loss_contour_log``).

    1-D: one loss/accuracy curve per split in each scale. 2-D: for each loss, contour lines,
    filled contour, heat map and 3-D surface in each scale; for each accuracy, filled contour
    and heat map (linear). ``kinds`` narrows this to a subset of ``KINDS``. Quantities with no
    finite value yet are skipped; a surface with nothing to draw raises SurfaceFileError.
    """
    figures.check_levels(levels)
    surface = surface.computed_view()  # a partial run: its complete coarse sub-lattice
    picked = check_choice("plot kind", KINDS if kinds is None else kinds, KINDS)
    scale_list = check_choice("scale", scales, SCALES)
    applicable = ["1d"] if surface.dims == 1 else list(KINDS_2D if surface.dims == 2 else KINDS_ND)
    applicable += TOPOLOGY_KINDS
    picked = [k for k in picked if k in applicable]
    if not picked:
        raise ConfigError(
            f"{surface.path} is {surface.dims}-D: the plot kinds for it are {', '.join(applicable)}"
        )
    if not np.any(surface.done):
        raise SurfaceFileError(
            f"{surface.path} has no computed points yet; run landscape compute first"
        )
    marks = _topologies(
        surface, explicit=kinds is not None and bool(set(picked) & set(TOPOLOGY_KINDS))
    )
    plain = [k for k in picked if k not in TOPOLOGY_KINDS]
    jobs = _jobs_plain(surface, plain, scale_list, vmin, vmax, levels, marks) if plain else []
    jobs += _jobs_topology(surface, [k for k in picked if k in TOPOLOGY_KINDS], marks)
    if not jobs and not plain:  # only --kind barcode/mergetree, and no topology to draw
        raise SurfaceFileError(
            f"{surface.path}: the barcode and merge tree need every point of the grid computed "
            "and a finite loss; run landscape compute to the end first"
        )
    if not jobs:
        raise SurfaceFileError(
            f"{surface.path} has no finite loss or accuracy to plot "
            "(every computed value is NaN: did the loss diverge?)"
        )
    return jobs


def _jobs_plain(
    surface: SurfaceValues,
    kinds: list[str],
    scales: list[str],
    vmin: float | None,
    vmax: float | None,
    levels: Levels,
    marks: dict[str, Any],
) -> list[tuple[str, Callable[[], Figure]]]:
    """The curves (1-D), maps (2-D) or planes (n-D) of ``kinds``, and their mean over the
    seeds of a ``--repeat`` file."""
    if surface.dims == 1:
        jobs = _jobs_1d(surface, scales, vmin, vmax, marks)
    elif surface.dims > 2:
        jobs = _jobs_nd(surface, kinds, scales, vmin, vmax, levels)
    else:
        jobs = _jobs_2d(surface, kinds, scales, vmin, vmax, levels, marks)
    if jobs and surface.repeats and surface.dims <= 2:
        jobs += _jobs_repeats(surface, kinds, scales, vmin, vmax, levels)
    elif jobs and surface.repeats:  # an n-D grid's mean over the seeds, plane by plane
        mean = repeats.mean_surface(surface)
        jobs += [(f"{part}_mean", make) for part, make in
                 _jobs_nd(mean, kinds, scales, vmin, vmax, levels)]  # fmt: skip
    return jobs


def _topologies(surface: SurfaceValues, *, explicit: bool) -> dict[str, Any]:
    """Each loss' topology where it can be had; asked for by name (``--kind barcode``) without
    gudhi: the error that says how to install it."""
    from landscape.topology import gudhi_available

    if not gudhi_available():
        if explicit:
            from landscape.topology import require_gudhi

            require_gudhi()  # raises MissingExtraError with the install line
        return {}
    found = {q: topo_figures.topology_of(surface, q) for q in surface.quantities("loss")}
    return {q: t for q, t in found.items() if t is not None}


def _jobs_topology(
    surface: SurfaceValues, kinds: list[str], marks: dict[str, Any]
) -> list[tuple[str, Callable[[], Figure]]]:
    """Each loss' persistence barcode and merge tree (``{quantity}_barcode``, ``_mergetree``)."""
    draw = {"barcode": topo_figures.barcode, "mergetree": topo_figures.merge_tree_figure}
    return [
        (f"{q}_{kind}", lambda q=q, t=t, d=draw[kind]: d(surface, q, t))
        for q, t in marks.items()
        for kind in kinds
    ]


def render_all(
    surface: SurfaceValues,
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
    """Write every figure ``figure_jobs`` lists to ``out_dir`` and return the paths."""
    fmt = check_format(fmt)
    jobs = figure_jobs(surface, kinds=kinds, scales=scales, vmin=vmin, vmax=vmax, levels=levels)
    out = writable_folder(out_dir)
    stem = Path(surface.path).stem
    return save_figures([(out / f"{stem}_{part}.{fmt}", make) for part, make in jobs], dpi)


def save_figures(jobs: list[tuple[Path, Callable[[], Figure]]], dpi: int) -> list[Path]:
    """Save each job's figure at its path; every path is checked first, so a FIFO, a device or
    a symbolic link under one of the names stops the command before any figure is drawn."""
    if not MIN_DPI <= dpi <= MAX_DPI:  # the canvas is (inches x dpi)^2 pixels, allocated whole
        raise ConfigError(f"dpi must be between {MIN_DPI} and {MAX_DPI:,}, got {dpi:,}")
    for path, _ in jobs:
        check_replaceable(path)
    return [save_figure(make, path, dpi) for path, make in jobs]


def save_figure(make: Callable[[], Figure], path: Path, dpi: int) -> Path:
    """Build one figure, save it whole (a temporary file renamed onto ``path``, never written
    through a link or a FIFO), and close it whatever happens."""
    with replaced_atomically(path) as tmp:
        fig = make()
        try:
            fig.savefig(tmp, dpi=dpi)
        finally:
            fig.clear()  # not pyplot's (figures.py builds Figure objects): free its artists now
    return path


# --- in memory: what Surface.plot() returns without a folder, and a notebook shows ---------------

DISPLAY_DPI = 80  # figures shown inline: 6.4 in wide -> 512 px
PREVIEW_DPI = 50  # the small contour of a surface's HTML summary


class Figures(dict):
    """Figures by name (``train_loss_contour_log``, the file name's part after the stem), as
    ``Surface.plot()`` returns them without a folder. Jupyter shows every one inline (each an
    ``image/png`` output); ``figs[name]`` is a matplotlib Figure (``.savefig(path)`` writes it).
    """

    def __repr__(self) -> str:
        return f"{len(self)} figures: {', '.join(self)}"

    def _ipython_display_(self) -> None:
        # called by IPython only: PNGs rendered here show whatever backend the notebook uses
        from IPython.display import display

        for name, fig in self.items():
            bundle = {"image/png": png_bytes(fig, DISPLAY_DPI), "text/plain": f"<Figure {name}>"}
            display(bundle, raw=True)


def draw_all(surface: SurfaceValues, **options: Any) -> Figures:
    """Every figure ``render_all`` writes, built in memory: no file, no pyplot, no backend
    switch. ``options`` as ``figure_jobs`` takes them."""
    return Figures((name, make()) for name, make in figure_jobs(surface, **options))


def png_bytes(fig: Figure, dpi: int) -> bytes:
    """The figure as PNG bytes (matplotlib picks the Agg canvas for this one call only)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def preview(surface: SurfaceValues) -> Figure | None:
    """A small picture of the first loss with data: its filled contour in log scale (1-D: the
    curve); None when nothing is drawable yet."""
    view = surface.computed_view()
    losses = [q for q in view.quantities("loss") if has_data(view, q)]
    if not losses:
        return None
    if view.dims == 1:
        return figures.curve_1d(view, quantities.parse(losses[0])[0])
    if view.dims > 2:  # an n-D grid: its x-y slice through the centre
        view = ndgrid.plane(view, 0, 1, "slice")
    return figures.contour(view, losses[0], log=True, filled=True)
