"""A surface's values in memory: what ``store.read_surface`` builds and every reader (plot,
analysis, info) takes. ``landscape.surface.Surface`` adds the views users call on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class OnGrid:
    """What a value map over the axes ``x`` and ``y`` (None in 1-D), and on an n-D grid the
    axes ``beyond`` them (z, ...), knows of its grid."""

    x: np.ndarray
    y: np.ndarray | None
    beyond: tuple[np.ndarray, ...] = ()

    @property
    def axes(self) -> tuple[np.ndarray, ...]:
        """Every axis' coordinates, x first: ``(x,)``, ``(x, y)`` or ``(x, y, z, ...)``."""
        return (self.x,) if self.y is None else (self.x, self.y, *self.beyond)

    @property
    def dims(self) -> int:
        return len(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)


@dataclass
class Repeat:
    """One more surface on the same grid, along directions drawn with another seed (--repeat)."""

    seed: int
    values: dict[str, np.ndarray]  # the same quantities as the surface's own values
    done: np.ndarray
    direction_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SurfaceValues(OnGrid):
    """A loss surface over a 1-D or 2-D grid, in our orientation.

    ``values[q][i]`` (1-D) or ``values[q][i, j]`` (2-D) is quantity ``q`` at ``(x[i], y[j])``.
    Losses are means over samples; accuracies are fractions in [0, 1]; NaN where not computed
    (``done`` is False there) or where the loss itself was NaN (``done`` is True there).
    """

    path: str
    x: np.ndarray
    y: np.ndarray | None
    values: dict[str, np.ndarray]  # e.g. {"train_loss": ..., "train_acc": ...}
    done: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)  # provenance (config, versions, ...)
    direction_attrs: dict[str, Any] = field(default_factory=dict)
    source_format: str = "landscape"  # or "li2018" for Li et al.'s reference files
    notes: list[str] = field(default_factory=list)  # conversions applied on read
    trajectory: dict[str, np.ndarray] | None = None  # projected training path: x, y, labels, loss
    landmarks: dict[str, np.ndarray] | None = None  # named points on the plane: names, x, y
    stored_analysis: dict[str, Any] = field(default_factory=dict)  # by quantity, /analysis
    # repeats 1..R-1 of a --repeat R file (the surface itself is repeat 0); empty otherwise
    repeats: list[Repeat] = field(default_factory=list)
    # the file itself when it lives in memory (the Python API without ``out=``); ``path`` then
    # only names it
    image: Any = None
    # the whole grid's shape when this is the computed sub-lattice of a partial file (plots)
    partial_of: tuple[int, ...] | None = None
    beyond: tuple[np.ndarray, ...] = ()  # axes 3..k of an n-D grid (z, ...); empty in 1-D/2-D

    def computed_view(self) -> SurfaceValues:
        """A partial file as far as it is drawable: the finest coarse-to-fine sub-lattice whose
        points are all done (``grid.complete_lattice``: 3×3, 5×5, 9×9, ...), as a surface over
        the same plane; the surface itself when it is complete, holds repeats, or no such
        lattice is done (a file computed in another order keeps its holes)."""
        from dataclasses import replace

        from landscape.grid import complete_lattice

        if self.done.all() or self.repeats or not self.done.any():
            return self
        picks = complete_lattice(self.done)
        if picks is None or min(len(p) for p in picks) < min(3, *self.done.shape):
            return self
        grid = np.ix_(*picks)
        note = (
            f"partial: drawn from the {' x '.join(str(len(p)) for p in picks)} sub-lattice of the "
            f"{int(self.done.sum())} of {self.done.size} points computed so far"
        )
        return replace(
            self,
            x=self.x[picks[0]],
            y=None if self.y is None else self.y[picks[1]],
            beyond=tuple(a[p] for a, p in zip(self.beyond, picks[2:], strict=True)),
            values={q: np.asarray(v)[grid] for q, v in self.values.items()},
            done=self.done[grid],
            notes=[*self.notes, note],
            partial_of=tuple(self.done.shape),
        )

    @property
    def repeat_count(self) -> int:
        """R: how many surfaces along directions of different seeds the file holds."""
        return 1 + len(self.repeats)

    def stacked(self, quantity: str) -> np.ndarray:
        """``quantity`` of every repeat, shape ``(R, *grid)``; NaN where a repeat is not done."""
        return np.stack(
            [
                np.where(done, np.asarray(values[quantity], dtype=float), np.nan)
                for values, done in [(self.values, self.done)]
                + [(r.values, r.done) for r in self.repeats]
            ]
        )

    def repeat_mean_std(self, quantity: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread over the repeats at each point; NaN where a repeat is not done (or
        its value is NaN).

        The spread is the sample standard deviation, ``sqrt(Σ_r (v_r - mean)² / (R - 1))``.
        """
        stack = self.stacked(quantity)
        if len(stack) < 2:
            raise ValueError("a surface without repeats has no spread")
        return stack.mean(axis=0), stack.std(axis=0, ddof=1)

    # --- the Python API's view: numpy values, the directions, save (plot, analysis: Surface) ---

    @property
    def loss(self) -> np.ndarray:
        """The loss at every point, shape ``(nx,)``, ``(nx, ny)`` or ``(nx, ny, nz, ...)`` (NaN
        where not computed)."""
        return self._first("loss")

    @property
    def acc(self) -> np.ndarray:
        """The accuracy (a fraction) at every point, shaped like ``loss``."""
        return self._first("acc")

    def _first(self, kind: str) -> np.ndarray:
        names = self.quantities(kind)
        if not names:
            raise KeyError(f"{self.path} holds no {kind} values")
        return np.asarray(self.values[names[0]], dtype=float)

    @property
    def directions(self) -> list[dict[str, Any]]:
        """``[d1]``, ``[d1, d2]`` or ``[d1, ..., dk]``: each a dict parameter name → tensor, read
        from the file
        (empty for Li et al.'s surface files, which keep their directions elsewhere)."""
        if self.source_format != "landscape":
            return []
        from landscape.store import read_directions

        return read_directions(self.file)

    @property
    def file(self) -> Any:
        """What reads this surface's file again: its ``MemoryFile`` (kept in memory), or its path."""
        return self.image if self.image is not None else self.path

    def save(self, path: str) -> str:
        """Write this surface's file to ``path`` (the same file ``landscape compute`` writes;
        ``landscape info`` and ``plot`` read it). Returns the path."""
        from pathlib import Path

        from landscape._files import check_output, write_bytes_atomically

        out = check_output(path, "path")
        if self.image is not None:  # kept in memory: its bytes are the file
            write_bytes_atomically(out, self.image.getvalue())
            return str(out)
        if out.exists() and out.resolve() == Path(self.path).resolve():
            return str(out)
        write_bytes_atomically(out, Path(self.path).read_bytes())
        return str(out)

    def quantities(self, kind: str) -> list[str]:
        """Names of stored quantities of one kind (``loss``, ``acc`` or ``se``), e.g. ``train_loss``."""
        from landscape.quantities import kind_of

        return [q for q in self.values if kind_of(q) == kind]

    @property
    def label(self) -> str:
        """A short title for plots: the direction method and the file name."""
        from pathlib import Path

        method = self.direction_attrs.get("method") or self.attrs.get("direction") or "surface"
        return f"{Path(self.path).name} ({method})"
