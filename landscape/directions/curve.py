"""Along a trained curve between A and B (``landscape connect``; Garipov et al. 2018).

1-D, the loss along the curve: the point ``t ∈ [0, 1]`` is θ(t) itself, not θ + t·d. Its
weights ``(w_A, w_C, w_B)`` sum to one (``landscape.curves``), so

    θ(t) = A + w_C(t)·d1 + w_B(t)·d2,     d1 = C − A,  d2 = B − A

and the run evaluates the 1-D grid ``t`` with two directions and the *chart*
``t → (w_C(t), w_B(t))`` (``DirectionSet.chart``): the engine, the BatchNorm policies (``--bn
recalibrate`` re-estimates the statistics at each θ(t)), the store and the plots are the
surface's own. A lands on t = 0, B on t = 1 (and a polychain's C on t = 1/2).

2-D (``--y`` given), the plane through A, B and C, built as ``interpolate`` builds it: d1 = B − A,
d2 = C − A made orthogonal to d1 and scaled to ‖d1‖, A at (0, 0), B at (1, 0), C at (x_C, y_C).
The curve lies in that plane (its points are affine combinations of A, B and C): its path,
``w_C(t)·(x_C, y_C) + w_B(t)·(1, 0)``, is stored with the directions (attribute ``path``) and
drawn on the plots with the landmarks A, B, C.

The directions cover every parameter the run moves; buffers (BatchNorm statistics) stay at A's
unless ``--bn recalibrate`` re-estimates them. The model's weights must be the curve's A (the
``--checkpoint`` it was trained from).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from landscape import params
from landscape.checkpoint_paths import Weights
from landscape.curves import Curve, load_curve, weights
from landscape.directions.base import DirectionContext, DirectionSet
from landscape.directions.interpolate import build_interpolate
from landscape.errors import DirectionError

PATH_POINTS = 101  # points of the curve's path stored on the plane


def build_curve(ctx: DirectionContext) -> DirectionSet:
    curve, label = curve_of(ctx.spec.curve)
    names = list(ctx.theta)
    check_starts_at(curve, ctx.state, names, label)
    attrs: dict[str, Any] = {"curve": label, "kind": curve.kind}
    if ctx.count == 1:
        return _along(curve, names, attrs)
    return _plane(ctx, curve, attrs)


def curve_of(items: Any) -> tuple[Curve, str]:
    """The curve the option names (a file, or from the API a Curve object) and its label."""
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    if len(items) != 1:
        raise DirectionError(f"direction curve reads one --curve FILE, got {len(items)}")
    item = items[0]
    if isinstance(item, Weights):  # an object handed to the Python API
        item = item.state
    if isinstance(item, Curve):
        return item, "curve"
    return load_curve(str(item)), str(item)


def check_starts_at(
    curve: Curve, state: dict[str, torch.Tensor], names: list[str], label: str
) -> None:
    """The run's centre is the curve's A, tensor for tensor: a curve of another pair is refused."""
    for k in names:
        if k not in curve.a:
            raise DirectionError(
                f"curve {label!r} has no tensor {k}; it was trained for another architecture"
            )
        if tuple(curve.a[k].shape) != tuple(state[k].shape):
            raise DirectionError(
                f"curve {label!r}: tensor {k} has shape {tuple(curve.a[k].shape)}, the model's "
                f"{tuple(state[k].shape)}; it was trained for another architecture"
            )
        if not torch.equal(curve.a[k].to(state[k].dtype), state[k].detach().cpu()):
            raise DirectionError(
                f"curve {label!r} starts at other weights than the model's (tensor {k} differs "
                "from its A): give --checkpoint the A it was trained from"
            )


def _difference(x: dict, a: dict, names: list[str]) -> dict[str, torch.Tensor]:
    """``x − a`` on ``names``, formed in float64, stored as float32."""
    return {k: (x[k].double() - a[k].double()).to(torch.float32) for k in names}


def _along(curve: Curve, names: list[str], attrs: dict[str, Any]) -> DirectionSet:
    """The 1-D surface along the curve: d1 = C − A, d2 = B − A, charted by the curve's kind."""
    from collections import OrderedDict

    d1 = OrderedDict(_difference(curve.c, curve.a, names))
    d2 = OrderedDict(_difference(curve.b, curve.a, names))
    if params.global_norm(d2) == 0.0:
        raise DirectionError("the curve's ends A and B are the same weights; it joins nothing")
    marks: dict[str, list] = {"names": ["A", "B"], "x": [0.0, 1.0]}
    if curve.kind == "polychain":  # the chain passes through its bend at t = 1/2
        marks = {"names": ["A", "C", "B"], "x": [0.0, 0.5, 1.0]}
    attrs.update(chart=curve.kind, landmarks=marks, distance_ab=params.global_norm(d2))
    arrays = {k: np.asarray(v) for k, v in marks.items()}
    return DirectionSet("curve", [d1, d2], attrs, landmarks=arrays, chart=curve.kind)


def _plane(ctx: DirectionContext, curve: Curve, attrs: dict[str, Any]) -> DirectionSet:
    """The plane through A, B and C (interpolate's), with the curve's path drawn on it."""
    points = {"B": curve.b, "C": curve.c}
    plane = build_interpolate(
        replace(
            ctx,
            spec=replace(ctx.spec, targets=["B", "C"], states=False),
            count=2,
            load_state=lambda key: points[str(key)],
        )
    )
    marks = plane.attrs["landmarks"]
    x_c, y_c = float(marks["x"][2]), float(marks["y"][2])
    t = np.linspace(0.0, 1.0, PATH_POINTS)
    w = np.array([weights(curve.kind, float(s)) for s in t])  # (w_A, w_C, w_B) per t
    path = {"t": t.tolist(), "x": (w[:, 1] * x_c + w[:, 2]).tolist(), "y": (w[:, 1] * y_c).tolist()}
    plane.attrs.pop("targets", None)
    plane.attrs.pop("states", None)
    return DirectionSet(
        "curve", plane.vectors, {**plane.attrs, **attrs, "path": path}, landmarks=plane.landmarks
    )
