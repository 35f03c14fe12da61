"""Per-sample losses and top-1 correctness.

A loss function maps ``(logits, targets)`` to one loss per sample, shape ``(B,)``, so that the
engine can take the exact mean over the whole set (sum of per-sample losses / N), never a mean of
batch means.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from landscape._resolve import is_callable_spec, resolve_callable
from landscape.errors import ConfigError

LossFn = Callable[[Tensor, Tensor], Tensor]

LOSS_NAMES = ("cross-entropy", "mse")


def is_class_targets(targets: Tensor) -> bool:
    """True when ``targets`` are integer class indices (not probabilities or regression values)."""
    return not (
        torch.is_floating_point(targets) or targets.is_complex() or targets.dtype == torch.bool
    )


def _per_sample(loss: Tensor) -> Tensor:
    """Mean over every non-batch dim: ``(B, ...) → (B,)``."""
    return loss.reshape(loss.shape[0], -1).mean(dim=1) if loss.ndim > 1 else loss


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """``-log softmax(logits)[target]`` per sample; class indices or class probabilities."""
    return _per_sample(F.cross_entropy(logits, targets, reduction="none"))


def mse(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over non-batch dims of ``(logits - t)²``; t = one-hot of class indices, else targets."""
    if is_class_targets(targets):
        t = F.one_hot(targets.long(), num_classes=logits.shape[-1]).to(logits.dtype)  # (B, C)
    else:
        t = targets
        if t.shape != logits.shape:
            if t.numel() != logits.numel():
                raise ConfigError(
                    f"mse: targets of shape {tuple(t.shape)} do not fit model outputs of shape "
                    f"{tuple(logits.shape)}; give targets shaped like the outputs"
                )
            t = t.reshape(logits.shape)  # e.g. (B,) targets for (B, 1) outputs
    return _per_sample((logits - t).square())


class _CheckedLoss:
    """A user loss whose output is checked to be per-sample, shape ``(B,)``, at every call."""

    def __init__(self, fn: LossFn, spec: str) -> None:
        self.fn, self.spec = fn, spec

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        out = self.fn(logits, targets)
        batch = logits.shape[0]
        if not isinstance(out, Tensor) or tuple(out.shape) != (batch,):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(
                f"loss {self.spec!r} returned {got} for a batch of {batch}; it must return one "
                "loss per sample, shape (B,): use reduction='none' and do not average"
            )
        return out

    def __repr__(self) -> str:
        return f"loss({self.spec!r})"


def checked_loss(fn: LossFn, spec: str) -> LossFn:
    """``fn`` whose output is checked to be one loss per sample at every call; ``spec`` names it."""
    return _CheckedLoss(fn, spec)


def get_loss(name: str) -> LossFn:
    """``cross-entropy``, ``mse``, or ``pkg.module:fn`` / ``file.py:fn`` returning shape (B,)."""
    if name == "cross-entropy":
        return cross_entropy
    if name == "mse":
        return mse
    if is_callable_spec(name):
        fn = resolve_callable(name, "loss")
        if not callable(fn):
            raise ConfigError(f"loss {name!r} is not callable; name a function fn(logits, targets)")
        return _CheckedLoss(fn, name)
    raise ConfigError(
        f"unknown loss {name!r}; use one of: {', '.join(LOSS_NAMES)}, pkg.module:fn, file.py:fn"
    )


def correct_mask(logits: Tensor, targets: Tensor) -> Tensor | None:
    """Per-sample top-1 correctness (bool), or None when targets are not class indices.

    The class axis is dim 1, as for ``F.cross_entropy``; extra dims (e.g. pixels) must all be right.
    """
    if not is_class_targets(targets) or logits.ndim < 2:
        return None
    pred = logits.argmax(dim=1)
    if pred.shape != targets.shape:
        return None
    hit = pred == targets
    return hit.reshape(hit.shape[0], -1).all(dim=1)


def correct_count(logits: Tensor, targets: Tensor) -> int | None:
    """Number of samples whose top-1 prediction equals the target; None for non-class targets."""
    mask = correct_mask(logits, targets)
    return None if mask is None else int(mask.sum())
