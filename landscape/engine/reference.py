"""The reference evaluator: one grid point at a time, the oracle for every faster path.

Each point is evaluated with ``torch.func.functional_call(model, θ + a·d1 + b·d2, x)`` under
``torch.inference_mode()``: the weights of a point live in a fresh dict, the caller's model is never
written. The loss is the exact mean over samples: per-sample losses are summed in float64 and
divided by N (not a mean of batch means). Accuracy is the fraction of correct top-1 predictions.

Options that change only speed (channels-last memory format, ``torch.compile``) or precision
(autocast dtype) and the BatchNorm policy (see ``policies``) are shared with the batched path
through :class:`PointEvaluatorBase`.

TorchScript modules refuse ``functional_call`` ("the stateless API can't be used with Jitted
modules"); for them the evaluator keeps a private deep copy and writes each point's tensors into
that copy, so the caller's model is still never touched.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call

from landscape import params
from landscape.engine import policies
from landscape.engine.frontier import FrontierStore
from landscape.errors import ConfigError
from landscape.losses import score_batch
from landscape.quantities import PointStats

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class PointResult:
    """One point's quantities by suffix (``landscape.quantities.TABLE``): ``loss``, the mean over
    the evaluation set (NaN/inf kept as they are), ``acc``, the fraction correct (NaN when the
    targets are not class labels), ``loss_se``, the mean's standard error, ..."""

    values: dict[str, float]

    @property
    def loss(self) -> float:
        return self.values["loss"]

    @property
    def acc(self) -> float:
        return self.values["acc"]


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


def is_jitted(model: torch.nn.Module) -> bool:
    return isinstance(model, torch.jit.ScriptModule)


