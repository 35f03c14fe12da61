"""The loss barrier of a path between two networks (issue 25 item 2).

On a 1-D path surface (``interpolate``: θ(t) = A + t·(B − A), a = t, A at t = 0 and B at t = 1;
a connecting curve's family likewise) the barrier is the largest rise of the loss above the
straight line between its two ends (Frankle et al. 2020; Entezari et al. 2022)::

    g(t) = L(θ(t)) − [(1 − t)·L(A) + t·L(B)]          over the grid points with 0 ≤ t ≤ 1
    barrier = max_t g(t),   t* = argmax_t g(t)

and the same for the error, 1 − accuracy. g(0) = g(1) = 0, so the barrier is never negative.
Points beyond [0, 1] (a grid such as ``--x=-0.5:1.5:41``) are drawn but do not count.

Standard error. Each point's mean loss has its standard error s(t) (``<split>_loss_se``); the
error rate's is the binomial one, sqrt(e(1 − e)/n). The barrier at t* is the combination
``L(t*) − (1 − t*)·L(A) − t*·L(B)`` of three of them. They are computed on the same samples, so
they are not independent: their correlation is unknown (usually positive). Whatever it is,

    se ≤ s(t*) + (1 − t*)·s(A) + t*·s(B)                   (the triangle inequality: ``se``)

which is what we report; ``se_independent`` = sqrt(s(t*)² + (1 − t*)²·s(A)² + t*²·s(B)²) is the
value were the three independent. Neither counts the noise in choosing t* itself.

Nothing here touches torch: it reads the values a surface file holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from landscape import quantities
from landscape.store.values import SurfaceValues

# the families whose 1-D surfaces are paths from A (a = 0) to B (a = 1): their barrier is taken
PATH_FAMILIES: tuple[str, ...] = ("interpolate", "curve")
END_TOL = 1e-9  # a grid point within END_TOL · (grid step) of 0 or 1 is that end


@dataclass(frozen=True)
class Rise:
    """The largest rise of one quantity above the chord between the path's ends."""

    value: float  # max_t g(t)
    t: float  # t*, where it is reached
    at_t: float  # the quantity at t*
    start: float  # at A (t = 0)
    end: float  # at B (t = 1)
    se: float | None  # conservative: s(t*) + (1 − t*)·s(A) + t*·s(B); None without errors
    se_independent: float | None  # sqrt of the squares' weighted sum, as if independent
    points: int = 0  # computed grid points with 0 ≤ t ≤ 1


@dataclass(frozen=True)
class Barrier:
    """The loss barrier (``value ± se at t``) and, where accuracies are stored, the error
    barrier (``error ± error_se at error_t``) of one split's path."""

    value: float
    se: float | None
    t: float
    se_independent: float | None
    at_t: float
    start: float
    end: float
    points: int  # grid points with 0 ≤ t ≤ 1
    error: float | None = None
    error_se: float | None = None
    error_t: float | None = None


def is_path(surface: SurfaceValues) -> bool:
    """A 1-D surface of a path family (its a = 0 is A, its a = 1 is B)."""
    return surface.dims == 1 and surface.direction_attrs.get("method") in PATH_FAMILIES


