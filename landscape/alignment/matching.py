"""``align(A, B)``: B's hidden units permuted to match A's, and the record of how (``Alignment``).

Weight matching (``weights``) or activation matching (``activations``) finds the permutations of
every group the model's graph or blocks allow (``permutation_spec``); the aligned copy of B gets
them applied to every tensor they reorder, parameters and running statistics alike.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from landscape.alignment import (
    ATTRIBUTE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    METHODS,
)
from landscape.alignment.activations import correlations, match_activations
from landscape.alignment.blocks import blocks_spec
from landscape.alignment.graph import Untraceable, trace_spec
from landscape.alignment.spec import Permutations, PermutationSpec, identity, permute_state
from landscape.alignment.weights import inner_products, match_weights
from landscape.errors import AlignError, first_line

if TYPE_CHECKING:
    from landscape.data import EvalData

CHECK_TOLERANCE = 1e-4  # |Δoutput| / (1 + max |output|) allowed between B and aligned B
ROUNDINGS = 50  # ... or this many roundings of a half-precision model's dtype, if more
PROBE_SAMPLES = 8  # samples (or tokens) the aligned model is checked on


@dataclass(frozen=True)
class Alignment:
    """How B was aligned to A. ``permutations[g][i]``: the unit of B in place i of group g.
    ``before``/``after``: per group, the inner product of the weights touching it (weights) or
    the mean correlation of matched units (activations), for B as given and as aligned; the
    totals: over all permuted weights, or all units. ``not_followed``: operations whose units
    stay where they are."""

    method: str
    measure: str
    permutations: dict[str, list[int]]
    before: dict[str, float]
    after: dict[str, float]
    total_before: float
    total_after: float
    passes: int = 1
    not_followed: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """A few lines for a terminal: groups, the totals before → after, what stayed."""
        moved = sum(1 for p in self.permutations.values() if p != sorted(p))
        lines = [
            f"{len(self.permutations)} permutation groups ({moved} reordered), method "
            f"{self.method}: total {self.measure} {self.total_before:.6g} -> "
            f"{self.total_after:.6g}"
        ]
        if self.not_followed:
            lines.append(f"units left in place at: {', '.join(self.not_followed[:3])}")
        return "\n".join(lines)


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any = None,
    method: str = DEFAULT_METHOD,
    *,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = DEFAULT_DEVICE,
) -> nn.Module:
    """A copy of ``model_b`` with its hidden units permuted to match ``model_a``'s; it computes
    what ``model_b`` computes. Neither argument is changed.

    ``method``: ``weights`` (weight matching) or ``activations`` (correlation of unit
    activations on ``data``: ``(x, y)`` tensors, a Dataset, a DataLoader or batches). With
    ``weights``, ``data`` is optional: its first samples check the result and, for a model
    torch.fx cannot trace, are what torch.export traces it on.
    ``seed``: the order weight matching visits the groups in. The result's ``alignment``
    attribute is an :class:`Alignment`. AlignError for models of other architectures, or one
    whose units cannot be permuted (naming the operation it could not follow)."""
    if method not in METHODS:
        raise AlignError(f"unknown alignment method {method!r}; choose one of {', '.join(METHODS)}")
    check_same_architecture(model_a, model_b)
    if data is not None:
        from landscape.data import as_eval_data

        data = as_eval_data(data)  # read once: a stream of batches may not run twice
        dtype = next((p.dtype for p in model_a.parameters() if p.is_floating_point()), None)
        data = data.with_inputs_in(dtype) if dtype is not None else data  # float64 arrays
    spec = permutation_spec(model_a, _probe_inputs(model_a, data) if data is not None else None)
    b_state = model_b.state_dict()
    if method == "weights":
        found = _by_weights(spec, model_a, b_state, seed)
    else:
        found = _by_activations(spec, model_a, model_b, data, batch_size, device)
    aligned = copy.deepcopy(model_b)
    perms = {g: torch.as_tensor(p) for g, p in found.permutations.items()}
    aligned.load_state_dict(permute_state(b_state, spec, perms))
    check_function(aligned, model_b, _probe_inputs(model_b, data))
    setattr(aligned, ATTRIBUTE, found)
    return aligned


def check_function(aligned: nn.Module, model_b: nn.Module, x: torch.Tensor | None) -> None:
    """The aligned B must compute what B computes: both run on ``x`` in eval mode (B's flags
    restored after), their outputs compared; AlignError when they differ by more than float32
    rounding, which would mean a group that is no symmetry of this model (a block laid out
    otherwise than ``blocks`` assumes). ``x`` None: nothing to run on (no data, not a
    transformers model)."""
    from landscape.engine import eval_mode

    if x is None:
        return
    x = x.to(next(model_b.parameters()).device)
    try:
        with eval_mode(model_b), eval_mode(aligned), torch.no_grad():
            ours, theirs = _tensor_of(aligned(x)), _tensor_of(model_b(x))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise AlignError(
            f"the models cannot run on the data (inputs of shape {tuple(x.shape[1:])}): "
            f"{first_line(exc)}; check the data"
        ) from None
    if ours is None or theirs is None:
        return
    gap = float((ours.float() - theirs.float()).abs().max())
    scale = 1.0 + float(theirs.float().abs().max())
    # permuted units sum in another order: rounding of the weights' dtype, not float32's alone
    eps = torch.finfo(theirs.dtype).eps if theirs.is_floating_point() else 0.0
    if not gap <= max(CHECK_TOLERANCE, ROUNDINGS * eps) * scale:  # NaN fails too
        raise AlignError(
            f"the aligned {type(model_b).__name__} computes other outputs than B (by up to "
            f"{gap:.3g}): its units are not laid out as landscape assumes, so it is not aligned"
        )


def _probe_inputs(model: nn.Module, data: EvalData | None) -> torch.Tensor | None:
    """A few inputs to check the aligned model on: the data's first samples, else random token
    ids for a transformers model (from a private generator)."""
    from landscape.hf import is_transformers_model

    if data is not None:
        return next(iter(data.batches(PROBE_SAMPLES)))[0]
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not is_transformers_model(model) or not isinstance(vocab, int):
        return None
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab, (2, PROBE_SAMPLES), generator=g)


def _tensor_of(out: Any) -> torch.Tensor | None:
    """A forward's output as one tensor: itself, its ``logits``, or a tuple's first."""
    out = getattr(out, "logits", out)
    if isinstance(out, tuple | list) and out:
        out = out[0]
    return out if isinstance(out, torch.Tensor) else None


def permutation_spec(model: nn.Module, example: torch.Tensor | None = None) -> PermutationSpec:
    """The model's permutation groups: its blocks for transformers models, else its fx graph,
    else (when fx cannot trace it and ``example`` inputs are given) its torch.export graph."""
    from landscape.hf import is_transformers_model

    if is_transformers_model(model):
        return blocks_spec(model)
    try:
        return trace_spec(model)
    except Untraceable as exc:
        if example is None:
            raise AlignError(
                f"{exc}; give data to trace it with torch.export instead, or write the forward "
                "without data-dependent Python control flow"
            ) from None
        from landscape.alignment.exported import export_spec

        device = next(model.parameters()).device
        return export_spec(model, example.to(device), str(exc))


def check_same_architecture(a: nn.Module, b: nn.Module) -> None:
    """Same class, same tensors, same shapes; AlignError naming the first difference."""
    for which, m in (("model_a", a), ("model_b", b)):
        if not isinstance(m, nn.Module):
            raise AlignError(f"{which} must be a torch.nn.Module, got a {type(m).__name__}")
    if type(a) is not type(b):
        raise AlignError(
            f"model A is a {type(a).__name__}, model B a {type(b).__name__}; alignment needs two "
            "models of one architecture"
        )
    sa, sb = a.state_dict(), b.state_dict()
    for name in list(sa) + [k for k in sb if k not in sa]:
        if name not in sa or name not in sb:
            which = "A" if name in sa else "B"
            raise AlignError(f"tensor {name} is in model {which} only; the models differ")
        if sa[name].shape != sb[name].shape:
            raise AlignError(
                f"tensor {name} has shape {tuple(sa[name].shape)} in model A and "
                f"{tuple(sb[name].shape)} in model B; the models differ in architecture"
            )


def _by_weights(
    spec: PermutationSpec, model_a: nn.Module, b_state: dict[str, torch.Tensor], seed: int
) -> Alignment:
    a_state = model_a.state_dict()
    names = {n for n, _ in model_a.named_parameters(remove_duplicate=False)}
    weights = {k: v for k, v in a_state.items() if k in names}  # running statistics excluded
    perms, passes = match_weights(spec, weights, b_state, seed)
    before, total_before = inner_products(spec, weights, b_state, identity(spec))
    after, total_after = inner_products(spec, weights, b_state, perms)
    return Alignment(
        "weights", "inner product", _as_lists(perms), before, after, total_before, total_after,
        passes, tuple(spec.not_followed),
    )  # fmt: skip


def _by_activations(
    spec: PermutationSpec,
    model_a: nn.Module,
    model_b: nn.Module,
    data: EvalData | None,
    batch_size: int,
    device: str,
) -> Alignment:
    from landscape.engine import resolve_device
    from landscape.models import sources

    if data is None:
        raise AlignError("method 'activations' needs data to run both models on; pass data")
    where = resolve_device(device)
    a, b = (sources.adopt(copy.deepcopy(m)).to(where).eval() for m in (model_a, model_b))
    batches = (x for x, _ in data.batches(batch_size, where))
    try:
        corr = {g: c.cpu() for g, c in correlations(spec, a, b, batches).items()}
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        shape = tuple(data.tensors("cpu")[0].shape[1:])
        raise AlignError(
            f"the models cannot run on the data (inputs of shape {shape}): {first_line(exc)}; "
            "check the data"
        ) from None
    perms = match_activations(corr, spec)
    units = sum(spec.sizes.values())
    before = {g: float(c.diagonal().mean()) for g, c in corr.items()}
    after = {
        g: float(c[torch.arange(len(p)), p].mean()) for g, c in corr.items() for p in [perms[g]]
    }
    return Alignment(
        "activations", "correlation", _as_lists(perms), before, after,
        sum(before[g] * spec.sizes[g] for g in spec.sizes) / units,
        sum(after[g] * spec.sizes[g] for g in spec.sizes) / units,
        1, tuple(spec.not_followed),
    )  # fmt: skip


def _as_lists(perms: Permutations) -> dict[str, list[int]]:
    return {g: [int(i) for i in p] for g, p in perms.items()}


__all__ = ["Alignment", "align", "permutation_spec"]
