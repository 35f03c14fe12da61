"""Alignment for the interpolation path (``compute --direction interpolate --align``).

The run hands the direction builder an ``align_target(state, method)``: B's checked state in,
B's state with its hidden units permuted to match the centre A out (``align`` on two copies of
the run's model), with a short summary of the permutations that the surface file keeps in its
directions' ``alignment`` attribute and ``info`` prints. Activation matching runs both models on
the run's own evaluation data, so the path and the matching see the same samples.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from landscape.alignment import DEFAULT_SEED

if TYPE_CHECKING:
    from landscape.alignment.matching import Alignment
    from landscape.data import EvalData

StateDict = OrderedDict[str, torch.Tensor]


def target_aligner(
    model: nn.Module,
    centre: dict[str, torch.Tensor],
    data: EvalData,
    *,
    batch_size: int,
    device: torch.device | str,
) -> Callable[[StateDict, str], tuple[StateDict, dict[str, Any]]]:
    """``align_target(state, method)`` for the run of ``model`` at ``centre`` on ``data``.

    Nothing is copied until a target is aligned; ``model`` itself is left as it is."""

    def align_target(state: StateDict, method: str) -> tuple[StateDict, dict[str, Any]]:
        from landscape.alignment.matching import align  # scipy and torch.fx: on first use

        model_a, model_b = _copy_at(model, centre), _copy_at(model, state)
        aligned = align(
            model_a, model_b, data, method,
            seed=DEFAULT_SEED, batch_size=batch_size, device=str(device),
        )  # fmt: skip
        out = OrderedDict((k, v.detach().cpu()) for k, v in aligned.state_dict().items())
        return out, summary_record(aligned.alignment)

    return align_target


def _copy_at(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` holding ``state``, in eval mode (its BatchNorm statistics frozen)."""
    copied = copy.deepcopy(model)
    copied.load_state_dict(state)
    return copied.eval()


def summary_record(found: Alignment) -> dict[str, Any]:
    """What a surface file keeps of an alignment: the method, how many groups and how many of
    them were reordered, the matched measure before → after (the permutations themselves are
    the aligned checkpoint's business: ``landscape align`` writes them)."""
    return {
        "method": found.method,
        "measure": found.measure,
        "groups": len(found.permutations),
        "reordered": sum(1 for p in found.permutations.values() if p != sorted(p)),
        "units": sum(len(p) for p in found.permutations.values()),
        "total_before": found.total_before,
        "total_after": found.total_after,
        "passes": found.passes,
        "not_followed": list(found.not_followed),
    }
