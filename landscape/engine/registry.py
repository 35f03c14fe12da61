"""The evaluation engines by name: one declaration, read without importing anything heavy.

``ENGINES`` maps each name to its ``Evaluator`` class (``landscape.engine.select``), declared as
``"module:Class"`` and imported on first look-up: the config layer reads the names (``--engine``
choices) without torch, the chooser reads the classes, which declare their own facets
(``points_per_call``, ``runs_scripted``). Adding an engine is its module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class _LazyClasses(Mapping[str, Any]):
    """name → class, each class imported when first looked up."""

    def __init__(self, paths: dict[str, str]) -> None:
        self._paths = paths

    def __getitem__(self, name: str) -> Any:
        module, _, attr = self._paths[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


ENGINES: Mapping[str, Any] = _LazyClasses(
    {
        "reference": "landscape.engine.reference:ReferenceEvaluator",  # one point per call
        "batched": "landscape.engine.batched:BatchedEvaluator",  # K points per call (vmap)
    }
)
