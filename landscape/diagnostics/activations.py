"""What the forward pass shows: activation statistics, dead ReLU units and activation growth.

Activations are collected in one pass over the inspected batches, in eval mode under
``torch.inference_mode()``:

- a forward hook on every leaf module and every module that owns parameters records the
  module's output (RMS, mean, extremes, share of zeros, a histogram of the first batch);
- ReLU outputs are caught where they are computed, by a ``TorchFunctionMode`` that sees every
  call of ``F.relu``/``F.relu_``/``F.relu6``/``torch.relu``/``Tensor.relu`` -- ``nn.ReLU``
  modules call ``F.relu``, and the built-in LeNet and ResNets call ``F.relu`` directly, so both
  are covered. A ReLU inside an ``nn.ReLU``/``nn.ReLU6`` module is named after the module,
  any other after the layer that ran last before it (``relu(conv1)``). ReLUs written as
  ``clamp(min=0)`` or inside TorchScript code are not seen.

A unit of a ReLU output is a channel (dim 1) after a conv or a normalization layer and a feature
(last dim) after a linear layer. It is *dead* when its output is ≤ 0 for every inspected sample
and position: it passes nothing forward and gets no gradient, so it cannot recover.

Hooks and the mode are removed afterwards; the model's weights, buffers and training flags are
left as they were.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from landscape.diagnostics.findings import Finding
from landscape.diagnostics.weights import Histogram, histogram_of, layer_name, module_kind
from landscape.engine.reference import eval_mode, is_jitted

RELU_FUNCTIONS = (
    F.relu,
    F.relu_,
    F.relu6,
    torch.relu,
    torch.relu_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
)
RELU_MODULES = (nn.ReLU, nn.ReLU6)
LINEAR_KINDS = ("Linear", "Bilinear", "LazyLinear")  # units along the last dim
HISTOGRAM_SAMPLE = 20_000  # values of the first batch kept per output for its histogram

# dead-units: a layer that lost half of its ReLU units has lost half of its width (warning);
# one that lost all of them passes a constant forward and nothing upstream learns (error).
# With random weights a unit is dead at initialization only if its pre-activation is negative
# for every input, which is rare; trained networks keep most units alive too.
DEAD_WARNING = 0.5

# activation-growth: hidden RMS compared layer by layer (Linear/Conv outputs but the last, in
# forward order, starting from the input). A Kaiming-initialized ReLU layer keeps the RMS (ratio ≈ 1;
# the first layer ≈ sqrt(2) on non-centred inputs: 1.38 to 1.53 measured on digits MLPs, the
# next ones 0.9 to 1.14); Glorot shrinks it (0.66 to 1.08), PyTorch's default more (≈ 0.5). A
# ratio above GROWTH_FACTOR for GROWTH_RUN consecutive layers means the weights are too large
# for their fan-in (warning): two, so that a network with two hidden layers (input → h1 → h2,
# two ratios) can show it, and a Kaiming first layer's lone sqrt(2) does not; a truncated normal
# with std 0.5 gives ×3.4 to ×7 per layer. Once the run has grown the scale GROWTH_ERROR-fold,
# the logits are huge, the softmax saturates and reduced precision overflows (error).
# After training weights grow on purpose, so a trained network's run counts from
# GROWTH_RUN_TRAINED layers (info; a warning from GROWTH_ERROR).
GROWTH_FACTOR = 1.5
GROWTH_RUN = 2
GROWTH_RUN_TRAINED = 3
GROWTH_ERROR = 1e3


@dataclass
class ActivationStats:
    """One recorded output, accumulated over every inspected batch."""

    name: str  # module name, ``relu(layer)`` for a functional ReLU; ``#2`` on a second call
    kind: str  # module class, or ``F.relu``
    layer: str | None  # the layer that produced it (or ran last before a ReLU)
    role: str  # "layer" (a parameter layer's output), "relu" or "other"
    shape: tuple[int, ...]  # per-sample shape
    unit_dim: int | None = None  # ReLU outputs: the dim of the units
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    zeros: int = 0
    nonfinite: int = 0
    unit_max: torch.Tensor | None = None  # per unit: max over samples and positions
    sample: np.ndarray | None = field(default=None, repr=False)  # first batch, for histograms

    def update(self, out: torch.Tensor) -> None:
        x = out.detach()
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        total, norm = x.sum(), torch.linalg.vector_norm(x)  # one pass each, no float64 copy
        if not (torch.isfinite(total) and torch.isfinite(norm)):  # inf/NaN, or a norm overflow
            finite = torch.isfinite(x)
            self.nonfinite += int(x.numel() - finite.sum())
            x = x[finite].double()  # float64: squares of values above ~1e19 overflow float32
            total, norm = x.sum(), torch.linalg.vector_norm(x)
        self._accumulate(x, float(total), float(norm))
        if self.unit_dim is not None and out.ndim > self.unit_dim:
            dims = [d for d in range(out.ndim) if d != self.unit_dim]
            peak = out.detach().amax(dim=dims).float().cpu()
            self.unit_max = peak if self.unit_max is None else torch.maximum(self.unit_max, peak)
        if self.sample is None:
            flat = out.detach().flatten()
            step = max(1, flat.numel() // HISTOGRAM_SAMPLE)
            self.sample = flat[::step][:HISTOGRAM_SAMPLE].float().cpu().numpy()

    def _accumulate(self, values: torch.Tensor, total: float, norm: float) -> None:
        """Add finite ``values`` (with their sum and L2 norm) to the running statistics."""
        n = values.numel()
        if n == 0:
            return
        lo, hi = torch.aminmax(values)
        self.count += n
        self.total += total
        self.total_sq += norm * norm
        self.lo, self.hi = min(self.lo, float(lo)), max(self.hi, float(hi))
        self.zeros += n - int(torch.count_nonzero(values))

    @property
    def rms(self) -> float:
        return math.sqrt(self.total_sq / self.count) if self.count else math.nan

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def std(self) -> float:  # population std over every finite value
        return (
            math.sqrt(max(self.total_sq / self.count - self.mean**2, 0.0))
            if self.count
            else math.nan
        )

    @property
    def units(self) -> int | None:
        return None if self.unit_max is None else self.unit_max.numel()

    @property
    def dead(self) -> int | None:
        return None if self.unit_max is None else int((self.unit_max <= 0).sum())

    @property
    def dead_fraction(self) -> float | None:
        return None if not self.units else self.dead / self.units

    def histogram(self) -> Histogram | None:
        return None if self.sample is None else histogram_of(torch.from_numpy(self.sample))

    def to_dict(self) -> dict[str, Any]:
        hist = self.histogram()
        return {
            "name": self.name,
            "kind": self.kind,
            "layer": self.layer,
            "role": self.role,
            "shape": list(self.shape),
            "rms": self.rms,
            "mean": self.mean,
            "std": self.std,
            "min": self.lo if self.count else None,
            "max": self.hi if self.count else None,
            "zero_fraction": self.zeros / self.count if self.count else None,
            "nonfinite": self.nonfinite,
            "units": self.units,
            "dead": self.dead,
            "dead_fraction": self.dead_fraction,
            "histogram": hist.to_dict() if hist else None,
        }


@dataclass
class ForwardResult:
    """What one pass over the inspected batches gave."""

    records: list[ActivationStats]  # in forward order (of the first batch)
    hooked: bool  # False when no layer could be hooked (TorchScript, torch.export)
    samples: int
    input_rms: float
    first_output: torch.Tensor | None  # the model's output on the first batch (on the CPU)
    first_targets: torch.Tensor | None


class _Recorder(TorchFunctionMode):
    """Forward hooks name the running module; the mode catches ReLU calls wherever they are."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.stats: dict[str, ActivationStats] = {}
        self.stack: list[tuple[str, nn.Module]] = []
        self.owners = {
            n for n, m in model.named_modules() if any(True for _ in m.parameters(False))
        }
        self.kinds = {n: module_kind(m) for n, m in model.named_modules()}
        self.layer_kinds = {layer_name(n): k for n, k in self.kinds.items()}
        self.calls: Counter[str] = Counter()  # per forward: how often each name was recorded
        self.last_layer: str | None = None
        self.layer_ran = False  # a module owning parameters ran as a module (hooks saw it)

    def begin_batch(self) -> None:
        self.calls.clear()
        self.stack.clear()
        self.last_layer = None

    def attach(self, model: nn.Module) -> list[Any]:
        handles = []
        for name, module in model.named_modules():
            if name in self.owners or not any(True for _ in module.children()):
                handles.append(module.register_forward_pre_hook(self._pre(name)))
                handles.append(module.register_forward_hook(self._post(name)))
        return handles

    def _pre(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append((name, module))

        return hook

    def _post(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.stack and self.stack[-1][0] == name:
                self.stack.pop()
            if isinstance(module, RELU_MODULES):
                return  # its F.relu call was recorded by the mode, under this module's name
            owner = name in self.owners
            label = layer_name(name)
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                layer = label if owner else self.last_layer
                kind = self.kinds.get(name, "")
                self._record(label, kind, layer, "layer" if owner else "other", output)
            if owner:
                self.last_layer = label
                self.layer_ran = True

        return hook

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if any(func is f for f in RELU_FUNCTIONS) and isinstance(out, torch.Tensor):
            self._relu(out, getattr(func, "__name__", "relu"))
        return out

    def _relu(self, out: torch.Tensor, fname: str) -> None:
        top = self.stack[-1] if self.stack else None
        if top is not None and isinstance(top[1], RELU_MODULES):
            name, kind, layer = layer_name(top[0]), module_kind(top[1]), self.last_layer
        elif top is not None and top[0] in self.owners:  # a ReLU inside a layer's own forward
            layer = layer_name(top[0])
            name, kind = f"{fname}({layer})", f"F.{fname}"
        else:
            layer = self.last_layer
            name, kind = f"{fname}({layer or 'input'})", f"F.{fname}"
        self._record(name, kind, layer, "relu", out)

    def _record(
        self, name: str, kind: str, layer: str | None, role: str, out: torch.Tensor
    ) -> None:
        self.calls[name] += 1
        key = name if self.calls[name] == 1 else f"{name}#{self.calls[name]}"
        if key not in self.stats:
            unit_dim = None
            if role == "relu" and out.ndim >= 2:
                linear = self.layer_kinds.get(layer or "", "") in LINEAR_KINDS
                unit_dim = out.ndim - 1 if linear else 1
            self.stats[key] = ActivationStats(
                key, kind, layer, role, tuple(out.shape[1:]), unit_dim
            )
        self.stats[key].update(out)


def run_forward(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> ForwardResult:
    """One pass over ``batches`` recording activations; the model is left as it was."""
    hookable = not is_jitted(model)  # TorchScript modules refuse Python hooks
    recorder = _Recorder(model) if hookable else None
    handles = recorder.attach(model) if recorder else []
    samples, input_sq, input_count = 0, 0.0, 0
    first_out = first_y = None
    try:
        with eval_mode(model), torch.inference_mode(), _maybe(recorder):
            for x, y in batches:
                if recorder:
                    recorder.begin_batch()
                out = model(x)
                samples += len(x)
                if x.is_floating_point():
                    input_sq += float(torch.linalg.vector_norm(x.float())) ** 2
                    input_count += x.numel()
                if first_out is None:
                    first_out = _first_tensor(out)
                    first_y = y.detach().cpu() if isinstance(y, torch.Tensor) else None
    finally:
        for h in handles:
            h.remove()
    # a torch.export program runs its graph's ops, not its submodules: no layer hook fires
    hooked = bool(recorder and recorder.layer_ran)
    records = list(recorder.stats.values()) if hooked else []
    input_rms = math.sqrt(input_sq / input_count) if input_count else math.nan
    return ForwardResult(records, hooked, samples, input_rms, first_out, first_y)


@contextlib.contextmanager
def _maybe(mode: TorchFunctionMode | None) -> Iterator[None]:
    if mode is None:
        yield
    else:
        with mode:
            yield


def _first_tensor(out: Any) -> torch.Tensor | None:
    """The model's output, or its first tensor when it returns a tuple or a dict."""
    if isinstance(out, torch.Tensor):
        return out.detach().float().cpu()
    items = out.values() if isinstance(out, dict) else out if isinstance(out, list | tuple) else ()
    return next((_first_tensor(v) for v in items if isinstance(v, torch.Tensor)), None)


# --- dead units ---------------------------------------------------------------------------------


def dead_unit_findings(records: list[ActivationStats], samples: int) -> list[Finding]:
    """A ReLU output whose units are ≤ 0 for every sample: warning from DEAD_WARNING, error at all."""
    findings = []
    for r in records:
        if r.role != "relu" or not r.units or r.dead_fraction < DEAD_WARNING:
            continue
        every = r.dead == r.units
        what = "channels" if r.unit_dim == 1 and len(r.shape) > 1 else "units"
        where = f"the ReLU after {r.layer}" if r.layer and r.layer != r.name else r.name
        message = (
            f"{r.dead} of {r.units} {what} of {where} ({r.name}) output zero for all {samples} "
            "inspected samples: "
            + (
                "the layer passes a constant forward and nothing before it learns; "
                if every
                else "dead units get no gradient and never recover; "
            )
            + "check for very negative biases, too large a learning rate, or use a "
            "smaller init scale or LeakyReLU"
        )
        findings.append(
            Finding("dead-units", r.layer or r.name, "error" if every else "warning", message)
        )
    return findings


# --- activation growth --------------------------------------------------------------------------


def depth_scale(
    records: list[ActivationStats], filter_layers: set[str], input_rms: float
) -> list[tuple[str, float]]:
    """(name, RMS) of the input, then of every Linear/Conv output in forward order."""
    scale = [("input", input_rms)] if math.isfinite(input_rms) else []
    seen = set()
    for r in records:
        if r.role == "layer" and r.name in filter_layers and r.name not in seen:
            seen.add(r.name)
            scale.append((r.name, r.rms))
    return scale


def growth_findings(
    scale: list[tuple[str, float]], records: list[ActivationStats], trained: bool = False
) -> list[Finding]:
    """Runs of GROWTH_RUN (after training GROWTH_RUN_TRAINED) or more consecutive hidden layers
    whose RMS grows by more than GROWTH_FACTOR each, and activations that overflow.

    ``scale`` is ``depth_scale``'s: the input, then every Linear/Conv output. The last of them
    (the output layer) is left out: its scale is the logits', which the saturation check judges,
    and a trained classifier's logits grow on purpose. After training (``trained``) a run is
    info, or a warning once it reaches GROWTH_ERROR: trained weights grow, so only extreme
    growth is suspect there.
    """
    findings = []
    overflow = next((r for r in records if r.role == "layer" and r.nonfinite), None)
    if overflow is not None:
        findings.append(
            Finding(
                "activation-growth",
                overflow.name,
                "error",
                f"{overflow.nonfinite} activations of {overflow.name} are inf or NaN: the "
                "activations overflow; use a smaller initialization scale (Kaiming or Glorot)",
            )
        )
    hidden = scale[:-1]
    for start, end in _growth_runs(hidden, GROWTH_RUN_TRAINED if trained else GROWTH_RUN):
        (first, rms0), (last, rms1) = hidden[start - 1], hidden[end]
        total = rms1 / rms0
        per_layer = total ** (1 / (end - start + 1))
        severe = total >= GROWTH_ERROR
        severity = (
            ("warning" if severe else "info") if trained else ("error" if severe else "warning")
        )
        findings.append(
            Finding(
                "activation-growth",
                last,
                severity,
                f"hidden activations grow ×{per_layer:.3g} per layer for {end - start + 1} "
                f"layers, from {first} to {last} (RMS {rms0:.3g} → {rms1:.3g}, ×{total:.3g}): "
                "the weights are too large for their fan-in; use Kaiming (ReLU) or Glorot "
                "initialization, or normalization layers",
            )
        )
    return findings


def _growth_runs(scale: list[tuple[str, float]], least: int = GROWTH_RUN) -> list[tuple[int, int]]:
    """(first, last) indices into ``scale`` of each run of at least ``least`` consecutive
    ratios above GROWTH_FACTOR."""
    grows = []
    for k in range(1, len(scale)):
        before, after = scale[k - 1][1], scale[k][1]
        ok = math.isfinite(before) and math.isfinite(after) and before > 0
        grows.append(ok and after / before > GROWTH_FACTOR)
    runs, start = [], None
    for k, g in enumerate(grows, start=1):
        if g and start is None:
            start = k
        if not g and start is not None:
            runs.append((start, k - 1))
            start = None
    if start is not None:
        runs.append((start, len(scale) - 1))
    return [(a, b) for a, b in runs if b - a + 1 >= least]
