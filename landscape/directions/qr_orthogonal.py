"""Orthogonalized Gaussian directions (DESIGN §3, "qr-orthogonal").

Random stream (as filter-norm): a CPU ``torch.Generator`` seeded from ``seed`` (by the hash of
``base.direction_generator``) draws a standard
normal ``G1`` for every tensor of θ in parameter order (ignored tensors too), then ``G2`` for every
tensor in the same order. A seed therefore gives the same directions on any device and for any
``ignore``/``norm``, and ``G1`` is exactly filter-norm's Gaussian for that seed.

For every moved tensor, reshaped to ``(n_out, m)`` (a 1-D tensor under ``ignore=none`` is one
filter, ``(1, m)``):

- joint QR, when ``2·n_out ≤ m``: the thin QR of the ``(m, 2·n_out)`` matrix
  ``A = [G1ᵀ G2ᵀ] = Q R`` (Gram–Schmidt of ``G1[0..n)``, then ``G2[0..n)``), with the sign
  convention ``diag(R) > 0`` (which makes Q unique); ``d1 = Q[:, :n]ᵀ``, ``d2 = Q[:, n:]ᵀ``, so all
  ``2·n_out`` rows of ``d1[k]`` and ``d2[k]`` are orthonormal;
- per-filter QR, otherwise (there is no room for 2·n_out orthonormal rows): for each filter i the
  thin QR of the ``(m, 2)`` matrix ``[G1[i]ᵀ G2[i]ᵀ]``, ``diag(R) > 0``, i.e.
  ``d1[i] = G1[i]/‖G1[i]‖`` and ``d2[i]`` = ``G2[i]`` minus its projection on ``d1[i]``, normalized.
  With ``m == 1`` there is no second orthogonal vector: d2 is zero on that tensor.

Then every filter is scaled to ``‖θ[k][i]‖`` (``norm=filter``; ``layer``: the whole tensor to
``‖θ[k]‖``; ``none``: the orthonormal rows as they are). Scaling rows keeps them orthogonal, so
every filter pair, and the pair as a whole, is orthogonal to float precision, and every filter
keeps the weight's filter norm. A zero weight filter gives a zero direction filter.

More directions (``count`` = k ≥ 3, an n-D grid): d1 and d2 exactly as above (so the grid's
x–y plane through the centre is the 2-D surface of the same seed), then ``G3``, ..., ``Gk``
(drawn after ``G2``) each made orthonormal to every direction before it, tensor by tensor:
jointly over all filters where ``j·n_out ≤ m``, else filter by filter (a filter of ``m < j``
entries has no room: d_j is zero there). Rows orthonormal filter by filter stay orthogonal
when every direction's filter i is scaled by the same ``‖θ[k][i]‖``, so the k directions are
pairwise orthogonal.

One direction (``count == 1``) has nothing to be orthogonal to: d1 is the scaled ``G1``, i.e. the
same vector as filter-norm's d1 for the same seed (no QR). The QR runs in float64 on the CPU;
the vectors are returned as float32. Stored figures: how many tensors took the joint QR and how
many the per-filter QR.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from landscape.config import AXIS_NAMES
from landscape.directions.base import (
    DirectionContext,
    DirectionSet,
    check_not_degenerate,
    direction_generator,
    moved_names,
    zero_direction,
)
from landscape.directions.filter_norm import gaussian_like, normalize_direction, seeded_attrs
from landscape.directions.pca import as_matrix


def qr_positive(A: torch.Tensor) -> torch.Tensor:
    """Thin Q of ``A (..., m, c)`` with the convention ``diag(R) ≥ 0`` (unique for full rank)."""
    Q, R = torch.linalg.qr(A, mode="reduced")  # Q (..., m, min(m, c)), R (..., min(m, c), c)
    sign = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    return Q * torch.where(sign == 0, 1.0, sign).unsqueeze(-2)  # flip column j when R[j, j] < 0


def orthonormal_pair(g1: torch.Tensor, g2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Orthonormal rows ``(d1, d2)``, each ``(n_out, m)``, from Gaussians of that shape; and
    whether the joint QR was used."""
    n, m = g1.shape
    if 2 * n <= m:
        # joint: A = [G1ᵀ G2ᵀ] (m, 2n) = QR; all 2n rows of d1, d2 orthonormal
        Q = qr_positive(torch.cat([g1.T, g2.T], dim=1))  # (m, 2n)
        return Q[:, :n].T, Q[:, n:].T, True
    if m == 1:
        return torch.sign(g1), torch.zeros_like(g2), False  # no room for a second direction
    # per filter i: [G1[i]ᵀ G2[i]ᵀ] (m, 2) = QR, batched over filters
    Q = qr_positive(torch.stack([g1, g2], dim=2))  # (n, m, 2)
    return Q[:, :, 0], Q[:, :, 1], False


