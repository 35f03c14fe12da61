"""Topology of a loss surface: its basins, how they merge, and which of them the data supports.

Input: the loss on a regular grid of 1 to 5 dimensions (NaN or ±inf where not finite: such points
never enter a sublevel set), the grid's axes, and optionally the standard error of every point's
loss (``loss_se``, stored by ``landscape compute``).

- **Adjacency.** The grid points are the vertices; two points are neighbours when they differ by
  one step along one axis (2·k neighbours in k dimensions, fewer on the edge). Diagonal points
  are not neighbours: this is the lower-star filtration of the cubical complex whose vertices are
  the grid points (an edge enters at the larger of its two end values, a square at the largest of
  its four corners), which is what ``gudhi.CubicalComplex(vertices=...)`` builds, so the two
  computations below see the same sublevel sets.
- **Sublevel-set persistence** (gudhi, an optional dependency: ``pip install
  'landscape[topology]'``): the birth and death of every homology class of ``{f ≤ t}`` as t rises,
  in dimensions 0 .. k−1 (0: basins; 1: loops, e.g. a ring-shaped valley; ...). Pairs of zero
  length are left out (gudhi's default), essential classes die at ``inf``.
- **Merge tree** (our union-find, the same dimension-0 information with where it happens): the
  points are added in increasing order of loss (ties in grid order); a point with no neighbour in
  the set yet starts a basin at its value (a local minimum); a point whose neighbours lie in
  several basins is a saddle that merges them, and by the elder rule every basin but the one with
  the lowest minimum dies there. A minimum's **persistence** is ``saddle − minimum`` (the global
  minimum's is infinite: it never dies); a basin born and merged at the same value (the edge of a
  flat plateau) has persistence 0 and is not a minimum. Its **basin size** is the number of grid
  points in its component just before the saddle (points that merged into it from shallower
  basins included; the global minimum's: every finite point it connects to). Each minimum also
  names the minimum whose basin absorbs it (``merges_into``): this is the tree's branch
  decomposition, the parent always at least as persistent as the child. The multiset of
  (minimum, saddle) values equals gudhi's dimension-0 pairs (tested).
- **SMAD**, the saddle–minimum average distance of Landscaper (Chen, Hadler et al., "Landscaper:
  Understanding Loss Landscapes Through Multi-Dimensional Topological Analysis", LBNL 2026,
  arXiv:2602.07135; code: ``Vis4SciML/Landscaper``, ``LossLandscape.smad`` with
  ``tda.saddle_minima_pairs``): the mean, over the edges of the sublevel merge tree that join a
  minimum (a leaf) to a saddle (a branching node), of ``|f(saddle) − f(minimum)|``. In a merge
  tree a leaf's edge ends at the first saddle where its basin meets another one, so every minimum,
  the global one included, contributes ``f(first saddle) − f(minimum)``, which is its persistence
  when it dies at that first merge and less when it absorbs a shallower basin there first. A
  surface with one minimum has no branching: SMAD = 0, as in Landscaper. ``smad_normalized``
  divides each gap by the loss range (max − min), Landscaper's ``normalize=True``. Landscaper
  builds its tree with topopy on an empty-region graph of the points; on a regular grid we use
  the 2·k axis neighbours above, and our SMAD equals Landscaper 1.3.1's own (topopy 1.0.4, to
  its float32 precision) on the shared grids of ``tests/test_topology.py``.
- **Noise.** A minimum is **noise** when its persistence is within ``NOISE_SIGMAS`` (2) standard
  errors of zero: ``persistence ≤ 2·sqrt(se_min² + se_saddle²)``, the standard error of the
  difference ``f(saddle) − f(minimum)`` of two independent means (the s.e. at the minimum and at
  the saddle where it dies). The global minimum (infinite persistence) is always significant.
  Without standard errors every minimum counts (``se_known`` False).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from landscape.errors import ConfigError, LandscapeError

NOISE_SIGMAS = 2.0  # a minimum within this many standard errors of its saddle is noise
MAX_DIMS = 5
MAX_LISTED = 50  # minima listed in the result (the most persistent); the counts cover all
MAX_PAIRS = 100  # persistence pairs listed per homology dimension (the longest)
INSTALL_HINT = "pip install 'landscape[topology]'"


class MissingExtraError(LandscapeError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def gudhi_available() -> bool:
    """Whether gudhi can be imported (the ``topology`` extra)."""
    try:
        import gudhi  # noqa: F401
    except ImportError:
        return False
    return True


def require_gudhi() -> Any:
    """The gudhi module; MissingExtraError, saying how to install it, when it is not there."""
    try:
        import gudhi
    except ImportError:
        raise MissingExtraError(f"the topology of a surface needs gudhi: {INSTALL_HINT}") from None
    return gudhi


@dataclass(frozen=True)
class BasinMinimum:
    """One local minimum of the grid and the basin it owns until its saddle."""

    id: int  # rank by value: 0 is the global minimum
    value: float
    at: tuple[float, ...]  # coordinates
    index: tuple[int, ...]  # grid index
    persistence: float  # saddle − value; inf for a minimum that never merges
    saddle_value: float | None  # None: never merges
    saddle_at: tuple[float, ...] | None
    merges_into: int | None  # the id of the minimum whose basin absorbs this one
    basin_points: int  # grid points in its component just before the saddle
    se: float | None  # the loss' standard error at the minimum
    noise: float | None  # 2·sqrt(se_min² + se_saddle²); None without s.e. or saddle
    significant: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BasinMinimum:
        """From ``to_dict``'s JSON (tuples as lists, an infinite persistence as null)."""
        kw = {f.name: d[f.name] for f in fields(cls)}
        for name in ("at", "index", "saddle_at"):
            kw[name] = None if kw[name] is None else tuple(kw[name])
        if kw["persistence"] is None:
            kw["persistence"] = math.inf
        return cls(**kw)