def rise(t: np.ndarray, f: np.ndarray, se: np.ndarray | None = None) -> Rise | str:
    """The largest rise of ``f`` above the chord from t = 0 to t = 1 (module docstring), or why
    there is none: an end not on the grid or not computed, no point between them."""
    t, f = np.asarray(t, dtype=np.float64), np.asarray(f, dtype=np.float64)
    step = float(np.min(np.abs(np.diff(t)))) if t.size > 1 else 1.0
    ends = [int(np.argmin(np.abs(t - e))) for e in (0.0, 1.0)]
    for name, k, e in zip(("A (t=0)", "B (t=1)"), ends, (0.0, 1.0), strict=True):
        if abs(t[k] - e) > END_TOL * max(step, 1e-300):
            return f"the grid has no point at {name}: give an --x range with 0 and 1 on it"
        if not math.isfinite(f[k]):
            return f"the point at {name} is not computed (or not finite)"
    inside = (t >= -END_TOL * step) & (t <= 1 + END_TOL * step) & np.isfinite(f)
    tt = np.clip(t[inside], 0.0, 1.0)
    fa, fb = float(f[ends[0]]), float(f[ends[1]])
    g = f[inside] - ((1.0 - tt) * fa + tt * fb)  # the rise above the chord
    k = int(np.argmax(g))
    ts = float(tt[k])
    cons = ind = None
    if se is not None:
        s = np.asarray(se, dtype=np.float64)
        s_t, s_a, s_b = float(s[inside][k]), float(s[ends[0]]), float(s[ends[1]])
        weights = (1.0, 1.0 - ts, ts)
        parts = [w * v for w, v in zip(weights, (s_t, s_a, s_b), strict=True)]
        if all(math.isfinite(p) for p in parts):
            cons, ind = sum(parts), math.sqrt(sum(p * p for p in parts))
    return Rise(float(g[k]), ts, float(f[inside][k]), fa, fb, cons, ind, int(inside.sum()))


def error_rise(t: np.ndarray, acc: np.ndarray, samples: int | None) -> Rise | str:
    """The rise of the error rate 1 − acc, each point's s.e. the binomial sqrt(e(1 − e)/n)."""
    e = 1.0 - np.asarray(acc, dtype=np.float64)
    se = np.sqrt(np.clip(e * (1.0 - e), 0.0, None) / samples) if samples else None
    return rise(t, e, se)


def evaluation_samples(surface: SurfaceValues) -> int | None:
    """The evaluation set's size from the file's data record (for the error's binomial s.e.)."""
    record = surface.attrs.get("data")
    try:
        n = (json.loads(record) if isinstance(record, str) else record or {}).get("n")
    except (ValueError, AttributeError):
        return None
    return int(n) if isinstance(n, int) and n > 0 else None


def path_barrier(surface: SurfaceValues, quantity: str) -> tuple[Barrier | None, str]:
    """The barrier of loss ``quantity`` (``train_loss``, ...) along a path surface, and of its
    split's error where accuracies are stored (binomial s.e. over the file's evaluation set);
    None and the reason where it has none."""
    if not is_path(surface):
        method = surface.direction_attrs.get("method", "?")
        return None, (
            f"for 1-D paths between two networks ({', '.join(PATH_FAMILIES)}); this is a "
            f"{surface.dims}-D {method} surface"
        )
    t = np.asarray(surface.x, dtype=np.float64)
    bar = quantities.error_of(quantity)
    se = surface.values.get(bar) if bar else None
    found = rise(t, surface.values[quantity], se)
    if isinstance(found, str):
        return None, found
    extra: dict[str, float | None] = {}
    split = quantity.removesuffix("_loss")
    acc = surface.values.get(f"{split}_acc")
    if acc is not None and np.isfinite(acc).any():
        err = error_rise(t, acc, evaluation_samples(surface))
        if not isinstance(err, str):
            extra = {"error": err.value, "error_se": err.se, "error_t": err.t}
    return Barrier(
        found.value, found.se, found.t, found.se_independent, found.at_t, found.start,
        found.end, found.points, **extra,
    ), ""  # fmt: skip


def barrier_text(b: Barrier) -> list[str]:
    """``info``'s lines: ``0.39 ± 0.01 at t=0.5`` for the loss, and the error's."""
    lines = [f"{_pm(b.value, b.se)} at t={b.t:.4g} (L(t)={b.at_t:.6g}, A {b.start:.6g}, "
             f"B {b.end:.6g}; {b.points} points on [0, 1])"]  # fmt: skip
    if b.error is not None and b.error_t is not None:
        lines.append(f"error barrier {_pm(b.error, b.error_se)} at t={b.error_t:.4g}")
    if b.se is not None:
        lines.append("± 1 s.e., the conservative sum of the three points' (same samples)")
    return lines


def _pm(value: float, se: float | None) -> str:
    return f"{value:.4g}" if se is None else f"{value:.4g} ± {se:.2g}"
