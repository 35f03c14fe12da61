"""Point evaluators: ``L(θ + a·d1 + b·d2)`` and accuracy at grid points (DESIGN §4).

The names below are imported on first use, so that the config layer can read the engine
registry (``landscape.engine.registry``) without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BatchedEvaluator": "landscape.engine.batched",
    "PointResult": "landscape.engine.reference",
    "ReferenceEvaluator": "landscape.engine.reference",
    "eval_mode": "landscape.engine.reference",
    "resolve_device": "landscape.engine.reference",
}

__all__ = ["BatchedEvaluator", "PointResult", "ReferenceEvaluator", "eval_mode", "resolve_device"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'landscape.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
