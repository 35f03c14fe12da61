"""ZCA-whitened projections of the weights (DESIGN §3, "zca").

Derived from the trained weights, not from noise. For every moved tensor reshaped to
``W (n_out, m)`` (a 1-D tensor under ``ignore=none`` is one filter, ``(1, m)``):

- d1 whitens W with its filters (rows) as samples:
  ``W_c = W − 1·mean_rows(W)`` (each column's mean removed), ``Σ = W_cᵀ W_c / n_out`` (m × m),
  ``d1 = W_c (Σ + ε I)^(-1/2)``;
- d2 whitens W with its columns as samples:
  ``W_r = W − mean_cols(W)·1ᵀ`` (each row's mean removed), ``Σ' = W_r W_rᵀ / m`` (n_out × n_out),
  ``d2 = (Σ' + ε' I)^(-1/2) W_r``;
- ``ε = 1e-5 · trace(Σ) / dim(Σ)``, each covariance with its own ε (``dim`` = m for Σ, n_out
  for Σ'), so the regularization is relative to the layer's own scale.

Neither covariance is formed. With the thin SVD ``W_c = U diag(s) Vᵀ``, ``Σ = V diag(s²/n) Vᵀ``, and
``W_c`` has no component outside ``span(V)``, so

    d1 = U · diag(s / sqrt(s²/n_out + ε)) · Vᵀ,      trace(Σ) = Σ s² / n_out,

and likewise ``d2 = U' · diag(s' / sqrt(s'²/m + ε')) · V'ᵀ`` from ``W_r = U' diag(s') V'ᵀ``: the cost
is one SVD of an ``(n_out, m)`` matrix per direction, never an ``m × m`` one.

Then per filter: remove from ``d2[k][i]`` its projection on ``d1[k][i]``,
``d2[k][i] ← d2[k][i] − ⟨d2[k][i], d1[k][i]⟩ / ‖d1[k][i]‖² · d1[k][i]``, and scale both to
``‖θ[k][i]‖`` (``norm=filter``; ``layer``: the whole tensor; ``none``: as whitened), so the pair
is orthogonal filter by filter (hence globally) and filter-normalized. A filter whose component is
~0 (below 1e-6 of the tensor's largest) stays exactly 0.

With ``orthogonal_to_weights`` each filter's component along the weights' own filter is removed
from both before the scaling (``pca.without_weights``, which keeps the pair orthogonal).

Edge cases: with one filter (``n_out == 1``) the centred ``W_c`` is zero and so is d1 on that
tensor; with ``m == 1`` the same holds for d2. The method is deterministic: ``seed`` is unused.
Figures stored: the ε rule and every moved tensor's ``[ε, ε']`` (``zca_eps``). All linear algebra
is in float64 on the CPU; the vectors are returned as float32.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from landscape.directions.base import DirectionContext, DirectionSet, moved_names, zero_direction
from landscape.directions.pca import as_matrix, check_moves, finish, without_weights

EPS_SCALE = 1e-5  # ε = EPS_SCALE · trace(Σ) / dim(Σ)


def whiten_rows(X: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``X (n, m)`` whose rows are the samples, columns already centred:
    ``X (XᵀX/n + εI)^(-1/2)`` through the thin SVD of X, and the ε used."""
    n, m = X.shape
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)  # U (n, r), s (r,), Vh (r, m)
    eps = EPS_SCALE * float((s**2).sum()) / n / m  # 1e-5 · trace(Σ) / dim(Σ), Σ = XᵀX/n (m × m)
    denom = torch.sqrt(s**2 / n + eps)  # sqrt of Σ's eigenvalues + ε
    scale = torch.where(denom > 0, s / denom, 0.0)  # an all-zero X (trace 0) stays zero
    return (U * scale) @ Vh, eps


def zca_pair(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Raw ``(d1, d2)`` of ``W = as_matrix(w)``, d2 already orthogonal to d1 filter by filter,
    and the two ε."""
    W = as_matrix(w)  # (n_out, m)
    d1, eps1 = whiten_rows(W - W.mean(dim=0, keepdim=True))  # filters as samples
    # columns as samples: (W_r W_rᵀ/m + ε'I)^(-1/2) W_r = (whiten_rows(W_rᵀ))ᵀ
    d2t, eps2 = whiten_rows((W - W.mean(dim=1, keepdim=True)).T)
    d2 = d2t.T
    # per filter i: d2[i] −= ⟨d2[i], d1[i]⟩ / ‖d1[i]‖² · d1[i]  (nothing to remove where d1[i] = 0)
    sq = d1.square().sum(dim=1, keepdim=True)
    coef = torch.where(sq > 0, (d1 * d2).sum(dim=1, keepdim=True) / sq, 0.0)
    return d1, d2 - coef * d1, eps1, eps2


def build_zca(ctx: DirectionContext) -> DirectionSet:
    spec, count = ctx.spec, ctx.count
    theta = OrderedDict((k, v.detach().cpu()) for k, v in ctx.theta.items())
    names = moved_names(theta, spec.ignore)
    vectors = [zero_direction(theta) for _ in range(count)]
    eps: dict[str, list[float]] = {}
    for k in names:
        if theta[k].numel() == 0:
            continue
        d1, d2, eps1, eps2 = zca_pair(theta[k])
        eps[k] = [eps1, eps2]
        raws = without_weights([d1, d2], theta[k]) if spec.orthogonal_to_weights else [d1, d2]
        for d, raw in zip(vectors, raws, strict=False):
            d[k] = finish(raw, theta[k], norm=spec.norm, ignore=spec.ignore)
    why = [
        "every moved tensor has identical filters (or one filter): nothing to whiten",
        "every moved tensor has constant filters (or m == 1), or d2 is parallel to d1",
    ]
    for axis, d, reason in zip("xy", vectors, why, strict=False):
        check_moves(d, names, axis, reason + "; use filter-norm or qr-orthogonal")
    attrs = {
        "ignore": spec.ignore,
        "norm": spec.norm,
        "seed_used": False,  # deterministic: derived from the weights
        "zca_eps_rule": "eps = 1e-5 * trace(Sigma) / dim(Sigma), per covariance",
        "zca_eps": eps,  # tensor name → [ε of d1's Σ (m×m), ε' of d2's Σ' (n_out×n_out)]
        "orthogonal_to_weights": spec.orthogonal_to_weights,
    }
    return DirectionSet("zca", [OrderedDict(v) for v in vectors], attrs)
