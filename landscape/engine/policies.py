"""BatchNorm policies: which statistics normalize the activations at a grid point (DESIGN §4).

- ``eval``: the checkpoint's running statistics, as in Li et al. (the default).
- ``train``: the statistics of each evaluated batch, nothing tracked. Done on a private copy of
  the model whose BN layers have no running buffers, so BN normalizes with batch statistics
  while every other layer (dropout, ...) stays in eval mode.
- ``recalibrate``: at every point, re-estimate the running statistics from ``bn_batches``
  training batches (cumulative average from fresh statistics, as Garipov et al. do), then
  evaluate in eval mode with them. Done on a private copy whose BN layers alone are in train
  mode with ``momentum=None``; the re-estimated buffers are fresh tensors, never the caller's.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call

from landscape.errors import ConfigError

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


def bn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BN_TYPES)]


def check_policy(model: nn.Module, policy: str) -> None:
    """Policies other than eval need a Python module they can copy and adjust."""
    if policy == "eval":
        return
    if isinstance(model, torch.jit.ScriptModule) or type(model).__name__.startswith("GraphModule"):
        raise ConfigError(
            f"--bn {policy} needs an nn.Module with BatchNorm layers it can adjust; a TorchScript or "
            "torch.export model is fixed in its mode: use --bn eval or a factory model"
        )


def batch_stats_model(model: nn.Module) -> nn.Module:
    """A private copy whose BN layers always use batch statistics and track nothing."""
    private = copy.deepcopy(model).eval()
    for _, m in bn_modules(private):
        m.track_running_stats = False
        m.running_mean = None
        m.running_var = None
        m.num_batches_tracked = None
    return private


def recalibration_model(model: nn.Module) -> nn.Module:
    """A private copy with BN layers in train mode accumulating a cumulative average."""
    private = copy.deepcopy(model).eval()
    for _, m in bn_modules(private):
        m.train()
        m.momentum = None  # cumulative moving average over the batches seen
    return private


def bn_buffer_names(model: nn.Module) -> list[str]:
    names = []
    for prefix, m in bn_modules(model):
        for b in ("running_mean", "running_var", "num_batches_tracked"):
            if getattr(m, b, None) is not None:
                names.append(f"{prefix}.{b}" if prefix else b)
    return names


def fresh_bn_buffers(
    state: dict[str, torch.Tensor], names: list[str]
) -> OrderedDict[str, torch.Tensor]:
    """Running statistics reset as a new BN layer has them: mean 0, variance 1, count 0."""
    out = OrderedDict()
    for name in names:
        t = state[name]
        if name.endswith("running_var"):
            out[name] = torch.ones_like(t)
        else:
            out[name] = torch.zeros_like(t)
    return out


def recalibrate(
    private: nn.Module,
    point: dict[str, torch.Tensor],
    names: list[str],
    train_batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]],
) -> OrderedDict[str, torch.Tensor]:
    """Re-estimated BN buffers at ``point`` (the point's other tensors are used as they are)."""
    stats = fresh_bn_buffers(point, names)
    with torch.inference_mode():
        for x, _ in train_batches():
            # BN layers update the tensors in ``stats`` in place: the point's own statistics
            functional_call(private, {**point, **stats}, (x,))
    return stats