def next_orthonormal(prev: list[torch.Tensor], g: torch.Tensor) -> torch.Tensor:
    """Rows ``(n_out, m)`` orthonormal to the orthonormal rows ``prev`` (d_1..d_{j-1}) from the
    Gaussian ``g``: Gram–Schmidt of ``g`` after them, jointly over every filter where there is
    room (``j·n_out ≤ m``), else filter by filter; zero where a filter has no room left
    (``m < j``)."""
    j, (n, m) = len(prev) + 1, g.shape
    if j * n <= m:
        # joint: [d_1ᵀ ... d_{j-1}ᵀ Gᵀ] (m, j·n) = QR; the first (j-1)·n columns are the
        # previous rows themselves (orthonormal, diag(R) > 0), the last n the new ones
        Q = qr_positive(torch.cat([p.T for p in prev] + [g.T], dim=1))
        return Q[:, (j - 1) * n :].T
    if m < j:
        return torch.zeros_like(g)  # a filter of m entries holds only m orthonormal rows
    # per filter i: [d_1[i]ᵀ ... d_{j-1}[i]ᵀ G[i]ᵀ] (m, j) = QR, batched; the last column
    return qr_positive(torch.stack([*prev, g], dim=2))[:, :, -1]


def orthogonalize_more(
    theta: dict[str, torch.Tensor],
    raw: list[OrderedDict[str, torch.Tensor]],
    gauss: list[dict[str, torch.Tensor]],
    ignore: str,
) -> list[OrderedDict[str, torch.Tensor]]:
    """Directions 3..k after the pair ``raw`` (d1, d2 as ``orthogonalize`` made them, so an n-D
    grid's x–y plane is the 2-D surface of the same seed): each Gaussian ``G_j`` made orthonormal
    to every direction before it, tensor by tensor (``next_orthonormal``)."""
    out = list(raw)
    for g in gauss:
        d = zero_direction(theta)
        for k in moved_names(theta, ignore):
            if theta[k].numel() == 0:
                continue
            prev = [as_matrix(p[k]) for p in out]
            d[k] = next_orthonormal(prev, as_matrix(g[k])).reshape(theta[k].shape)
        out.append(d)
    return out


def orthogonalize(
    theta: dict[str, torch.Tensor],
    g1: dict[str, torch.Tensor],
    g2: dict[str, torch.Tensor],
    ignore: str,
) -> tuple[list[OrderedDict[str, torch.Tensor]], int, int]:
    """Raw orthonormal rows ``[d1, d2]`` for every moved tensor (zeros elsewhere), and how many
    tensors took the joint and the per-filter QR."""
    d1, d2 = zero_direction(theta), zero_direction(theta)
    joint = per_filter = 0
    for k in moved_names(theta, ignore):
        if theta[k].numel() == 0:
            continue
        q1, q2, used_joint = orthonormal_pair(as_matrix(g1[k]), as_matrix(g2[k]))
        d1[k], d2[k] = q1.reshape(theta[k].shape), q2.reshape(theta[k].shape)
        joint, per_filter = joint + used_joint, per_filter + (not used_joint)
    return [d1, d2], joint, per_filter


def build_qr_orthogonal(ctx: DirectionContext) -> DirectionSet:
    spec, count = ctx.spec, ctx.count
    theta = OrderedDict((k, v.detach().cpu()) for k, v in ctx.theta.items())
    gen = direction_generator(spec.seed, ctx.seed_derivation)
    gauss = [gaussian_like(theta, gen) for _ in range(count)]  # G1 for all tensors, then G2
    attrs = seeded_attrs(ctx)
    if count == 1:
        raw = gauss  # nothing to orthogonalize against: the scaled Gaussian (as filter-norm)
        attrs["qr_note"] = "one direction: the filter-normalized Gaussian G1, no QR"
    else:
        raw, joint, per_filter = orthogonalize(theta, gauss[0], gauss[1], spec.ignore)
        raw = orthogonalize_more(theta, raw, gauss[2:], spec.ignore)  # an n-D grid's others
        attrs.update(qr_joint_tensors=joint, qr_per_filter_tensors=per_filter)
    vectors = []
    for axis, d in zip(AXIS_NAMES[:count], raw, strict=True):
        d = OrderedDict(
            (k, normalize_direction(d[k], w, norm=spec.norm, ignore=spec.ignore).float())
            for k, w in theta.items()
        )
        check_not_degenerate(d, axis)
        vectors.append(d)
    return DirectionSet("qr-orthogonal", vectors, attrs)