def has_conv2d(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def to_channels_last(tensors: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """4-D tensors (conv weights) in channels-last layout; elementwise sums keep the layout."""
    return OrderedDict(
        (k, v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v)
        for k, v in tensors.items()
    )


class PointEvaluatorBase:
    """What both paths share: the model to call, the data, the loss, and the options.

    ``bn`` is the BatchNorm policy (eval, train, recalibrate; recalibrate needs ``train_batches``),
    ``channels_last`` and ``compile`` change only speed, ``autocast`` (a dtype) the precision of
    the forward pass; the loss is always summed in float64. ``module``: what to call in place of
    the model, with the same parameter and buffer names (the BatchNorm-folded model of
    ``engine.fold``); not under ``bn train``, whose forward is a private copy. ``split``: the
    forward split at the moved tensors (``engine.split``), taken under ``bn eval`` only: each
    batch's frontier is computed once at θ (:meth:`prime`) and the points run its dependent part.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        centre: dict[str, torch.Tensor],
        directions: Sequence[dict[str, torch.Tensor]],
        batches: Batches,
        loss_fn: LossFn,
        *,
        bn: str = "eval",
        train_batches: Batches | None = None,
        channels_last: bool = False,
        compile: bool = False,
        autocast: torch.dtype | None = None,
        module: torch.nn.Module | None = None,
        split: Any = None,
    ) -> None:
        policies.check_policy(model, bn)
        if bn == "recalibrate" and train_batches is None:
            raise ConfigError(
                "--bn recalibrate needs training batches to re-estimate statistics from"
            )
        self.model = model
        self.bn = bn
        self.channels_last = channels_last and not is_jitted(model)
        self.centre = to_channels_last(centre) if self.channels_last else OrderedDict(centre)
        self.directions = [to_channels_last(d) if self.channels_last else d for d in directions]
        self._batches = batches
        self.train_batches = train_batches
        self.loss_fn = loss_fn
        self.autocast = autocast
        self.compile = compile and not is_jitted(model)
        self.bn_names = policies.bn_buffer_names(model) if bn != "eval" else []
        # the module each forward pass calls: the caller's model, or a private copy
        if is_jitted(model):
            self.module = copy.deepcopy(model)
        elif bn == "train":
            self.module = policies.batch_stats_model(model)
        else:
            self.module = module if module is not None else model
        self._recal_module = policies.recalibration_model(model) if bn == "recalibrate" else None
        # the forward split at the moved tensors (an ``engine.split.Split``): the static part's
        # frontier is computed once per batch, at θ, and kept (in memory or on disk, as the
        # split's ``store`` says) for every point (and every repeat: ``along`` copies share it)
        self.split = split if self.bn == "eval" and not is_jitted(self.model) else None
        self._frontiers: list[FrontierStore] = [self._new_store()]  # shared by copies

    # --- data ----------------------------------------------------------------------------------

    @property
    def data(self) -> Batches:
        """The evaluation batches as given (before padding and layout)."""
        return self._batches

    def with_batches(self, batches: Batches) -> PointEvaluatorBase:
        """The same evaluator (layout, compiled call, working copy) over other batches."""
        other = copy.copy(self)
        other._batches = batches
        other._frontiers = [other._new_store()]  # other data: other frontiers
        return other

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Evaluation batches ``(x, y)`` to feed ``forward``; ``x`` may have padding rows past
        ``len(y)``, whose outputs the caller drops (see ``_padded``)."""
        batches = self._batches()
        if self.compile and self.bn != "train":
            batches = _padded(batches)
        return self._in_layout(batches)

    def _train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.train_batches is not None  # checked in __init__
        return self._in_layout(self.train_batches())

    def _in_layout(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Image batches in the evaluator's memory layout (channels-last when it is on)."""
        for x, y in batches:
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    # --- a split's frontiers (``engine.split``) ----------------------------------------------

    def _inputs(self) -> Iterator[tuple[object, torch.Tensor]]:
        """What ``forward`` takes, batch by batch: the data, or under a split each batch's
        frontier, computed at θ on the first point and kept for the others."""
        if self.split is None:
            yield from self.batches()
            return
        self.prime()
        yield from self._frontiers[0]

    def prime(self) -> None:
        """Compute and keep every batch's frontier at θ, unless kept already (a split only); a
        spilled store writes each batch's to disk before the next is computed."""
        kept = self._frontiers[0]
        if self.split is None or kept:
            return
        with eval_mode(self.module), torch.inference_mode(), self.autocast_context():
            kept.extend((self.split.static(self.centre, x), y) for x, y in self.batches())

    def first_batch(self) -> PointEvaluatorBase:
        """The same evaluator over its first batch alone (a warm-up); under a split, every
        batch's frontier is kept first and the copy reads the first one's, computed once."""
        other = self.with_batches(lambda: itertools.islice(self._batches(), 1))
        if self.split is not None:
            self.prime()
            other._frontiers = [self._frontiers[0].head(1)]
        return other

    def _new_store(self) -> FrontierStore:
        return FrontierStore(getattr(self.split, "store", "memory"))

    def close(self) -> None:
        """Forget the kept frontiers and remove a spilled store's folder (copies share them)."""
        self._frontiers[0].close()

    # --- one point's tensors -----------------------------------------------------------------

    def point_state(
        self, coords: tuple[float, ...], work: params.Workspace | None = None
    ) -> OrderedDict[str, torch.Tensor]:
        """θ + Σ c_k·d_k with the buffers the BN policy calls for; ``work``: reused buffers for
        the moved tensors (valid until the next point)."""
        point = params.combine(self.centre, self.directions, coords, work)
        if self.bn == "train":
            for name in self.bn_names:  # the private copy normalizes with batch statistics
                point.pop(name, None)
        elif self.bn == "recalibrate":
            point.update(
                policies.recalibrate(self._recal_module, point, self.bn_names, self._train_batches)
            )
        return point

    def autocast_context(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        device_type = next(iter(self.centre.values())).device.type
        return torch.autocast(device_type, dtype=self.autocast)

    def describe(self) -> dict[str, object]:
        return {
            "bn": self.bn,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "autocast": str(self.autocast).replace("torch.", "") if self.autocast else None,
            "split": self.split is not None,
        }


def _padded(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A short last batch padded with zero samples to the first batch's size.

    A compiled forward is specialized to its input shape: without padding, a data set that is not
    a multiple of the batch size would compile a second graph for its last batch. Padding is exact
    for the real rows wherever samples do not interact (eval-mode BN, per-sample layers); the
    ``train`` BN policy, whose batch statistics would change, never gets here.
    """
    full = 0
    for x, y in batches:
        full = full or int(x.shape[0])
        if x.shape[0] < full:
            x = torch.cat([x, x.new_zeros((full - x.shape[0], *x.shape[1:]))])
        yield x, y


class ReferenceEvaluator(PointEvaluatorBase):
    """Evaluate points ``centre + Σ c_k·d_k`` one at a time over a fixed evaluation set."""

    name = "reference"
    points_per_call = False
    runs_scripted = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._work = params.Workspace()  # one working copy of the moved tensors, reused
        self._compiled = None
        if self.compile:
            if self.split is not None:
                call = self.split.dynamic
            else:

                def call(point: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
                    return functional_call(self.module, point, (x,))

            self._compiled = torch.compile(call, dynamic=False)

    def evaluate(self, coords: tuple[float, ...]) -> PointResult:
        """Loss and accuracy at one point; ``coords`` has one entry per direction."""
        point = self.point_state(coords, self._work)
        forward = self.forward(point)
        stats = PointStats.zeros(1)
        with eval_mode(self.module), torch.inference_mode(), self.autocast_context():
            for x, y in self._inputs():
                logits = forward(x)[: y.shape[0]]  # padding rows dropped
                losses, correct = score_batch(self.loss_fn, logits.float(), y, 1)
                stats.add(losses.detach().cpu(), None if correct is None else correct.cpu())
        return PointResult(stats.values()[0])

    def forward(self, point: dict[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function ``x → logits`` of the model at ``point`` (call it in eval mode, no grad)."""
        if is_jitted(self.model):
            private = self.module
            with torch.no_grad():
                for name, t in [*private.named_parameters(), *private.named_buffers()]:
                    t.copy_(point[name])
            private.eval()
            return private
        if self._compiled is not None:
            compiled = self._compiled
            return lambda x: compiled(point, x)
        if self.split is not None:  # x: a batch's frontier
            dynamic = self.split.dynamic
            return lambda x: dynamic(point, x)
        return lambda x: functional_call(self.module, point, (x,))

    def evaluate_block(self, points: Sequence[tuple[float, ...]]) -> list[PointResult]:
        return [self.evaluate(p) for p in points]

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, **super().describe()}
