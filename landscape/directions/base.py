"""The result every direction family returns, and checks they share."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from landscape import params
from landscape.errors import DirectionError


@dataclass
class DirectionSet:
    """One or two directions (``vectors[0]`` is x, ``vectors[1]`` is y), each ``name → tensor``.

    ``attrs`` holds the method's own figures (explained variance, eigenvalues, ...); ``summarize``
    adds the cosine and norms before they are stored.
    """

    method: str
    vectors: list[OrderedDict[str, torch.Tensor]]
    attrs: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device) -> DirectionSet:
        moved = [OrderedDict((k, v.to(device)) for k, v in d.items()) for d in self.vectors]
        return DirectionSet(self.method, moved, dict(self.attrs))


def summarize(ds: DirectionSet) -> dict[str, Any]:
    """Attributes stored with the directions: method, norms, cosine, and the method's figures."""
    out: dict[str, Any] = {"method": ds.method, "count": len(ds.vectors)}
    out["norm_x"] = params.global_norm(ds.vectors[0])
    if len(ds.vectors) > 1:
        out["norm_y"] = params.global_norm(ds.vectors[1])
        out["cosine"] = params.cosine(ds.vectors[0], ds.vectors[1])
    out.update(ds.attrs)
    return out


def check_not_degenerate(direction: dict[str, torch.Tensor], label: str) -> None:
    """Raise DirectionError when a direction is zero everywhere (nothing would move)."""
    if all(float(t.abs().max()) == 0.0 for t in direction.values() if t.numel()):
        raise DirectionError(
            f"{label} direction is zero on every tensor (e.g. a model without weight matrices "
            f"under --ignore biasbn); use --ignore none or another model"
        )
