"""Numbers from a surface: ε-sharpness, curvature, basin width and the grid minimum.

Every function here reads a ``Surface`` (values NaN where not computed) and returns plain numbers;
nothing is plotted and nothing touches torch. Coordinates are the grid's own (the direction
coefficients ``a``, ``b``), so with filter-normalized directions ``a = 0.2`` moves every filter by
20% of its norm and the numbers compare across networks (Li et al. 2018, §4).

- **centre**: the grid point at the origin (the trained weights), or the point nearest to it when
  the grid has no exact zero (said in a note). Sharpness, curvature and the basin are taken about
  it; sharpness and the basin need its value, so they are "not available" when it is not computed.
- **ε-sharpness** (Keskar et al. 2017, Metric 2.1): ``100 · (max_{p ∈ C_ε} f(p) − f(0)) / (1 + f(0))``
  with ``C_ε`` the box ``|p_i| ≤ ε`` around the centre, the maximum taken over the computed grid
  points in the box. Keskar et al. scale the box by the weights (``|z_i| ≤ ε(|x_i| + 1)``); on a
  filter-normalized plane the coordinates are already relative to the filters' norms, so ε is
  absolute in coordinates. Default ε = 0.2: 3 × 3 points on Li et al.'s 11-point grid over [-1, 1],
  13 × 13 (… 11 × 11 without the edge) on a 51-point one.
- **curvature**: a least-squares fit ``f ≈ c + gᵀp + ½ pᵀHp`` over the computed points in a box
  around the centre (``p`` measured from it), half-width 25% of each axis' half-range and at least
  one grid step; H (2 × 2, or f'' in 1-D), its eigenvalues, the gradient, R² and the RMS residual.
- **basin**: the 4-connected region of computed points with ``f ≤ threshold`` that holds the
  centre; its width along x and along y through the centre from linearly interpolated crossings,
  and in 2-D its area (cells of the trapezoid rule) as an area-equivalent diameter ``2·sqrt(A/π)``.
  Default threshold: the centre's loss + 1 (one nat of cross-entropy). Where the region reaches the
  grid's edge or a point not computed, the true basin may be larger: the numbers are lower bounds
  and are marked so.
- **minimum**: the lowest computed value, where it is, and its Euclidean distance from the centre.
- **topology** (``landscape.topology``, needs the ``topology`` extra for gudhi): the basins of the
  whole grid, their persistence and merge tree, Landscaper's SMAD, and how many minima stand above
  twice the standard error of the loss (``significant_minima``). It needs every point computed.
- **barrier** (``landscape.barrier``; 1-D paths between two networks only, e.g. ``interpolate``):
  max over t in [0, 1] of L(t) − [(1 − t)·L(A) + t·L(B)], with its standard error and t*, and the
  same for the error rate 1 − accuracy.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from landscape import quantities
from landscape.barrier import Barrier, barrier_text, is_path, path_barrier
from landscape.config import AXIS_NAMES
from landscape.errors import ConfigError
from landscape.store.values import SurfaceValues
from landscape.topology import (
    INSTALL_HINT,
    MissingExtraError,
    Topology,
    grid_topology,
    gudhi_available,
)

ANALYSIS_VERSION = 3  # 2: the topology section; 3: the barrier section
DEFAULT_EPSILON = 0.2
DEFAULT_RISE = 1.0
FIT_FRACTION = 0.25  # the fit box's half-width as a share of each axis' half-range
_TOL = 1e-9  # relative tolerance for "on the box's edge" and "exactly zero", in grid steps


@dataclass(frozen=True)
class AnalysisOptions:
    """What the analyses measure with. ``threshold`` None means the centre's value + ``rise``."""

    epsilon: float = DEFAULT_EPSILON
    threshold: float | None = None
    rise: float = DEFAULT_RISE
    fit_radius: float | None = None  # half-width of the fit box; None: 25% of the half-range

    def __post_init__(self) -> None:
        checks = [("epsilon", self.epsilon, False), ("rise", self.rise, True)]
        checks.append(("fit radius", self.fit_radius, False))
        for name, value, zero_ok in checks:
            if value is None:
                continue
            if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                raise ConfigError(f"the analysis {name} must be a positive number, not {value}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError(f"the basin threshold must be a finite loss, not {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Centre:
    """The grid point the analyses are taken about."""

    index: tuple[int, ...]
    at: tuple[float, ...]
    exact: bool  # the grid has a point at the origin
    value: float | None  # None: not computed or not finite


@dataclass(frozen=True)
class Sharpness:
    """Keskar et al.'s ε-sharpness over the grid points in the box ``|p_i| ≤ ε``."""

    epsilon: float
    value: float  # percent
    box_max: float
    box_max_at: tuple[float, ...]
    points: int  # computed points in the box, the centre included
    missing: int  # grid points in the box not computed (or not finite)
    clipped: bool  # the box reaches past the grid


@dataclass(frozen=True)
class Curvature:
    """A quadratic fit ``c + gᵀp + ½ pᵀHp`` about the centre."""

    hessian: tuple[tuple[float, ...], ...]
    eigenvalues: tuple[float, ...]  # largest first
    gradient: tuple[float, ...]
    intercept: float
    r2: float | None  # None when the fit has no spare points (it interpolates)
    rms: float  # root-mean-square residual
    points: int
    radius: tuple[float, ...]  # the fit box's half-width along each axis


@dataclass(frozen=True)
class Basin:
    """The connected sublevel set ``f ≤ threshold`` around the centre."""

    threshold: float
    rule: str  # how the threshold was chosen, e.g. "centre + 1"
    extent_x: tuple[float, float]
    width_x: float
    width_x_lower_bound: bool  # an end is at the grid's edge or next to a point not computed
    points: int
    extent_y: tuple[float, float] | None = None
    width_y: float | None = None
    width_y_lower_bound: bool = False
    area: float | None = None
    diameter: float | None = None  # area-equivalent: 2·sqrt(area/π)
    area_lower_bound: bool = False  # the region touches the grid's edge or uncomputed points


@dataclass(frozen=True)
class Minimum:
    """The lowest computed value on the grid."""

    value: float
    at: tuple[float, ...]
    distance: float  # from the centre, in grid coordinates
    below_centre: float | None  # f(centre) − minimum


@dataclass(frozen=True)
class SurfaceAnalysis:
    """All the numbers of one quantity; a section is None where it is not available (see why)."""

    quantity: str
    dims: int
    options: AnalysisOptions
    computed: int  # points with a finite value
    total: int
    centre: Centre
    sharpness: Sharpness | None = None
    curvature: Curvature | None = None
    basin: Basin | None = None
    minimum: Minimum | None = None
    topology: Topology | None = None
    barrier: Barrier | None = None  # 1-D paths between two networks only
    unavailable: dict[str, str] = field(default_factory=dict)  # section → reason
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, NaN and infinities as null."""
        return {"analysis_version": ANALYSIS_VERSION, **_clean(asdict(self))}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurfaceAnalysis:
        """The inverse of ``to_dict``; raises ValueError on a dict of another shape or version."""
        if d.get("analysis_version") != ANALYSIS_VERSION:
            raise ValueError(f"analysis version {d.get('analysis_version')!r}")
        try:
            sections = {
                name: None if d.get(name) is None else _build(kind, d[name])
                for name, kind in _SECTIONS.items()
            }
            return cls(
                quantity=str(d["quantity"]),
                dims=int(d["dims"]),
                options=_build(AnalysisOptions, d["options"]),
                computed=int(d["computed"]),
                total=int(d["total"]),
                unavailable=dict(d.get("unavailable") or {}),
                notes=list(d.get("notes") or []),
                **sections,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an analysis dict ({exc})") from None


_SECTIONS = {
    "centre": Centre,
    "sharpness": Sharpness,
    "curvature": Curvature,
    "basin": Basin,
    "minimum": Minimum,
    "topology": Topology,
    "barrier": Barrier,
}


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _tuples(obj: Any) -> Any:
    return tuple(_tuples(v) for v in obj) if isinstance(obj, list) else obj


def _build(kind: type, d: dict[str, Any]) -> Any:
    if hasattr(kind, "from_dict"):  # nested records (the topology's minima) build themselves
        return kind.from_dict(d)
    names = {f.name for f in fields(kind)}
    return kind(**{k: _tuples(v) for k, v in d.items() if k in names})


# --- the analyses -------------------------------------------------------------------------------


def analyse(
    surface: SurfaceValues, quantity: str, options: AnalysisOptions | None = None
) -> SurfaceAnalysis:
    """Every analysis of one quantity (``train_loss``, ...), on the computed points only."""
    options = options or AnalysisOptions()
    if quantity not in surface.values:
        known = ", ".join(surface.values) or "none"
        raise ConfigError(f"{surface.path} has no quantity {quantity!r}; stored: {known}")
    axes, f, notes = centre_plane(_axes(surface), surface.values[quantity])
    centre = find_centre(axes, f)
    unavailable: dict[str, str] = {}
    if not centre.exact:
        where = _where(centre.at)
        notes.append(
            f"the grid has no point at the origin; the nearest one, {where}, is the centre"
        )
    results: dict[str, Any] = {}
    finite = np.isfinite(f)
    if not finite.any():
        for name in ("sharpness", "curvature", "basin", "minimum", "topology"):
            unavailable[name] = "no computed points"
    else:
        results["minimum"] = grid_minimum(axes, f, centre)
        results["curvature"], why = curvature(axes, f, centre, options.fit_radius)
        if why:
            unavailable["curvature"] = why
        if centre.value is None:
            for name in ("sharpness", "basin"):
                unavailable[name] = f"the centre {_where(centre.at)} is not computed"
        else:
            results["sharpness"] = sharpness(axes, f, centre, options.epsilon)
            results["basin"], why = basin(axes, f, centre, options.threshold, options.rise)
            if why:
                unavailable["basin"] = why
        results["topology"], why = surface_topology(surface, quantity)
        if why:
            unavailable["topology"] = why
        if is_path(surface):  # the other surfaces have no barrier, and say nothing of it
            results["barrier"], why = path_barrier(surface, quantity)
            if why:
                unavailable["barrier"] = why
    return SurfaceAnalysis(
        quantity,
        len(axes),
        options,
        int(finite.sum()),
        int(f.size),
        centre,
        unavailable=unavailable,
        notes=notes,
        **{k: v for k, v in results.items() if v is not None},
    )


def analyse_all(
    surface: SurfaceValues, options: AnalysisOptions | None = None
) -> dict[str, SurfaceAnalysis]:
    """The analysis of every stored loss quantity."""
    return {q: analyse(surface, q, options) for q in surface.quantities("loss")}


def _axes(surface: SurfaceValues) -> list[np.ndarray]:
    """Every axis' coordinates as float64: x (y, and on an n-D grid z, ...)."""
    return [np.asarray(a, dtype=np.float64) for a in surface.axes]


def centre_plane(
    axes: list[np.ndarray], values: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The x–y plane of an n-D grid through its centre: every axis beyond y held at its
    coordinate nearest 0 (sharpness, curvature, basin and minimum are read on it; the topology
    takes the whole grid); a 1-D or 2-D grid as it is. With a note saying so for n-D."""
    f = np.asarray(values, dtype=np.float64)
    if len(axes) <= 2:
        return axes, f, []
    held = [int(np.argmin(np.abs(a))) for a in axes[2:]]
    at = ", ".join(
        f"{n}={a[i]:.4g}" for n, a, i in zip(AXIS_NAMES[2:], axes[2:], held, strict=False)
    )
    note = (
        f"a {len(axes)}-D grid: sharpness, curvature, basin and minimum are read on the x-y "
        f"plane through the centre ({at}); the topology on the whole grid"
    )
    return axes[:2], f[(slice(None), slice(None), *held)], [note]


def _step(axis: np.ndarray) -> float:
    """The smallest spacing of an axis (1 for a single point)."""
    return float(np.min(np.abs(np.diff(axis)))) if axis.size > 1 else 1.0


def _where(at: tuple[float, ...]) -> str:
    if len(at) == 1:
        return f"x={at[0]:.4g}"
    return f"(x={at[0]:.4g}, y={at[1]:.4g})"


def find_centre(axes: list[np.ndarray], f: np.ndarray) -> Centre:
    """The grid point nearest the origin, axis by axis, with its value if computed."""
    index = tuple(int(np.argmin(np.abs(a))) for a in axes)
    at = tuple(float(a[i]) for a, i in zip(axes, index, strict=True))
    exact = all(abs(c) <= _TOL * _step(a) for c, a in zip(at, axes, strict=True))
    value = float(f[index])
    return Centre(index, at, exact, value if math.isfinite(value) else None)


def _centre_value(centre: Centre) -> float:
    if centre.value is None:
        raise ValueError(f"the centre {_where(centre.at)} is not computed")
    return centre.value


def _offsets(axes: list[np.ndarray], centre: Centre) -> list[np.ndarray]:
    """Each grid point's offset ``p`` from the centre, one array per axis, of the grid's shape."""
    shifted = [a - c for a, c in zip(axes, centre.at, strict=True)]
    return list(np.meshgrid(*shifted, indexing="ij"))


def sharpness(axes: list[np.ndarray], f: np.ndarray, centre: Centre, epsilon: float) -> Sharpness:
    """Keskar et al.'s ε-sharpness: the largest rise in the box ``|p_i| ≤ ε``, in percent of 1 + f(0)."""
    f0 = _centre_value(centre)
    p = _offsets(axes, centre)
    in_box = np.ones(f.shape, dtype=bool)
    for pi, a in zip(p, axes, strict=True):
        in_box &= np.abs(pi) <= epsilon + _TOL * _step(a)
    known = in_box & np.isfinite(f)
    k = int(np.argmax(np.where(known, f, -np.inf)))
    box_max = float(f.flat[k])
    clipped = any(
        c - epsilon < a.min() - _TOL * _step(a) or c + epsilon > a.max() + _TOL * _step(a)
        for a, c in zip(axes, centre.at, strict=True)
    )
    return Sharpness(
        epsilon=epsilon,
        value=100.0 * (box_max - f0) / (1.0 + f0),  # Keskar et al. (2017), Metric 2.1
        box_max=box_max,
        box_max_at=tuple(float(a.flat[k]) for a in np.meshgrid(*axes, indexing="ij")),
        points=int(known.sum()),
        missing=int((in_box & ~known).sum()),
        clipped=bool(clipped),
    )


def _fit_radius(axes: list[np.ndarray], radius: float | None) -> tuple[float, ...]:
    """The fit box's half-width per axis: given, or 25% of the half-range; at least one step."""
    out = []
    for a in axes:
        r = FIT_FRACTION * (a.max() - a.min()) / 2.0 if radius is None else radius
        out.append(float(max(r, _step(a))))
    return tuple(out)


def curvature(
    axes: list[np.ndarray], f: np.ndarray, centre: Centre, radius: float | None = None
) -> tuple[Curvature | None, str]:
    """Least-squares ``f ≈ c + gᵀp + ½ pᵀHp`` over the computed points in the box about the centre.

    2-D columns: ``[1, a, b, ½a², ab, ½b²]`` → ``(c, g1, g2, H11, H12, H22)``, since
    ``½ pᵀHp = ½H11 a² + H12 ab + ½H22 b²``; 1-D: ``[1, a, ½a²]`` → ``(c, g, f'')``.
    """
    half = _fit_radius(axes, radius)
    p = _offsets(axes, centre)
    near = np.isfinite(f)
    for pi, r, a in zip(p, half, axes, strict=True):
        near &= np.abs(pi) <= r + _TOL * _step(a)
    pts = [pi[near] for pi in p]
    z = f[near]
    if len(axes) == 1:
        (a,) = pts
        columns = [np.ones_like(a), a, 0.5 * a * a]
    else:
        a, b = pts
        columns = [np.ones_like(a), a, b, 0.5 * a * a, a * b, 0.5 * b * b]
    design = np.stack(columns, axis=1)
    coef, _, rank, _ = np.linalg.lstsq(design, z, rcond=None)
    if rank < design.shape[1]:
        box = ", ".join(f"|{n}| ≤ {r:.4g}" for n, r in zip("xy", half, strict=False))
        return None, (
            f"{z.size} computed points near the centre ({box}) do not determine a quadratic; "
            "give a larger fit radius"
        )
    residual = z - design @ coef
    ss_res = float(residual @ residual)
    ss_tot = float(np.sum((z - z.mean()) ** 2))
    spare = z.size > design.shape[1]  # with no spare points the fit interpolates: R² means nothing
    r2 = (1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0) if spare else None
    if len(axes) == 1:
        hessian = np.array([[coef[2]]])
        gradient = coef[1:2]
    else:
        hessian = np.array([[coef[3], coef[4]], [coef[4], coef[5]]])
        gradient = coef[1:3]
    eigenvalues = np.sort(np.linalg.eigvalsh(hessian))[::-1]
    return Curvature(
        hessian=tuple(tuple(float(v) for v in row) for row in hessian),
        eigenvalues=tuple(float(v) for v in eigenvalues),
        gradient=tuple(float(v) for v in gradient),
        intercept=float(coef[0]),
        r2=r2,
        rms=math.sqrt(ss_res / z.size),
        points=int(z.size),
        radius=half,
    ), ""


def _crossing(
    coords: np.ndarray, line: np.ndarray, k0: int, threshold: float, step: int
) -> tuple[float, bool]:
    """Where ``line`` first rises above ``threshold`` walking from ``k0`` by ``step``.

    Linear interpolation between the last point inside and the first outside:
    ``c_in + (t − f_in) / (f_out − f_in) · (c_out − c_in)``. Returns ``(coordinate, open)``;
    ``open`` when the walk ends at the grid's edge or at a point not computed (the last inside
    point is then returned: the crossing lies somewhere beyond it).
    """
    k = k0
    while 0 <= k + step < line.size and np.isfinite(line[k + step]) and line[k + step] <= threshold:
        k += step
    nxt = k + step
    if not 0 <= nxt < line.size or not np.isfinite(line[nxt]):
        return float(coords[k]), True
    frac = (threshold - line[k]) / (line[nxt] - line[k])  # in [0, 1): line[nxt] > t ≥ line[k]
    return float(coords[k] + frac * (coords[nxt] - coords[k])), False


def _extent(
    coords: np.ndarray, line: np.ndarray, k0: int, threshold: float
) -> tuple[tuple[float, float], float, bool]:
    lo, lo_open = _crossing(coords, line, k0, threshold, -1)
    hi, hi_open = _crossing(coords, line, k0, threshold, +1)
    return (lo, hi), hi - lo, lo_open or hi_open


def _cell_sizes(axis: np.ndarray) -> np.ndarray:
    """The trapezoid rule's width of each point's cell: halfway to each neighbour."""
    if axis.size == 1:
        return np.ones(1)
    mids = (axis[1:] + axis[:-1]) / 2.0
    edges = np.concatenate([[axis[0]], mids, [axis[-1]]])
    return np.abs(np.diff(edges))


FINE_POINTS = 1200  # at most this many fine points per axis for the interpolated area


def interpolated_area(
    axes: list[np.ndarray],
    f: np.ndarray,
    region: np.ndarray,
    threshold: float,
    at: tuple[int, ...],
) -> float:
    """The area of the basin ``f ≤ threshold`` around grid point ``at``, from the bilinear
    interpolant of ``f``: the same linear interpolation between grid points that the widths use.

    Counting whole grid cells would floor the area at one cell (a basin narrower than the grid
    spacing would still get a cell's diameter, coarser than its interpolated widths). Instead
    the region's bounding box, one grid cell wider on every side, is cut into ``k × k`` sub-cells
    per grid cell; the sub-cells whose interpolated value at their centre is ≤ ``threshold``
    and which connect to the centre's sub-cell are summed. Points not computed count as outside.
    """
    rows, cols = np.nonzero(region)
    i0, i1 = max(int(rows.min()) - 1, 0), min(int(rows.max()) + 1, f.shape[0] - 1)
    j0, j1 = max(int(cols.min()) - 1, 0), min(int(cols.max()) + 1, f.shape[1] - 1)
    x, y = axes[0][i0 : i1 + 1], axes[1][j0 : j1 + 1]
    if len(x) < 2 or len(y) < 2:  # a grid of one row or column: whole cells
        cells = np.outer(_cell_sizes(axes[0]), _cell_sizes(axes[1]))
        return float(cells[region].sum())
    sub = f[i0 : i1 + 1, j0 : j1 + 1]
    finite = np.isfinite(sub)
    above = max(threshold, float(sub[finite].max())) + 1.0 + abs(threshold)
    sub = np.where(finite, sub, above)  # not computed: outside, and finite to interpolate
    k = max(2, min(16, FINE_POINTS // max(len(x), len(y))))
    fx, wx = _fine_cells(x, k)
    fy, wy = _fine_cells(y, k)
    order = np.argsort(x), np.argsort(y)
    values = bilinear(x[order[0]], y[order[1]], sub[np.ix_(*order)], fx, fy)
    inside = values <= threshold
    if not inside.any():  # narrower than a sub-cell: the sub-cell at the centre bounds it
        return float(
            wx[np.argmin(np.abs(fx - axes[0][at[0]]))] * wy[np.argmin(np.abs(fy - axes[1][at[1]]))]
        )
    cx = int(np.argmin(np.abs(fx - axes[0][at[0]])))
    cy = int(np.argmin(np.abs(fy - axes[1][at[1]])))
    if not inside[cx, cy]:  # the centre sits on a sub-cell corner: take its nearest inside one
        near = np.argwhere(inside)
        cx, cy = near[np.argmin(np.hypot(fx[near[:, 0]] - fx[cx], fy[near[:, 1]] - fy[cy]))]
    mask = component(inside, (int(cx), int(cy)))
    return float(np.outer(wx, wy)[mask].sum())


def component(inside: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    """The 4-connected region of the boolean array ``inside`` (1-D or 2-D) that holds ``seed``;
    all False when the seed is outside.

    Grown a run at a time: along each axis in turn, every maximal run of ``inside`` cells that
    touches the region joins it whole, until a sweep over the axes adds nothing. Each sweep is a
    few passes over the array; a basin needs two or three (one more per turn a path through it
    takes), so this costs about what labelling every component would, with numpy alone.
    """
    region = np.zeros(inside.shape, dtype=bool)
    region[seed] = inside[seed]
    while True:
        grown = region
        for axis in range(inside.ndim):
            grown = _runs_touching(inside, grown, axis)
        if np.array_equal(grown, region):
            return region
        region = grown


def _runs_touching(inside: np.ndarray, region: np.ndarray, axis: int) -> np.ndarray:
    """``region`` with every run of ``inside`` along ``axis`` that holds one of its cells."""
    a, r = np.moveaxis(inside, axis, -1), np.moveaxis(region, axis, -1)
    starts = a.copy()
    starts[..., 1:] &= ~a[..., :-1]  # a run starts where the cell before it is outside
    # a number per run, unique over the whole array: runs before it in its line, plus an offset
    # per line larger than any line's count
    line = np.arange(a[..., 0].size).reshape(a.shape[:-1])[..., None]
    run = np.cumsum(starts, axis=-1) + line * (a.shape[-1] + 1)
    touched = np.zeros(int(run.max()) + 1, dtype=bool)
    touched[run[r]] = True
    return np.moveaxis(a & touched[run], -1, axis)


def _neighbours(region: np.ndarray) -> np.ndarray:
    """The cells outside ``region`` with a 4-neighbour (a shared edge) inside it."""
    grown = region.copy()
    for axis in range(region.ndim):
        front = [slice(None)] * region.ndim
        back = [slice(None)] * region.ndim
        front[axis], back[axis] = slice(1, None), slice(None, -1)
        grown[tuple(front)] |= region[tuple(back)]
        grown[tuple(back)] |= region[tuple(front)]
    return grown & ~region


def bilinear(
    x: np.ndarray, y: np.ndarray, f: np.ndarray, px: np.ndarray, py: np.ndarray
) -> np.ndarray:
    """``f`` on the increasing grid axes ``x``, ``y`` interpolated bilinearly at every pair of
    ``px`` × ``py`` (points inside the grid): in the cell [x_i, x_i+1] × [y_j, y_j+1], with
    t = (p_x − x_i)/(x_i+1 − x_i) and u likewise,

        f(p) = (1−t)(1−u)·f_ij + t(1−u)·f_i+1,j + (1−t)u·f_i,j+1 + tu·f_i+1,j+1
    """
    i = np.clip(np.searchsorted(x, px, side="right") - 1, 0, len(x) - 2)
    j = np.clip(np.searchsorted(y, py, side="right") - 1, 0, len(y) - 2)
    t = ((px - x[i]) / (x[i + 1] - x[i]))[:, None]
    u = ((py - y[j]) / (y[j + 1] - y[j]))[None, :]
    ii, jj = i[:, None], j[None, :]
    return (
        (1 - t) * (1 - u) * f[ii, jj]
        + t * (1 - u) * f[ii + 1, jj]
        + (1 - t) * u * f[ii, jj + 1]
        + t * u * f[ii + 1, jj + 1]
    )


def _fine_cells(axis: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and widths of ``k`` equal sub-cells in every interval between grid points."""
    edges = np.concatenate(
        [np.linspace(a, b, k + 1)[:-1] for a, b in itertools.pairwise(axis)] + [axis[-1:]]
    )
    return (edges[1:] + edges[:-1]) / 2.0, np.abs(np.diff(edges))


def basin(
    axes: list[np.ndarray],
    f: np.ndarray,
    centre: Centre,
    threshold: float | None = None,
    rise: float = DEFAULT_RISE,
) -> tuple[Basin | None, str]:
    """The 4-connected region ``f ≤ threshold`` around the centre; widths through the centre."""
    f0 = _centre_value(centre)
    rule = f"centre + {rise:g}" if threshold is None else "given"
    t = f0 + rise if threshold is None else float(threshold)
    if f0 > t:
        return None, f"the centre's value {f0:.6g} is above the threshold {t:.6g}"
    inside = np.isfinite(f) & (f <= t)
    region = component(inside, centre.index)
    lines = [f[:, centre.index[1]], f[centre.index[0], :]] if f.ndim == 2 else [f]
    measured = [
        _extent(a, line, k0, t) for a, line, k0 in zip(axes, lines, centre.index, strict=True)
    ]
    (ext_x, width_x, open_x) = measured[0]
    result: dict[str, Any] = {}
    if f.ndim == 2:
        (ext_y, width_y, open_y) = measured[1]
        area = interpolated_area(axes, f, region, t, centre.index)
        # open: the region reaches the edge, or a neighbour of it is not computed
        grown = _neighbours(region)
        edge = (
            region[0, :].any() or region[-1, :].any() or region[:, 0].any() or region[:, -1].any()
        )
        result = {
            "extent_y": ext_y,
            "width_y": width_y,
            "width_y_lower_bound": open_y,
            "area": area,
            "diameter": 2.0 * math.sqrt(area / math.pi),
            "area_lower_bound": bool(edge or (grown & ~np.isfinite(f)).any()),
        }
    return Basin(
        threshold=t,
        rule=rule,
        extent_x=ext_x,
        width_x=width_x,
        width_x_lower_bound=open_x,
        points=int(region.sum()),
        **result,
    ), ""


TOPOLOGY_NEEDS_GUDHI = f"needs gudhi: {INSTALL_HINT}"


def surface_topology(surface: SurfaceValues, quantity: str) -> tuple[Topology | None, str]:
    """The topology of one loss over the whole grid, tested against its stored standard errors;
    None and the reason when a point is not computed yet or gudhi is not installed."""
    if not np.all(surface.done):
        done = int(np.sum(surface.done))
        return None, f"{done} of {surface.done.size} points computed: it needs the whole grid"
    bar = quantities.error_of(quantity)
    se = surface.values.get(bar) if bar else None
    try:
        return grid_topology(surface.values[quantity], _axes(surface), se), ""
    except MissingExtraError:
        return None, TOPOLOGY_NEEDS_GUDHI


def grid_minimum(axes: list[np.ndarray], f: np.ndarray, centre: Centre) -> Minimum:
    """The lowest computed value, its coordinates and its distance from the centre."""
    k = int(np.argmin(np.where(np.isfinite(f), f, np.inf)))
    index = np.unravel_index(k, f.shape)
    at = tuple(float(a[i]) for a, i in zip(axes, index, strict=True))
    distance = math.dist(at, centre.at)
    value = float(f.flat[k])
    below = None if centre.value is None else centre.value - value
    return Minimum(value, at, distance, below)


# --- stored analyses ----------------------------------------------------------------------------


def stored_or_computed(
    surface: SurfaceValues, options: AnalysisOptions | None = None
) -> dict[str, tuple[SurfaceAnalysis, bool]]:
    """Each loss quantity's analysis and whether it came from the file.

    A stored analysis is used when it was made with the same options over the same computed
    points; otherwise (or when it cannot be read) the analysis is computed now.
    """
    options = options or AnalysisOptions()
    stored = surface.stored_analysis
    out = {}
    for q in surface.quantities("loss"):
        try:
            kept = SurfaceAnalysis.from_dict(stored[q]) if q in stored else None
        except ValueError:
            kept = None
        computed = int(np.isfinite(surface.values[q]).sum())
        stale = kept is not None and _topology_now_possible(kept)
        if kept is not None and kept.options == options and kept.computed == computed and not stale:
            out[q] = (kept, True)
        else:
            out[q] = (analyse(surface, q, options), False)
    return out


def _topology_now_possible(kept: SurfaceAnalysis) -> bool:
    """A stored analysis made without gudhi, read where gudhi is now installed."""
    return kept.unavailable.get("topology") == TOPOLOGY_NEEDS_GUDHI and gudhi_available()


def analysis_report(
    surface: SurfaceValues, options: AnalysisOptions | None = None
) -> dict[str, Any]:
    """The analyses as one JSON-ready dict: the file, and per loss quantity its analysis."""
    found = stored_or_computed(surface, options)
    return {
        "file": surface.path,
        "analysis": {q: a.to_dict() for q, (a, _) in found.items()},
        "stored": {q: stored for q, (_, stored) in found.items()},
    }


def store_analysis(path: str | Path) -> bool:
    """Analyse a complete surface file and write the result into it (``/analysis``).

    Returns False, writing nothing, while points are missing or when the file already holds
    the same analysis.
    """
    from landscape.store import read_surface, write_analysis

    surface = read_surface(path)
    if not surface.done.all():
        return False
    texts = {q: a.to_json() for q, a in analyse_all(surface).items()}
    if {q: json.loads(t) for q, t in texts.items()} == surface.stored_analysis:
        return False
    write_analysis(path, texts)
    return True


# --- text ---------------------------------------------------------------------------------------

_PAD = " " * 13


def format_analysis(result: SurfaceAnalysis, *, stored: bool = False) -> list[str]:
    """The analysis as ``info`` lines, one fact a line, 13-character labels."""
    c = result.centre
    value = "not computed" if c.value is None else f"{c.value:.6g}"
    source = "stored in the file" if stored else "computed from the values"
    lines = [f"{'analysis:':<12} {result.quantity}, centre {_where(c.at)} = {value} ({source})"]
    lines.extend(f"{_PAD}note: {n}" for n in result.notes)
    for name, fmt in (
        ("sharpness", _sharpness_text),
        ("curvature", _curvature_text),
        ("basin", _basin_text),
        ("minimum", _minimum_text),
        ("topology", _topology_text),
        ("barrier", barrier_text),
    ):
        section = getattr(result, name)
        if name == "barrier" and section is None and name not in result.unavailable:
            continue  # not a path: no line at all
        head = f"{name + ':':<12} "
        if section is None:
            lines.append(f"{head}not available ({result.unavailable.get(name, 'no data')})")
        else:
            text = fmt(section)
            lines.append(head + text[0])
            lines.extend(_PAD + t for t in text[1:])
    return lines


def _sharpness_text(s: Sharpness) -> list[str]:
    head = f"{s.value:.4g} (ε={s.epsilon:g}, Keskar et al.): max {s.box_max:.6g} at {_where(s.box_max_at)}"
    detail = f"over {s.points} computed points in the box"
    if s.missing:
        detail += f" ({s.missing} not computed)"
    if s.clipped:
        detail += "; the box reaches past the grid (only its part on the grid counts)"
    if s.points <= 1:
        detail += "; the box holds only the centre: give a larger epsilon or a finer grid"
    return [head, detail]


def _curvature_text(c: Curvature) -> list[str]:
    box = ", ".join(f"|{n}| ≤ {r:.4g}" for n, r in zip("xy", c.radius, strict=False))
    r2 = "interpolates: no spare points" if c.r2 is None else f"R² {c.r2:.4f}"
    fit = f"quadratic fit over {c.points} points ({box}), {r2}, RMS residual {c.rms:.3g}"
    scale = max(abs(v) for row in c.hessian for v in row)

    def g(v: float) -> str:  # rounding noise of the fit (|v| ≤ 1e-9 of the largest entry) as 0
        return f"{0.0 if abs(v) <= 1e-9 * scale else v:.4g}"

    if len(c.eigenvalues) == 1:
        return [f"f'' = {c.eigenvalues[0]:.6g}, slope {g(c.gradient[0])}", fit]
    (h11, h12), (_, h22) = c.hessian
    lam = c.eigenvalues
    head = f"eigenvalues {lam[0]:.6g}, {lam[1]:.6g}"
    if lam[1] != 0:
        head += f" (ratio {lam[0] / lam[1]:.3g})"
    hess = f"H = [[{g(h11)}, {g(h12)}], [{g(h12)}, {g(h22)}]]"
    return [head, f"{hess}, gradient ({g(c.gradient[0])}, {g(c.gradient[1])})", fit]


def _bound(value: float, lower: bool) -> str:
    return f"≥ {value:.4g}" if lower else f"{value:.4g}"


def _basin_text(b: Basin) -> list[str]:
    parts = [f"width {_bound(b.width_x, b.width_x_lower_bound)} along x"]
    if b.width_y is not None:
        parts.append(f"{_bound(b.width_y, b.width_y_lower_bound)} along y")
    lines = [f"at {b.threshold:.6g} ({b.rule}): {', '.join(parts)}"]
    if b.diameter is not None:
        lines.append(
            f"area {_bound(b.area or 0.0, b.area_lower_bound)} ({b.points} points), "
            f"area-equivalent diameter {_bound(b.diameter, b.area_lower_bound)}"
        )
    if b.width_x_lower_bound or b.width_y_lower_bound or b.area_lower_bound:
        lines.append(
            "the basin reaches the grid's edge or points not computed: ≥ marks lower bounds"
        )
    return lines


def _minimum_text(m: Minimum) -> list[str]:
    text = f"{m.value:.6g} at {_where(m.at)}, {m.distance:.4g} from the centre"
    if m.below_centre is not None and m.below_centre > 0:
        text += f" ({m.below_centre:.4g} below it)"
    return [text]


def _topology_text(t: Topology) -> list[str]:
    if t.se_known:
        head = f"{t.significant_minima} significant of {t.total_minima} minima"
        lines = [f"basins: {head} (persistence above {t.noise_sigmas:g} s.e.)"]
    else:
        lines = [
            f"basins: {t.total_minima} minima (no standard errors stored: none tested for noise)"
        ]
    deepest = (
        "none (one basin)" if t.largest_persistence is None else f"{t.largest_persistence:.4g}"
    )
    lines.append(
        f"SMAD {t.smad:.4g} (Landscaper; {t.smad_normalized:.3g} of the loss range), "
        f"largest finite persistence {deepest}"
    )
    return lines
