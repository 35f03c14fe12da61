"""Stochastic estimates of trace(H) from Hessian-vector products, with their standard errors.

Hutchinson (1989): for Rademacher vectors z (entries ±1 with probability 1/2), E[zᵀHz] = trace(H),

    t̂ = (1/m) Σ_j z_jᵀ H z_j,        s.e. = std_j(z_jᵀ H z_j) / √m         (m products)

Hutch++ (Meyer, Musco, Musco & Woodruff 2021) spends the same m products in thirds: a sketch
S (n × m/3 Rademacher) and Q = orth(H S) capture the top of the spectrum, whose part of the trace
is computed exactly; Hutchinson estimates only the rest, on vectors projected off Q:

    t̂ = trace(Qᵀ H Q) + (1/g) Σ_j g̃_jᵀ H g̃_j,   g̃_j = (I − QQᵀ) g_j,   s.e. = std_j(g̃_jᵀHg̃_j)/√g

Given Q the first term has no variance, so the s.e. is that of the second; when a few eigenvalues
dominate (a trained network's Hessian) it is far below Hutchinson's for the same m.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

MatVec = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TraceEstimate:
    value: float
    se: float  # standard error of ``value``
    method: str  # "hutchinson" or "hutch++"
    products: int  # Hessian-vector products spent

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def rademacher(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``count`` Rademacher vectors of length n, as the columns of an (n, count) float64 array."""
    return rng.integers(0, 2, size=(n, count)).astype(np.float64) * 2 - 1


def hutchinson(matvec: MatVec, n: int, products: int, rng: np.random.Generator) -> TraceEstimate:
    z = rademacher(rng, n, products)
    samples = np.array([z[:, j] @ matvec(z[:, j]) for j in range(products)])
    return TraceEstimate(float(samples.mean()), _se(samples), "hutchinson", products)


def hutchpp(matvec: MatVec, n: int, products: int, rng: np.random.Generator) -> TraceEstimate:
    sketch = min(products // 3, n)  # rank of Q: more than n columns add nothing
    g = products - 2 * sketch
    s = rademacher(rng, n, sketch)
    hs = np.stack([matvec(s[:, j]) for j in range(sketch)], axis=1)
    q, _ = np.linalg.qr(hs)  # (n, sketch), orthonormal columns spanning H S
    exact = sum(float(q[:, j] @ matvec(q[:, j])) for j in range(sketch))  # trace(QᵀHQ)
    z = rademacher(rng, n, g)
    z -= q @ (q.T @ z)  # (I − QQᵀ) g_j
    samples = np.array([z[:, j] @ matvec(z[:, j]) for j in range(g)])
    return TraceEstimate(exact + float(samples.mean()), _se(samples), "hutch++", products)


def estimate_trace(method: str, matvec: MatVec, n: int, products: int, seed: int) -> TraceEstimate:
    """``hutchinson`` or ``hutch++`` with ``products`` products, Rademacher vectors from ``seed``."""
    rng = np.random.default_rng(seed)
    return (hutchpp if method == "hutch++" else hutchinson)(matvec, n, products, rng)


def _se(samples: np.ndarray) -> float:
    """Standard error of the mean of ``samples``."""
    return float(samples.std(ddof=1) / np.sqrt(len(samples)))
