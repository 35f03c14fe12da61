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


def get_loss(name: str, task: str | None = None) -> LossFn:
    """``cross-entropy``, ``mse``, or ``pkg.module:fn`` / ``file.py:fn`` returning shape (B,).

    ``task``: the model's (``tasks.task_of``); a causal LM's cross-entropy is the next-token one."""
    if name == "cross-entropy":
        return NextTokenCrossEntropy() if task == "causal-lm" else cross_entropy
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


class NextTokenCrossEntropy:
    """A causal LM's loss: the cross-entropy of each predicted token, position by position.

    The logits at position t, ``(N, T, V)``, predict the token at t + 1, so position t's loss is
    ``-log softmax(logits[:, t])[targets[:, t + 1]]``: ``(N, T - 1)`` losses. A position counts when
    its target is a real token (``targets[:, t + 1] >= 0``; padding is negative, see
    ``landscape.hf.PAD``). The engine sums the counted positions of the whole set and divides by
    their number: the exact token-weighted mean over every predicted, non-padding token (not a mean
    of sequence means). Accuracy: the fraction of counted positions whose argmax is the next token.
    """

    per_token = True
    name = "next-token cross-entropy"

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        pred, nxt = logits[:, :-1], targets[:, 1:]
        flat = F.cross_entropy(
            pred.reshape(-1, pred.shape[-1]), nxt.clamp_min(0).reshape(-1), reduction="none"
        )
        return flat.view(nxt.shape)

    @staticmethod
    def counted(targets: Tensor) -> Tensor:
        """``(N, T - 1)`` bool: the positions whose next token is real."""
        return targets[:, 1:] >= 0

    @staticmethod
    def hits(logits: Tensor, targets: Tensor) -> Tensor:
        """``(N, T - 1)`` bool: the argmax at t is the token at t + 1."""
        return logits[:, :-1].argmax(dim=-1) == targets[:, 1:]

    def __repr__(self) -> str:
        return "loss('next-token cross-entropy')"


def is_per_token(loss_fn: LossFn) -> bool:
    return bool(getattr(loss_fn, "per_token", False))


def score_batch(
    loss_fn: LossFn, logits: Tensor, targets: Tensor, k: int
) -> tuple[Tensor, Tensor | None]:
    """One batch of ``k`` points' outputs, stacked point-major: ``logits`` (k·b, ...) and
    ``targets`` (k·b, ...). Returns the losses of the counted units, ``(k, n)`` (a unit is a
    sample, or a predicted token for a per-token loss), and each point's number of correct
    units, ``(k,)`` float64, or None when the targets are not class labels."""
    if is_per_token(loss_fn):
        counted = loss_fn.counted(targets).reshape(k, -1)[0]  # the same targets at every point
        losses = loss_fn(logits, targets).reshape(k, -1)[:, counted]
        hits = loss_fn.hits(logits, targets).reshape(k, -1)[:, counted]
        return losses, hits.double().sum(dim=1)
    losses = loss_fn(logits, targets).reshape(k, -1)
    mask = correct_mask(logits, targets)
    return losses, None if mask is None else mask.reshape(k, -1).double().sum(dim=1)


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
