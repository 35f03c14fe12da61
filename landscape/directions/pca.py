"""Principal directions of the weights themselves (DESIGN §3, "pca").

For every moved tensor, reshaped to ``W (n_out, m)`` (a 1-D tensor under ``ignore=none`` is one
filter, ``(1, m)``), take the thin SVD ``W = Σ_j σ_j u_j v_jᵀ`` and use its first two rank-1 terms:

    d1[k] = σ_1 u_1 v_1ᵀ        d2[k] = σ_2 u_2 v_2ᵀ

Every row of ``d1[k]`` is a multiple of ``v_1ᵀ`` and every row of ``d2[k]`` a multiple of ``v_2ᵀ``,
and ``v_1 ⊥ v_2``, so each filter pair ``(d1[k][i], d2[k][i])`` is orthogonal, and so is the pair as
a whole. Then every filter is scaled to ``‖θ[k][i]‖`` (``norm=filter``; ``layer`` scales the whole
tensor, ``none`` keeps ``σ_j u_j v_jᵀ``). A filter whose component is ~0 (below ``ZERO_TOL`` of the
tensor's largest filter of that direction) is set to exactly 0 and stays 0 after scaling, instead
of having round-off blown up to a full-norm filter.

Sign: the SVD's vectors are fixed so that the largest-|entry| of each ``v_j`` is positive. The
product ``σ_j u_j v_jᵀ`` does not depend on that choice (flipping ``u_j`` and ``v_j`` together
leaves it unchanged), so the directions are deterministic either way; with two equal singular
values ``σ_1 = σ_2`` the plane is still determined but the split into d1, d2 is LAPACK's.

Rank: a tensor of numerical rank < 2 (``n_out == 1``, ``m == 1``, or all filters parallel) has no
second component: ``d2`` is zero there. Numerical rank follows ``numpy.linalg.matrix_rank`` for
float32 data: ``σ_j`` counts when ``σ_j > max(n_out, m) · eps(float32) · σ_1``.

The method is deterministic: ``seed`` is unused. Figures stored with the directions: the explained
variance ``[σ_1²/Σσ², σ_2²/Σσ²]`` of every moved tensor (``pca_explained_variance``, name → pair),
and over all moved tensors together ``[Σ_k σ_1,k² / Σ_k ‖W_k‖², Σ_k σ_2,k² / Σ_k ‖W_k‖²]``
(``pca_explained_variance_total``: the share of the weights' squared norm that d1, d2 capture).
With ``orthogonal_to_weights`` each filter's component along the weights' own filter is removed
before the scaling (``without_weights``), so the pair shows the loss's shape rather than a change
of the weights' scale. All linear algebra is in float64 on the CPU; the vectors are float32.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from landscape.directions.base import (
    DirectionContext,
    DirectionSet,
    check_not_degenerate,
    moved_names,
    zero_direction,
)
from landscape.directions.filter_norm import normalize_direction
from landscape.errors import DirectionError

ZERO_TOL = 1e-6  # a filter below this fraction of its tensor's largest filter counts as zero
RANK_TOL = torch.finfo(torch.float32).eps  # the weights are float32 data


def as_matrix(w: torch.Tensor) -> torch.Tensor:
    """``w`` as ``(n_out, m)`` float64 on the CPU; a tensor without filters is one filter."""
    w = w.detach().to("cpu", torch.float64)
    return w.reshape(w.shape[0], -1) if w.ndim >= 2 else w.reshape(1, -1)


def finish(raw: torch.Tensor, w: torch.Tensor, *, norm: str, ignore: str) -> torch.Tensor:
    """Raw ``(n_out, m)`` rows → a direction tensor shaped like ``w``: ~0 filters set to exactly 0,
    then scaled by filter_norm's rule (per filter / layer / none), float32."""
    rows = raw.norm(dim=1)
    raw = torch.where((rows <= ZERO_TOL * rows.max()).unsqueeze(1), 0.0, raw)
    d = normalize_direction(raw.reshape(w.shape), w, norm=norm, ignore=ignore)
    return d.to(torch.float32)


