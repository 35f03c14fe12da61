"""Direction families behind one registry ``name → builder`` (DESIGN §3).

A builder takes a :class:`DirectionContext` (the centre's tensors, the spec, how many directions,
and what some families need besides: other checkpoints, the model, data and loss) and returns a
:class:`DirectionSet`. Every family lives in a module of its own, with its maths in the docstring.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from landscape.config import DirectionSpec
from landscape.directions.base import DirectionContext, DirectionSet, summarize
from landscape.directions.io import load_directions
from landscape.errors import DirectionError
from landscape.families import FAMILIES

Builder = Callable[[DirectionContext], DirectionSet]

# name → "module:function" from the families' registry; imported on first use, so a run pays
# only for the family it uses
REGISTRY: dict[str, str] = {name: f.builder for name, f in FAMILIES.items()}


def builder_for(name: str) -> Builder:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise DirectionError(
            f"unknown direction {name!r}; choose one of {', '.join(REGISTRY)}"
        ) from None
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def build(ctx: DirectionContext) -> DirectionSet:
    """Build ``ctx.count`` directions of family ``ctx.spec.name``."""
    return builder_for(ctx.spec.name)(ctx)


def build_directions(
    theta: dict[str, torch.Tensor], spec: DirectionSpec, count: int, **context: Any
) -> DirectionSet:
    """Build directions around ``theta``; ``context`` fills the other DirectionContext fields."""
    return build(DirectionContext(theta, spec, count, **context))


__all__ = [
    "REGISTRY",
    "DirectionContext",
    "DirectionSet",
    "build",
    "build_directions",
    "builder_for",
    "load_directions",
    "summarize",
]
