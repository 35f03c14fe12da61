"""Permutation groups: which axes of which tensors one permutation of hidden units reorders.

A *group* is a set of hidden units that may be reordered together without changing the function
the network computes: the output channels of a conv, the BatchNorm after it, the input channels
of the next conv; in a ResNet the whole residual stream of a stage. A permutation ``p`` of a group
of ``n`` units reorders every axis bound to it: unit ``i`` of the permuted network is unit
``p[i]`` of the original.

An axis holds ``repeat * n * block`` entries laid out as ``(repeat, n, block)``: ``block`` > 1
when each unit owns several consecutive entries (a conv channel flattened into a linear layer's
inputs owns ``H * W`` of them; an attention head owns ``head_dim`` rows), ``repeat`` > 1 when the
axis stacks several copies of the group (GPT-2's fused query/key/value projection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

Permutations = dict[str, torch.Tensor]  # group name -> int64 permutation of its units


@dataclass(frozen=True)
class Axis:
    """One axis of one tensor reordered by ``group``, in the ``(repeat, n, block)`` layout."""

    group: str
    block: int = 1
    repeat: int = 1


@dataclass(frozen=True)
class Probe:
    """Where a group's unit activations are read: the input of ``module``, units along ``dim``
    (1: channels of a conv input; -1: features of a linear input), laid out as an Axis is."""

    module: str
    dim: int
    block: int = 1
    repeat: int = 1


@dataclass
class PermutationSpec:
    """Every group of a network: its size, the tensor axes it reorders, where its activations
    are read, and what could not be followed (operations whose units stay where they are)."""

    sizes: dict[str, int]
    axes: dict[str, dict[int, Axis]]  # state-dict name -> {axis: Axis}
    probes: dict[str, list[Probe]] = field(default_factory=dict)
    not_followed: list[str] = field(default_factory=list)

    def touching(self, group: str) -> list[tuple[str, int, Axis]]:
        """Every ``(tensor name, axis, Axis)`` the group reorders."""
        return [
            (name, dim, ax)
            for name, axes in self.axes.items()
            for dim, ax in axes.items()
            if ax.group == group
        ]


def unit_index(perm: torch.Tensor, block: int, repeat: int) -> torch.Tensor:
    """The entry order of an axis laid out ``(repeat, n, block)`` once its units follow
    ``perm``: entry ``(r, i, s)`` of the result is entry ``(r, perm[i], s)`` of the original."""
    n = len(perm)
    r = torch.arange(repeat).view(-1, 1, 1) * (n * block)
    i = perm.view(1, -1, 1) * block
    s = torch.arange(block).view(1, 1, -1)
    return (r + i + s).reshape(-1)


def permute_tensor(
    t: torch.Tensor, axes: Mapping[int, Axis], perms: Mapping[str, torch.Tensor], skip: int = -1
) -> torch.Tensor:
    """``t`` with each bound axis (but ``skip``) reordered by its group's permutation."""
    for dim, ax in axes.items():
        if dim != skip and ax.group in perms:
            index = unit_index(perms[ax.group], ax.block, ax.repeat).to(t.device)
            t = t.index_select(dim, index)
    return t


def permute_state(
    state: Mapping[str, torch.Tensor], spec: PermutationSpec, perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A new state dict: every tensor of ``state`` with its bound axes permuted (the others as
    they are, shared: never written to)."""
    return {
        name: permute_tensor(t, spec.axes[name], perms) if name in spec.axes else t
        for name, t in state.items()
    }


def identity(spec: PermutationSpec) -> Permutations:
    """The permutation that changes nothing, for every group."""
    return {g: torch.arange(n) for g, n in spec.sizes.items()}


def unit_rows(t: torch.Tensor, dim: int, ax: Axis) -> torch.Tensor:
    """``t`` as a matrix with one row per unit of ``ax.group``: the unit's entries along ``dim``
    (its ``repeat`` copies and ``block`` entries) and everything along the other axes."""
    moved = t.movedim(dim, 0)
    n = moved.shape[0] // (ax.block * ax.repeat)
    grid = moved.reshape(ax.repeat, n, ax.block, -1)  # (repeat, n, block, rest)
    return grid.transpose(0, 1).reshape(n, -1)  # (n, repeat * block * rest)