@dataclass(frozen=True)
class Topology:
    """The topology of one loss on a grid (see the module's docstring for every definition)."""

    dims: int
    points: int  # finite grid points
    total_minima: int
    significant_minima: int  # minima whose persistence exceeds the noise (all without s.e.)
    se_known: bool
    noise_sigmas: float
    smad: float  # Landscaper's saddle–minimum average distance
    smad_normalized: float  # the same, each gap divided by the loss range
    largest_persistence: float | None  # the most persistent minimum after the essential ones
    minima: tuple[BasinMinimum, ...]  # the MAX_LISTED most persistent, by id
    diagram: tuple[tuple[int, float, float], ...]  # gudhi's (dimension, birth, death) pairs
    diagram_counts: tuple[int, ...]  # pairs per dimension 0 .. k−1 (before the listing cap)
    adjacency: str = "2k axis neighbours"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Topology:
        """From ``to_dict``'s JSON: infinities, stored as null, come back as ``inf``."""
        kw = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        kw["minima"] = tuple(BasinMinimum.from_dict(m) for m in d["minima"])
        kw["diagram"] = tuple(
            (int(k), float(b), math.inf if e is None else float(e)) for k, b, e in d["diagram"]
        )
        kw["diagram_counts"] = tuple(int(n) for n in d["diagram_counts"])
        return cls(**kw)

    def significant(self) -> list[BasinMinimum]:
        """The listed minima the data supports, deepest first."""
        return [m for m in self.minima if m.significant]


# --- input -------------------------------------------------------------------------------------


