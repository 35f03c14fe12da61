"""Grid axes and point indexing. Points are numbered row-major over the k axes: flat point
``p`` ↔ ``(i_1, ..., i_k) = np.unravel_index(p, shape)`` (in 2-D, ``(i, j) = divmod(p, ny)``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from landscape.config import MAX_AXES, Axis, GridSpec, parse_axis
from landscape.errors import ConfigError

# what a run holds in memory per grid point: float64 loss and accuracy and a bool flag, each in
# the new file's arrays and in its in-memory image, plus the pending list (int64) and reads back
BYTES_PER_POINT = 64


@dataclass(frozen=True)
class Grid:
    """The points a run evaluates: one ``Axis`` (``num`` values from ``lo`` to ``hi``) per
    direction, any number of them; point ``k`` is the ``k``-th of the axes' product in row-major
    order (``np.unravel_index(k, shape)``), 1 to ``MAX_AXES`` axes (surface files of k ≥ 3
    axes are schema version 2)."""

    axes: tuple[Axis, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.axes) <= MAX_AXES:
            raise ConfigError(
                f"a grid has 1 to {MAX_AXES} axes (one per direction), got {len(self.axes)}; "
                "drop some"
            )

    @classmethod
    def of(cls, spec: GridSpec) -> Grid:
        """The grid a config's ``MIN:MAX:NUM`` axes name (``x``, ``y``, ``z`` or ``axes``)."""
        return cls(tuple(parse_axis(text, key) for text, key in spec.ranges()))

    @property
    def dims(self) -> int:
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.num for a in self.axes)

    @property
    def points(self) -> int:
        return int(np.prod(self.shape))

    def coordinates(self) -> list[np.ndarray]:
        """Each axis' values: ``linspace(lo, hi, num)``."""
        return [np.linspace(a.lo, a.hi, a.num) for a in self.axes]

    def xy(self, repeats: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
        """The x (and y) coordinates of a 1-D or 2-D grid, once its values (``repeats``
        surfaces of it) are known to fit in memory."""
        if self.dims > 2:
            raise ConfigError(
                f"surface files hold 1-D and 2-D grids; this one has {self.dims} axes"
            )
        axes = self.values(repeats)
        return axes[0], (axes[1] if self.dims == 2 else None)

    def values(self, repeats: int = 1) -> tuple[np.ndarray, ...]:
        """Every axis' coordinates, once the grid's values (``repeats`` surfaces of it) are
        known to fit in memory."""
        check_fits(self.shape, repeats)
        return tuple(self.coordinates())

    def spec(self) -> GridSpec:
        """The config's text of this grid (its provenance in a surface file): ``x``, ``y``,
        ``z`` for up to 3 axes, ``axes`` for more."""
        texts = [f"{a.lo!r}:{a.hi!r}:{a.num}" for a in self.axes]
        if len(texts) > 3:
            return GridSpec(axes=texts)
        return GridSpec(*texts)


def coordinates(spec: GridSpec, repeats: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """The x (and y) coordinates of a 1-D or 2-D grid spec: ``linspace(MIN, MAX, NUM)`` per
    axis (``Grid.of(spec).values()`` for any number of axes).

    A grid whose values (``repeats`` surfaces of it) cannot fit in this machine's memory is
    refused before anything is allocated.
    """
    return Grid.of(spec).xy(repeats)


def check_fits(shape: tuple[int, ...], repeats: int = 1) -> None:
    """ConfigError when the grid's values would not fit in the memory available now."""
    points = int(np.prod(shape, dtype=object)) * repeats  # exact: no int64 overflow
    need = points * BYTES_PER_POINT
    have = available_memory()
    if have is None or need <= have:
        return
    shape_text = " × ".join(str(n) for n in shape)
    times = f", {repeats} repeats" if repeats > 1 else ""
    raise ConfigError(
        f"the grid ({shape_text}{times}) has {points:,} points; holding their values takes about "
        f"{_bytes(need)} of memory, more than the {_bytes(have)} available; use fewer points "
        "(NUM in --x MIN:MAX:NUM, --y, --z or --axes)"
    )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def point_coords(flat: int, *axes: np.ndarray | None) -> tuple[float, ...]:
    """The direction coefficients ``(c_1, ..., c_k)`` of flat point index ``flat`` on the grid
    of the axes' coordinates (a ``None`` axis, a 1-D grid's y, is no axis)."""
    coords = [a for a in axes if a is not None]
    index = np.unravel_index(int(flat), tuple(len(a) for a in coords))
    return tuple(float(a[i]) for a, i in zip(coords, index, strict=True))


def split_pending(pending: np.ndarray, parts: int) -> list[np.ndarray]:
    """Deal pending points round-robin into ``parts`` shares (neighbouring points spread out)."""
    return [pending[r::parts] for r in range(parts)]


# --- coarse-to-fine order ---------------------------------------------------------------------
# Level ℓ of an axis of n points is the sub-lattice round(k·(n−1) / 2^(ℓ+1)), k = 0..2^(ℓ+1):
# 3 points (both ends and the middle), then 5, 9, 17, ... until every index is in. A grid point's
# level is the largest of its axes' levels; points are computed level by level, so every prefix
# of a run covers the whole grid (3×3(×3...), then 5×5, 9×9, ...) and a long run shows its picture
# early.


def axis_levels(n: int) -> np.ndarray:
    """The level of every index of an axis of ``n`` points (0 for the ends and the middle)."""
    levels = np.full(n, -1, dtype=np.int64)
    level = 0
    while (levels < 0).any():
        steps = 2 ** (level + 1)
        members = np.unique(np.round(np.arange(steps + 1) * (n - 1) / steps).astype(np.int64))
        fresh = members[levels[members] < 0]
        levels[fresh] = level
        level += 1
    return levels


def point_levels(shape: tuple[int, ...]) -> np.ndarray:
    """Each grid point's level, flat in row-major order."""
    levels = axis_levels(shape[0])
    for n in shape[1:]:  # max over the axes, row-major: max.outer grows one axis at a time
        levels = np.maximum.outer(levels, axis_levels(n))
    return levels.reshape(-1)


def coarse_to_fine(indices: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``indices`` (flat over repeats, ``r·P + k``) in coarse-to-fine order: by level, then
    repeat, then position; a stable reordering, so the same pending set always gives one order."""
    points = int(np.prod(shape))
    levels = point_levels(shape)
    idx = np.asarray(indices, dtype=np.int64)
    return idx[np.lexsort((idx % points, idx // points, levels[idx % points]))]


def complete_lattice(done: np.ndarray) -> list[np.ndarray] | None:
    """Per axis, the indices of the finest level whose sub-lattice is all done (at least 3 points
    an axis where the axis has them); None when not even the coarsest one is."""
    shape = done.shape
    per_axis = [axis_levels(n) for n in shape]
    best = None
    for level in range(int(max(a.max() for a in per_axis)) + 1):
        picks = [np.flatnonzero(a <= level) for a in per_axis]
        if not done[np.ix_(*picks)].all():
            break
        best = picks
    return best
