"""Activation matching (Ainsworth et al. 2023, §3.1; Entezari et al. 2022; Li et al. 2016).

Run A and B on the same data and read, for every group, the activations its units feed into the
next layer (the input of the layer that reads them: after the nonlinearity, pooling and any
residual sum). Unit i of A and unit j of B are compared by the Pearson correlation of their
activations over the samples (and, for conv channels, the spatial positions; for a unit owning a
block of entries, the mean over its entries):

    corr[i, j] = cov(a_i, b_j) / (σ(a_i) σ(b_j)),

and B's units are assigned to A's by one linear assignment per group maximizing Σ_i corr[i, π(i)].
Activations do not depend on how other groups are ordered, so the groups are independent.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack

import torch
from torch import nn

from landscape.alignment.spec import Permutations, PermutationSpec, Probe
from landscape.errors import AlignError

EPS = 1e-12  # a unit that never varies (a dead ReLU) correlates with nothing: 0, not NaN


class Moments:
    """Running sums of one probe's activations in A and B, for their correlations."""

    def __init__(self) -> None:
        self.count = 0
        self.sums: list[torch.Tensor] = []  # Σa, Σb, Σa², Σb²: (n, block) each
        self.cross: torch.Tensor | None = None  # Σ a_i b_j per entry of the block: (block, n, n)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """``a``, ``b``: (samples, n, block), float64."""
        terms = [a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0)]
        cross = torch.einsum("kis,kjs->sij", a, b)
        if self.cross is None:
            self.sums, self.cross = terms, cross
        else:
            self.sums = [s + t for s, t in zip(self.sums, terms, strict=True)]
            self.cross += cross
        self.count += a.shape[0]

    def correlation(self) -> torch.Tensor:
        """corr[i, j], averaged over the block's entries: (n, n)."""
        assert self.cross is not None  # a probe that saw no batch is never asked
        k = self.count
        mean_a, mean_b = self.sums[0] / k, self.sums[1] / k  # (n, block)
        sd_a = (self.sums[2] / k - mean_a**2).clamp_min(0).sqrt()
        sd_b = (self.sums[3] / k - mean_b**2).clamp_min(0).sqrt()
        cov = self.cross / k - mean_a.T[:, :, None] * mean_b.T[:, None, :]  # (block, n, n)
        scale = sd_a.T[:, :, None] * sd_b.T[:, None, :] + EPS
        return (cov / scale).mean(0)


def unit_samples(x: torch.Tensor, probe: Probe, n: int) -> torch.Tensor:
    """A layer's input as (samples, n, block): units along ``probe.dim``, every other position
    (batch, tokens, pixels) a sample."""
    x = x.detach()
    if x.device.type == "mps":  # no float64 there: the sums are kept on the CPU
        x = x.cpu()
    x = x.to(torch.float64).movedim(probe.dim, -1)
    x = x.reshape(-1, probe.repeat, n, probe.block)  # (samples, repeat, n, block)
    return x.transpose(1, 2).reshape(x.shape[0], n, -1)


def _capture(model: nn.Module, probes: list[Probe], into: dict[Probe, torch.Tensor]) -> ExitStack:
    """Forward pre-hooks storing each probe's layer input of the current batch."""
    stack = ExitStack()
    modules = dict(model.named_modules())
    for probe in probes:

        def hook(module: nn.Module, args: tuple, probe: Probe = probe) -> None:
            into[probe] = args[0]

        stack.callback(modules[probe.module].register_forward_pre_hook(hook).remove)
    return stack


def correlations(
    spec: PermutationSpec, a: nn.Module, b: nn.Module, batches: Iterable[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """corr[i, j] of every group with probes, averaged over its probes; ``a``, ``b``: private
    copies in eval mode (hooks are added and removed)."""
    owner = {p: g for g, probes in spec.probes.items() for p in probes}
    moments = {p: Moments() for p in owner}
    seen_a: dict[Probe, torch.Tensor] = {}
    seen_b: dict[Probe, torch.Tensor] = {}
    with _capture(a, list(owner), seen_a), _capture(b, list(owner), seen_b), torch.no_grad():
        for x in batches:
            a(x)
            b(x)
            for p, g in owner.items():
                if p in seen_a and p in seen_b:
                    n = spec.sizes[g]
                    moments[p].add(unit_samples(seen_a[p], p, n), unit_samples(seen_b[p], p, n))
            seen_a.clear()
            seen_b.clear()
    found: dict[str, list[torch.Tensor]] = {}
    for p, m in moments.items():
        if m.count:
            found.setdefault(owner[p], []).append(m.correlation())
    return {g: torch.stack(cs).mean(0) for g, cs in found.items()}


def match_activations(corr: dict[str, torch.Tensor], spec: PermutationSpec) -> Permutations:
    """One assignment per group maximizing the summed correlation of matched units."""
    from scipy.optimize import linear_sum_assignment

    missing = [g for g in spec.sizes if g not in corr]
    if missing:
        raise AlignError(
            f"no activations of group {missing[0]} were seen on the data; check that the data "
            "runs through the whole model, or use method='weights'"
        )
    perms = {}
    for g, c in corr.items():
        _, cols = linear_sum_assignment(c.numpy(), maximize=True)
        perms[g] = torch.as_tensor(cols, dtype=torch.int64)
    return perms
