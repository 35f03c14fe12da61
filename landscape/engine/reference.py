"""The reference evaluator: one grid point at a time, the oracle for every faster path.

Each point is evaluated with ``torch.func.functional_call(model, θ + a·d1 + b·d2, x)`` under
``torch.inference_mode()``: the weights of a point live in a fresh dict, the caller's model is never
written. The loss is the exact mean over samples: per-sample losses are summed in float64 and
divided by N (not a mean of batch means). Accuracy is the fraction of correct top-1 predictions.

TorchScript modules refuse ``functional_call`` ("the stateless API can't be used with Jitted
modules"); for them the evaluator keeps a private deep copy and writes each point's tensors into
that copy, so the caller's model is still never touched.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call

from landscape import params
from landscape.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CorrectFn = Callable[[torch.Tensor, torch.Tensor], "int | None"]


@dataclass(frozen=True)
class PointResult:
    loss: float  # mean loss over the evaluation set (NaN/inf are kept as they are)
    acc: float  # fraction correct in [0, 1]; NaN when targets are not class labels


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"device {name!r} does not exist ({torch.cuda.device_count()} GPUs); pick another index"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"device {name!r} requested but MPS is not available; use --device cpu")
    return device


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode for the duration, then restore each one's flag."""
    flags = [(m, m.training) for m in model.modules()]
    # torch.export programs fix their mode when exported and refuse eval()/train()
    with contextlib.suppress(NotImplementedError):
        model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class ReferenceEvaluator:
    """Evaluate points ``centre + Σ c_k·d_k`` one at a time over a fixed evaluation set."""

    def __init__(
        self,
        model: torch.nn.Module,
        centre: dict[str, torch.Tensor],
        directions: Sequence[dict[str, torch.Tensor]],
        batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
        loss_fn: LossFn,
        correct_fn: CorrectFn,
    ) -> None:
        self.model = model
        # jitted modules cannot be called functionally: evaluate on a private copy instead
        self._private = copy.deepcopy(model) if isinstance(model, torch.jit.ScriptModule) else None
        self.centre = centre
        self.directions = list(directions)
        self.batches = batches
        self.loss_fn = loss_fn
        self.correct_fn = correct_fn

    def evaluate(self, coords: tuple[float, ...]) -> PointResult:
        """Loss and accuracy at one point; ``coords`` has one entry per direction."""
        point = params.combine(self.centre, self.directions, coords)
        forward = self.forward(point)
        loss_sum, correct, n, acc_known = 0.0, 0, 0, True
        with eval_mode(self.model), torch.inference_mode():
            for x, y in self.batches():
                logits = forward(x)
                loss_sum += float(self.loss_fn(logits, y).double().sum())
                c = self.correct_fn(logits, y)
                acc_known = acc_known and c is not None
                correct += c or 0
                n += int(y.shape[0])
        if n == 0:
            return PointResult(math.nan, math.nan)
        return PointResult(loss_sum / n, correct / n if acc_known else math.nan)

    def forward(self, point: dict[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function ``x → logits`` of the model at ``point`` (call it in eval mode, no grad)."""
        if self._private is None:
            return lambda x: functional_call(self.model, point, (x,))
        private = self._private
        with torch.no_grad():
            for name, t in [*private.named_parameters(), *private.named_buffers()]:
                t.copy_(point[name])
        private.eval()
        return private

    def evaluate_many(self, points: Sequence[tuple[float, ...]]) -> list[PointResult]:
        return [self.evaluate(p) for p in points]
