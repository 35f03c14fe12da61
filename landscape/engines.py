"""The evaluation engines by name, declared where nothing heavy is imported (the config layer
reads the names). Each is an ``Evaluator`` class (``landscape.engine.select``), imported on first
use; the class declares its own facets (``points_per_call``, ``runs_scripted``)."""

from __future__ import annotations

import importlib
from typing import Any

ENGINES: dict[str, str] = {
    "reference": "landscape.engine.reference:ReferenceEvaluator",  # one point per call
    "batched": "landscape.engine.batched:BatchedEvaluator",  # K points per call (vmap)
}
NAMES: tuple[str, ...] = tuple(ENGINES)


def evaluator_class(name: str) -> Any:
    """The class of engine ``name``."""
    module, _, attr = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
