"""Point evaluators: ``L(θ + a·d1 + b·d2)`` and accuracy at grid points (DESIGN §4)."""

from landscape.engine.batched import BatchedEvaluator
from landscape.engine.reference import PointResult, ReferenceEvaluator, eval_mode, resolve_device

__all__ = ["BatchedEvaluator", "PointResult", "ReferenceEvaluator", "eval_mode", "resolve_device"]
