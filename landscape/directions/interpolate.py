"""Linear interpolation between checkpoints (Goodfellow et al. 2015; Li et al. 2018, Fig. 3).

1-D, from the centre A (the model's ``--checkpoint``) to a target B::

    d1 = θ_B − θ_A            so  f(a) = L(θ_A + a·d1):  a = 0 is A, a = 1 is B

(``--x=-0.5:1.5:401`` shows both minima and a margin beyond them). 2-D, the plane through A, B
and a third checkpoint C::

    d1 = θ_B − θ_A
    e  = θ_C − θ_A,   x_C = ⟨e, d1⟩ / ⟨d1, d1⟩
    d2 = (e − x_C·d1) · ‖d1‖ / ‖e − x_C·d1‖          (Gram–Schmidt, scaled to ‖d1‖)
    y_C = ⟨e, d2⟩ / ⟨d2, d2⟩ = ‖e − x_C·d1‖ / ‖d1‖

so that ``θ_C = θ_A + x_C·d1 + y_C·d2``: A lands on (0, 0), B on (1, 0) and C on (x_C, y_C).
Both axes are in units of ‖B − A‖, so equal grid steps are equal distances in weight space and
a plot with equal axes is not distorted. Inner products are taken in float64 over every covered
tensor.

The directions cover every parameter: ``ignore`` and ``norm`` do not apply, since the point
a = 1 must be B itself (up to float32 rounding), not a rescaled or partial copy of it. With
``states`` they also cover the floating-point buffers (BatchNorm running mean and variance), so
that B's statistics travel with its weights; integer buffers (``num_batches_tracked``) never
move. The points A, B (and C) are stored as landmarks of the surface.

With ``align`` (``weights`` or ``activations``) each target is first replaced by its copy with
the hidden units permuted to match A (``landscape.alignment``, through the context's
``align_target``): the same function, so B's loss is unchanged, but the straight path now runs
between matched units (Entezari et al. 2022; Ainsworth et al. 2023). Each alignment's summary is
stored in the ``alignment`` attribute (one record per target).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from landscape import params
from landscape.directions.base import DirectionContext, DirectionSet
from landscape.errors import DirectionError

LINE_TOL = 1e-6  # C is "on the line AB" when its distance to it is below LINE_TOL · ‖C − A‖


def covered_names(ctx: DirectionContext) -> list[str]:
    """Every parameter; with ``states`` the floating-point buffers too, in ``state_dict`` order."""
    return [
        k
        for k, t in ctx.state.items()
        if k in ctx.theta or (ctx.spec.states and t.is_floating_point())
    ]


def build_interpolate(ctx: DirectionContext) -> DirectionSet:
    targets = ctx.spec.targets
    if len(targets) < ctx.count:
        raise DirectionError(
            f"interpolate on a {ctx.count}-D grid needs {ctx.count} --target checkpoint(s), "
            f"got {len(targets)}"
        )
    load, records = _target_loader(ctx)
    names = covered_names(ctx)
    a = _pick(ctx.state, names)
    d1 = _difference(_pick(load(targets[0]), names), a)
    norm_ab = params.global_norm(d1)
    if norm_ab == 0.0:
        aligned = " once aligned (it is A with its units reordered)" if records else ""
        raise DirectionError(
            f"interpolate: target B {str(targets[0])!r} is identical to the centre A (the --checkpoint) "
            f"on every tensor{aligned}; give two different checkpoints"
        )
    attrs: dict[str, object] = {
        "targets": [str(t) for t in targets[: ctx.count]],
        "states": ctx.spec.states,
    }
    attrs["distance_ab"] = norm_ab
    if ctx.count == 1:
        landmarks = {"names": ["A", "B"], "x": [0.0, 1.0]}
        vectors = [d1]
    else:
        e = _difference(_pick(load(targets[1]), names), a)
        d2, x_c, y_c = _orthogonalize(e, d1, str(targets[1]))
        landmarks = {"names": ["A", "B", "C"], "x": [0.0, 1.0, x_c], "y": [0.0, 0.0, y_c]}
        attrs["distance_ac"] = params.global_norm(e)
        vectors = [d1, d2]
    attrs["landmarks"] = landmarks  # stored as JSON
    if records:
        attrs["alignment"] = records  # stored as JSON: one summary per target
    arrays = {k: np.asarray(v) for k, v in landmarks.items()}
    return DirectionSet("interpolate", vectors, attrs, landmarks=arrays)


def _target_loader(ctx: DirectionContext) -> tuple[Any, list[dict[str, Any]]]:
    """``load(target)``: the target's checked state, aligned to the centre under ``align``
    (each alignment's summary appended to the returned list, in target order)."""
    load = ctx.require("load_state")
    method = getattr(ctx.spec, "align", "none")
    records: list[dict[str, Any]] = []
    if method == "none":
        return load, records
    align = ctx.require("align_target")

    def aligned(target: Any) -> OrderedDict[str, torch.Tensor]:
        state, record = align(load(target), method)
        records.append({"target": str(target), **record})
        return state

    return aligned, records


def _pick(state: dict[str, torch.Tensor], names: list[str]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, state[k]) for k in names)


def _difference(
    b: dict[str, torch.Tensor], a: dict[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """``b − a`` tensor by tensor, formed in float64 and stored as float32."""
    return OrderedDict(
        (k, (b[k].detach().double() - a[k].detach().double()).to(torch.float32)) for k in a
    )


def _orthogonalize(
    e: dict[str, torch.Tensor], d1: dict[str, torch.Tensor], target: str
) -> tuple[OrderedDict[str, torch.Tensor], float, float]:
    """``d2`` from ``e = C − A`` (Gram–Schmidt against ``d1``, scaled to ‖d1‖) and C's (x, y)."""
    d1_sq = params.inner(d1, d1)
    x_c = params.inner(e, d1) / d1_sq
    rest = OrderedDict((k, e[k].double() - x_c * d1[k].double()) for k in e)
    dist = params.global_norm(rest)  # distance of C from the line through A and B
    norm_ac = params.global_norm(e)
    if dist <= LINE_TOL * norm_ac or dist == 0.0:
        where = "is identical to A" if norm_ac == 0.0 else "lies on the line through A and B"
        raise DirectionError(
            f"interpolate: target C {target!r} {where} (distance from the line "
            f"{dist:.3g}, ‖C − A‖ = {norm_ac:.3g}), so it spans no plane; pick a checkpoint off "
            "that line"
        )
    scale = d1_sq**0.5 / dist
    d2 = OrderedDict((k, (v * scale).to(torch.float32)) for k, v in rest.items())
    # C's coordinates against the stored float32 pair (least squares, the 2 × 2 normal
    # equations): x_C·d1 + y_C·d2 = C − A up to float32 rounding of the directions
    g12 = params.inner(d1, d2)
    gram = np.array([[d1_sq, g12], [g12, params.inner(d2, d2)]])
    x_c, y_c = np.linalg.solve(gram, [params.inner(e, d1), params.inner(e, d2)])
    return d2, float(x_c), float(y_c)