def _check(
    values: Any, axes: list[Any] | None, se: Any | None
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    f = np.asarray(values, dtype=np.float64)
    if not 1 <= f.ndim <= MAX_DIMS or f.size == 0:
        raise ConfigError(
            f"topology takes a loss grid of 1 to {MAX_DIMS} dimensions, not shape {f.shape}"
        )
    if axes is None:
        axes = [np.arange(n, dtype=np.float64) for n in f.shape]
    axes = [np.asarray(a, dtype=np.float64).ravel() for a in axes]
    if tuple(a.size for a in axes) != f.shape:
        sizes = tuple(a.size for a in axes)
        raise ConfigError(f"the axes have {sizes} points but the loss grid is {f.shape}")
    if se is not None:
        se = np.asarray(se, dtype=np.float64)
        if se.shape != f.shape:
            raise ConfigError(f"the standard errors are {se.shape}, the loss grid {f.shape}")
        se = np.where(np.isfinite(se), np.abs(se), 0.0)  # an unknown s.e. tests nothing
    return f, axes, se


def grid_neighbours(shape: tuple[int, ...]) -> np.ndarray:
    """``(N, 2k)`` flat indices of each point's neighbours one step along each axis; −1 off the
    grid. Column ``2a`` is the step back along axis ``a``, ``2a + 1`` the step forward."""
    index = np.arange(math.prod(shape)).reshape(shape)
    columns = []
    for axis in range(len(shape)):
        back = np.full(shape, -1, dtype=np.int64)
        forward = np.full(shape, -1, dtype=np.int64)
        upper = [slice(None)] * len(shape)
        lower = [slice(None)] * len(shape)
        upper[axis], lower[axis] = slice(1, None), slice(None, -1)
        back[tuple(upper)] = index[tuple(lower)]  # point i's neighbour i − 1
        forward[tuple(lower)] = index[tuple(upper)]  # point i's neighbour i + 1
        columns += [back.ravel(), forward.ravel()]
    return np.stack(columns, axis=1)


# --- the merge tree ----------------------------------------------------------------------------


@dataclass
class _Sweep:
    """The union-find's state while points enter the sublevel set in increasing order."""

    parent: list[int]  # −1: not in the set yet
    minimum: dict[int, int]  # root → the vertex of its component's minimum
    size: dict[int, int]  # root → points in its component
    leaf: dict[int, bool]  # root → it has not yet met another basin (its tree edge is open)
    deaths: dict[int, tuple[int, int, int]]  # minimum vertex → (saddle vertex, size, elder's)
    gaps: list[float]  # SMAD's saddle − minimum of every leaf edge

    def find(self, v: int) -> int:
        p = self.parent
        while p[v] != v:
            p[v] = p[p[v]]  # path halving
            v = p[v]
        return v


def _sweep(flat: np.ndarray) -> tuple[_Sweep, np.ndarray]:
    """Add the finite points in increasing order (stable: ties in grid order), merging basins."""
    shape = flat.shape
    f = flat.ravel()
    finite = np.isfinite(f)
    order = np.argsort(np.where(finite, f, np.inf), kind="stable")[: int(finite.sum())]
    rank = np.full(f.size, f.size, dtype=np.int64)  # position in the order (finite points)
    rank[order] = np.arange(order.size)
    nbrs = grid_neighbours(shape).tolist()
    s = _Sweep([-1] * f.size, {}, {}, {}, {}, [])
    values = f.tolist()
    for v in order.tolist():
        roots = {s.find(u) for u in nbrs[v] if u >= 0 and s.parent[u] >= 0}
        if not roots:  # a new basin: v is a local minimum
            s.parent[v] = v
            s.minimum[v], s.size[v], s.leaf[v] = v, 1, True
            continue
        elder = min(roots, key=lambda r: rank[s.minimum[r]])  # the lowest minimum survives
        if len(roots) > 1:
            _merge(s, v, values, roots, elder)
        s.parent[v] = elder
        s.size[elder] += 1
    return s, rank


def _merge(s: _Sweep, v: int, values: list[float], roots: set[int], elder: int) -> None:
    """Point ``v`` joins the basins of ``roots`` into ``elder``'s: every other one dies at v.

    A basin whose minimum has v's own value (a flat plateau's edge) has persistence 0: it is
    merged without a death and without making v a branching node of the tree."""
    h = values[v]
    real = [r for r in roots if values[s.minimum[r]] < h]
    if len(real) >= 2:  # a saddle: a branching of the merge tree
        for r in real:
            if s.leaf[r]:  # the minimum's leaf edge ends here (Landscaper's saddle–minimum pair)
                s.gaps.append(h - values[s.minimum[r]])
        s.leaf[elder] = False
    for r in roots:
        if r == elder:
            continue
        if r in real:
            s.deaths[s.minimum[r]] = (v, s.size[r], s.minimum[elder])
        s.parent[r] = elder
        s.size[elder] += s.size.pop(r)
        del s.minimum[r], s.leaf[r]


@dataclass(frozen=True)
class MergeTree:
    """Every minimum of the grid (by id: increasing value) and Landscaper's SMAD."""

    minima: tuple[BasinMinimum, ...]
    smad: float
    smad_normalized: float


def merge_tree(
    values: Any,
    axes: list[Any] | None = None,
    se: Any | None = None,
    *,
    sigmas: float = NOISE_SIGMAS,
) -> MergeTree:
    """The merge tree of the basins of ``values`` (a 1-D to 5-D grid), by union-find over the
    grid points in increasing order; ``axes`` give the coordinates (default: the indices), ``se``
    the standard error of each point (for the noise test). Needs numpy only."""
    f, axes, se = _check(values, axes, se)
    s, rank = _sweep(f)
    flat = f.ravel()
    ends = {s.minimum[r]: (None, s.size[r], None) for r in s.minimum}  # never merge
    born = sorted([*s.deaths, *ends], key=lambda m: rank[m])
    ids = {m: k for k, m in enumerate(born)}
    minima = []
    for m in born:
        saddle, size, into = s.deaths.get(m) or ends[m]
        minima.append(_minimum(ids[m], m, saddle, size, None if into is None else ids[into],
                               f, axes, se, sigmas))  # fmt: skip
    finite = flat[np.isfinite(flat)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    smad = float(np.mean(s.gaps)) if s.gaps else 0.0
    return MergeTree(tuple(minima), smad, smad / spread if spread > 0 else 0.0)


def _minimum(
    id_: int,
    vertex: int,
    saddle: int | None,
    size: int,
    into: int | None,
    f: np.ndarray,
    axes: list[np.ndarray],
    se: np.ndarray | None,
    sigmas: float,
) -> BasinMinimum:
    """One minimum's record; its noise level is ``sigmas·sqrt(se_min² + se_saddle²)``."""
    flat = f.ravel()
    index = np.unravel_index(vertex, f.shape)
    value = float(flat[vertex])
    at = tuple(float(a[i]) for a, i in zip(axes, index, strict=True))
    saddle_value = saddle_at = noise = se_min = None
    persistence = math.inf
    if saddle is not None:
        saddle_value = float(flat[saddle])
        persistence = saddle_value - value
        s_index = np.unravel_index(saddle, f.shape)
        saddle_at = tuple(float(a[i]) for a, i in zip(axes, s_index, strict=True))
    if se is not None:
        se_min = float(se.ravel()[vertex])
        if saddle is not None:  # the s.e. of f(saddle) − f(min), two independent means
            noise = sigmas * math.hypot(se_min, float(se.ravel()[saddle]))
    return BasinMinimum(
        id=id_,
        value=value,
        at=at,
        index=tuple(int(i) for i in index),
        persistence=persistence,
        saddle_value=saddle_value,
        saddle_at=saddle_at,
        merges_into=into,
        basin_points=int(size),
        se=se_min,
        noise=noise,
        significant=noise is None or persistence > noise,
    )


# --- gudhi's persistence -----------------------------------------------------------------------


def persistence_pairs(values: Any) -> list[tuple[int, float, float]]:
    """gudhi's sublevel-set persistence of the grid's lower-star cubical complex: ``(dimension,
    birth, death)`` for every pair of positive length, death ``inf`` for an essential class.

    Points that are not finite are given a value above every finite one and the classes born
    there dropped; a class that only dies there never dies in the finite sublevel sets (inf).
    """
    gudhi = require_gudhi()
    f = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(f)
    if not finite.any():
        return []
    top = float(f[finite].max())
    top += 1.0 + abs(top)
    try:
        cc = gudhi.CubicalComplex(vertices=np.where(finite, f, top))
    except TypeError:  # gudhi before 3.8 builds cubical complexes from top cells only
        raise MissingExtraError(
            f"gudhi {getattr(gudhi, '__version__', '?')} is too old for vertex-valued cubical "
            f"complexes (3.8 or later): {INSTALL_HINT}"
        ) from None
    pairs = []
    for dim, (birth, death) in cc.persistence():
        if birth >= top:
            continue
        pairs.append((int(dim), float(birth), math.inf if death >= top else float(death)))
    pairs.sort(key=lambda p: (p[0], -(p[2] - p[1]), p[1]))
    return pairs


# --- the summary -------------------------------------------------------------------------------


def grid_topology(
    values: Any,
    axes: list[Any] | None = None,
    se: Any | None = None,
    *,
    sigmas: float = NOISE_SIGMAS,
) -> Topology:
    """The topology of a loss grid (1 to 5 dimensions): gudhi's persistence pairs, the merge tree
    of its basins, SMAD, and which minima stand above the noise of ``se`` (module docstring).
    Raises MissingExtraError without gudhi, ConfigError for a grid it cannot take."""
    f, axes, se = _check(values, axes, se)
    pairs = persistence_pairs(f)
    tree = merge_tree(f, axes, se, sigmas=sigmas)
    ranked = sorted(tree.minima, key=lambda m: (-m.persistence, m.id))
    keep = {m.id for m in ranked[:MAX_LISTED]}
    parents = {m.id: m.merges_into for m in tree.minima}
    for m in list(keep):  # a listed minimum's parents are listed too, so the tree stays whole
        while parents[m] is not None and parents[m] not in keep:
            keep.add(parents[m])
            m = parents[m]
    finite = [m.persistence for m in ranked if math.isfinite(m.persistence)]
    counts = [sum(p[0] == k for p in pairs) for k in range(f.ndim)]
    listed = [p for k in range(f.ndim) for p in [q for q in pairs if q[0] == k][:MAX_PAIRS]]
    return Topology(
        dims=f.ndim,
        points=int(np.isfinite(f).sum()),
        total_minima=len(tree.minima),
        significant_minima=sum(m.significant for m in tree.minima),
        se_known=se is not None,
        noise_sigmas=float(sigmas),
        smad=tree.smad,
        smad_normalized=tree.smad_normalized,
        largest_persistence=max(finite) if finite else None,
        minima=tuple(m for m in tree.minima if m.id in keep),
        diagram=tuple(listed),
        diagram_counts=tuple(counts),
    )