def without_weights(raws: list[torch.Tensor], w: torch.Tensor) -> list[torch.Tensor]:
    """Raw ``(n_out, m)`` directions with each filter's component along the weights' own filter
    removed (``--orthogonal-to-weights``), the pair then made orthogonal again filter by filter:

        d[i] ← d[i] − ⟨d[i], W[i]⟩ / ‖W[i]‖² · W[i]        d2[i] ← d2[i] − ⟨d2[i], d1[i]⟩ / ‖d1[i]‖² · d1[i]

    zca's and pca's directions come from the weights, so they can be largely aligned with them
    (cos(d1, θ) = 0.85 for zca on a trained ResNet-56): moving along such a direction mostly
    rescales every filter, which eval-mode BatchNorm turns into an exploding loss, a change of
    scale rather than the loss's shape. Both steps keep every filter orthogonal to W[i]
    (d1[i] and d2[i] both are), so the pair stays orthogonal to the weights.
    """
    W = as_matrix(w)
    out = [_minus_projection(d, W) for d in raws]
    if len(out) == 2:
        out[1] = _minus_projection(out[1], out[0])
    return out


def _minus_projection(d: torch.Tensor, onto: torch.Tensor) -> torch.Tensor:
    """Each row of ``d`` without its component along the same row of ``onto`` (zero rows: none)."""
    sq = onto.square().sum(dim=1, keepdim=True)
    coef = torch.where(sq > 0, (d * onto).sum(dim=1, keepdim=True) / sq, 0.0)
    return d - coef * onto


def check_moves(d: dict[str, torch.Tensor], names: list[str], axis: str, why: str) -> None:
    """DirectionError naming the cause when ``d`` is zero although some tensors may move."""
    if names and all(float(d[k].abs().max()) == 0.0 for k in names if d[k].numel()):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise DirectionError(f"{axis} direction is zero on every tensor ({shown}): {why}")
    check_not_degenerate(d, axis)


def principal_components(w: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``[σ_1 u_1 v_1ᵀ, σ_2 u_2 v_2ᵀ]`` of ``W = as_matrix(w)`` (zero beyond the numerical rank),
    and all singular values ``s``."""
    W = as_matrix(w)  # (n_out, m)
    U, s, Vh = torch.linalg.svd(W, full_matrices=False)  # U (n, r), s (r,), Vh (r, m)
    # sign: largest-|entry| of each v_j positive (σ u vᵀ itself is sign-free)
    sign = torch.sign(Vh.gather(1, Vh.abs().argmax(dim=1, keepdim=True))).squeeze(1)
    U, Vh = U * sign, Vh * sign.unsqueeze(1)
    cut = max(W.shape) * RANK_TOL * float(s[0]) if s.numel() else 0.0
    comps = []
    for j in range(2):
        if j < s.numel() and float(s[j]) > cut:
            comps.append(s[j] * torch.outer(U[:, j], Vh[j]))  # σ_j u_j v_jᵀ, (n, m)
        else:
            comps.append(torch.zeros_like(W))  # rank ≤ j: no such component
    return comps, s


def build_pca(ctx: DirectionContext) -> DirectionSet:
    spec, count = ctx.spec, ctx.count
    theta = OrderedDict((k, v.detach().cpu()) for k, v in ctx.theta.items())
    names = moved_names(theta, spec.ignore)
    vectors = [zero_direction(theta) for _ in range(count)]
    explained: dict[str, list[float]] = {}
    top = [0.0, 0.0]  # Σ_k σ_1,k², Σ_k σ_2,k²
    total = 0.0  # Σ_k ‖W_k‖²
    for k in names:
        if theta[k].numel() == 0:
            continue
        comps, s = principal_components(theta[k])
        energy = float((s**2).sum())
        var = [float(c.square().sum()) for c in comps]  # ‖σ_j u_j v_jᵀ‖² = σ_j²
        explained[k] = [v / energy if energy > 0 else 0.0 for v in var]
        top, total = [t + v for t, v in zip(top, var, strict=True)], total + energy
        if spec.orthogonal_to_weights:
            comps = without_weights(comps[:count], theta[k])
        for d, raw in zip(vectors, comps, strict=False):
            d[k] = finish(raw, theta[k], norm=spec.norm, ignore=spec.ignore)
    why = ["every moved tensor is zero", "every moved tensor has rank < 2 (no second component)"]
    for axis, d, reason in zip("xy", vectors, why, strict=False):
        check_moves(d, names, axis, reason + "; use filter-norm or qr-orthogonal")
    attrs = {
        "ignore": spec.ignore,
        "norm": spec.norm,
        "seed_used": False,  # deterministic: derived from the weights
        "pca_explained_variance": explained,
        "pca_explained_variance_total": [t / total if total > 0 else 0.0 for t in top],
        "orthogonal_to_weights": spec.orthogonal_to_weights,
    }
    return DirectionSet("pca", [OrderedDict(v) for v in vectors], attrs)
