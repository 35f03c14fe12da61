"""Filter-normalized Gaussian directions (Li et al. 2018, §4).

Draw ``d ~ N(0, I)`` with the same shapes as θ, then rescale so that every filter of the
direction has the norm of the matching filter of the weights:

    d[k][i] ← d[k][i] · ‖θ[k][i]‖ / (‖d[k][i]‖ + 1e-10)

which removes the scale invariance of ReLU networks and makes sharpness comparable across nets.
The Gaussians come from a CPU ``torch.Generator`` seeded from ``seed`` by a hash
(``base.direction_generator``: not torch's own stream for that seed, which a network initialized
after ``torch.manual_seed(seed)`` drew its weights from) and are drawn for every tensor in
parameter order (ignored ones too), so a given seed gives the same direction on any device and
for any ``ignore``/``norm`` setting.
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
)
from landscape.params import has_filters

EPS = 1e-10  # as in the reference code: keeps an all-zero random filter finite


def gaussian_like(
    theta: dict[str, torch.Tensor], gen: torch.Generator
) -> OrderedDict[str, torch.Tensor]:
    """One standard-normal tensor per entry of θ, float32 on CPU, drawn in θ's order."""
    return OrderedDict(
        (k, torch.randn(t.shape, generator=gen, dtype=torch.float32)) for k, t in theta.items()
    )


def normalize_direction(
    d: torch.Tensor, w: torch.Tensor, *, norm: str, ignore: str
) -> torch.Tensor:
    """Rescale one tensor ``d`` of a direction against the weights ``w`` (returns a new tensor)."""
    w = w.detach().to(torch.float32).cpu()
    if not has_filters(w):
        if ignore == "biasbn":
            # biases and BN parameters do not move (the reference default)
            return torch.zeros_like(d)
        # 'none': the tensor moves too, normalized as a whole tensor
        return d if norm == "none" else d * (w.norm() / (d.norm() + EPS))
    if norm == "filter":
        # per filter i: d[i] · ‖w[i]‖ / (‖d[i]‖ + ε)
        shape = (d.shape[0],) + (1,) * (d.ndim - 1)
        w_norms = w.reshape(w.shape[0], -1).norm(dim=1).reshape(shape)
        d_norms = d.reshape(d.shape[0], -1).norm(dim=1).reshape(shape)
        return d * (w_norms / (d_norms + EPS))
    if norm == "layer":
        # the whole tensor: d · ‖w‖ / (‖d‖ + ε)
        return d * (w.norm() / (d.norm() + EPS))
    return d  # 'none': the raw Gaussian


def _dtype(ctx: DirectionContext, name: str) -> torch.dtype:
    """The dtype the run keeps ``name``'s direction in: its weight's, when that is a half type."""
    weight = ctx.state.get(name) if ctx.state is not None else None
    if weight is not None and weight.dtype in (torch.bfloat16, torch.float16):
        return weight.dtype
    return torch.float32


def build_filter_norm(ctx: DirectionContext) -> DirectionSet:
    theta, spec, count = ctx.theta, ctx.spec, ctx.count
    gen = direction_generator(spec.seed, ctx.seed_derivation)
    vectors = []
    for axis in AXIS_NAMES[:count]:
        # tensor by tensor: the same draws as gaussian_like (one stream, θ's order), but only
        # one raw Gaussian alive at a time, and each result at once in its weight's dtype
        d = OrderedDict()
        for k, t in theta.items():
            raw = torch.randn(t.shape, generator=gen, dtype=torch.float32)
            d[k] = normalize_direction(raw, t, norm=spec.norm, ignore=spec.ignore).to(
                _dtype(ctx, k)
            )
        check_not_degenerate(d, axis)
        vectors.append(d)
    return DirectionSet("filter-norm", vectors, seeded_attrs(ctx))


def seeded_attrs(ctx: DirectionContext) -> dict[str, object]:
    """What a seeded family records: its seed, how its generator came from it, ignore, norm."""
    spec = ctx.spec
    return {
        "seed": spec.seed,
        "seed_derivation": ctx.seed_derivation,
        "ignore": spec.ignore,
        "norm": spec.norm,
    }
