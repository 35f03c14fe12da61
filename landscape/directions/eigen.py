"""The k largest and smallest eigenpairs of H, from Hessian-vector products: what the hessian
direction family (``--which``) and the spectrum (``landscape hessian``) both ask for.

``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ARPACK) on a float64
``LinearOperator``, started from ``v0 ~ N(0, I)`` seeded with ``seed``:

    top:     the k largest (algebraic) eigenvalues of H                     (which="LA")
    bottom:  λ_j(H) = s − μ_j,  μ_j the k largest of S = s·I − H,  s = λmax(H)

Lanczos on S builds the same Krylov space as on H, so the shift only changes eigsh's stopping
rule: a residual below ``tol·|μ|`` with μ ≈ λmax − λmin, i.e. accuracy relative to the spread of
the spectrum, where asking for λmin of H directly (``which="SA"``) would ask ``tol·|λmin|``, out
of reach of float32 products when λmin ≈ 0 (``runs.curvature`` does the same). A block of at
most ``DENSE_MAX`` parameters (or with k ≥ n − 1) is assembled from n products and diagonalized.
Each vector has unit norm and the sign rule of the Hessian directions (its largest entry
positive), so the same seed gives the same vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

from landscape.errors import DirectionError

DENSE_MAX = 20  # up to this many parameters H is assembled and diagonalized
SIGN_TIE = 1e-3  # |entries| this close (relatively) to the largest count as tied for the sign

MatVec = Callable[[np.ndarray], np.ndarray]
# what `landscape hessian` can change when Lanczos does not converge
ADVICE = "raise --max-restarts or --tol, ask for fewer (--top-k), or use more --samples"


@dataclass
class Eigenpairs:
    """``values[j]`` with the unit eigenvector ``vectors[:, j]``; ``ends[j]``: top or bottom.
    Top values come first (descending), then bottom ones (ascending)."""

    values: np.ndarray
    vectors: np.ndarray  # (n, len(values))
    ends: list[str]


def fix_sign(v: np.ndarray) -> np.ndarray:
    """Unit norm, and the (first, up to ties) entry of largest magnitude positive: v is defined
    up to ±, and symmetries make exact ties (the two output biases of a 2-class softmax), which
    rounding must not flip."""
    v = v / np.linalg.norm(v)
    big = np.abs(v) >= (1 - SIGN_TIE) * np.abs(v).max()
    return -v if v[np.flatnonzero(big)[0]] < 0 else v


def eigenpairs(
    matvec: MatVec,
    n: int,
    k: int,
    which: str,
    tol: float,
    max_restarts: int,
    seed: int,
    advice: str = ADVICE,
) -> Eigenpairs:
    """The ``k`` eigenpairs at the ``which`` end(s) of H (``top``, ``bottom`` or ``extreme``);
    ``advice``: what a user can change when Lanczos does not converge."""
    k = min(k, n)
    if n <= max(DENSE_MAX, k + 1):
        return _dense(matvec, n, k, which)
    top_k = k if which != "bottom" else 1  # bottom alone still needs λmax for its shift
    top_values, top_vecs = _largest(matvec, n, top_k, tol, max_restarts, seed, advice)
    if which == "top":
        return Eigenpairs(top_values, top_vecs, ["top"] * k)
    shift = float(top_values[0])
    mu, vecs = _largest(lambda v: shift * v - matvec(v), n, k, tol, max_restarts, seed, advice)
    bottom = Eigenpairs(shift - mu, vecs, ["bottom"] * k)  # μ descending: λ ascending
    if which == "bottom":
        return bottom
    return Eigenpairs(
        np.concatenate([top_values, bottom.values]),
        np.concatenate([top_vecs, bottom.vectors], axis=1),
        ["top"] * k + ["bottom"] * k,
    )


def _largest(
    matvec: MatVec, n: int, k: int, tol: float, max_restarts: int, seed: int, advice: str
) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their unit, sign-fixed eigenvectors."""
    linear = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)
    try:
        values, vecs = eigsh(linear, k=k, which="LA", tol=tol, v0=v0, maxiter=max_restarts)
    except ArpackNoConvergence as exc:
        raise DirectionError(
            f"hessian: Lanczos found {len(exc.eigenvalues)} of {k} eigenpairs within "
            f"{max_restarts} restarts; the eigenvalues may be nearly equal: {advice}"
        ) from None
    except ArpackError as exc:
        raise DirectionError(f"hessian: eigsh failed ({exc}); {advice}") from None
    order = np.argsort(values)[::-1]
    return values[order], np.stack([fix_sign(vecs[:, j]) for j in order], axis=1)


def _dense(matvec: MatVec, n: int, k: int, which: str) -> Eigenpairs:
    """H assembled column by column (H e_j), symmetrized, diagonalized: for tiny blocks."""
    h = np.stack([matvec(e) for e in np.eye(n)], axis=1)
    values, vecs = np.linalg.eigh((h + h.T) / 2)  # ascending
    top = [n - 1 - j for j in range(k)]
    bottom = list(range(k))
    order, ends = {
        "top": (top, ["top"] * k),
        "bottom": (bottom, ["bottom"] * k),
        "extreme": (top + bottom, ["top"] * k + ["bottom"] * k),
    }[which]
    return Eigenpairs(values[order], np.stack([fix_sign(vecs[:, j]) for j in order], axis=1), ends)
