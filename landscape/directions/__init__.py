"""Direction families behind one registry ``name → builder`` (DESIGN §3).

A builder takes the centre ``theta`` (parameters by name), the direction spec and the number of
directions wanted (1 or 2) and returns a :class:`DirectionSet`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from landscape.config import DirectionSpec
from landscape.directions.base import DirectionSet, summarize
from landscape.directions.filter_norm import build_filter_norm
from landscape.directions.io import load_directions
from landscape.errors import DirectionError

Builder = Callable[["dict[str, torch.Tensor]", DirectionSpec, int], DirectionSet]

REGISTRY: dict[str, Builder] = {
    "filter-norm": build_filter_norm,
}


def build_directions(
    theta: dict[str, torch.Tensor], spec: DirectionSpec, count: int
) -> DirectionSet:
    """Build ``count`` directions of family ``spec.name`` around ``theta``."""
    try:
        builder = REGISTRY[spec.name]
    except KeyError:
        raise DirectionError(
            f"unknown direction {spec.name!r}; choose one of {', '.join(REGISTRY)}"
        ) from None
    return builder(theta, spec, count)


__all__ = ["REGISTRY", "DirectionSet", "build_directions", "load_directions", "summarize"]
