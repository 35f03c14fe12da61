"""Weight matching (Ainsworth et al., "Git Re-Basin", ICLR 2023, algorithm 1).

Find permutations π of B's hidden units that maximize the total inner product of the weights,
Σ_W ⟨W_A, π(W_B)⟩. For one group g with the others held fixed this is a linear assignment:
⟨W_A, π(W_B)⟩ summed over the tensors touching g is Σ_i C[i, π_g(i)] with

    C[i, j] = Σ_W  ⟨row i of W_A along g's axis,  row j of W_B along it, other axes permuted⟩,

solved exactly by ``scipy.optimize.linear_sum_assignment``. The groups are visited in a random
order, again and again, until a whole pass raises the total no more (each step never lowers it,
so the loop ends).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from landscape.alignment.spec import (
    Permutations,
    PermutationSpec,
    identity,
    permute_tensor,
    unit_rows,
)

MAX_PASSES = 100  # passes over all groups; the total stops rising well before on real networks
RISE = 1e-12  # a relative rise of the total below this is no rise (rounding)


def cost_matrix(
    spec: PermutationSpec,
    group: str,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    perms: Permutations,
) -> torch.Tensor:
    """C[i, j]: the inner product gained by putting B's unit j in A's unit i of ``group``,
    every other axis of B at its current permutation (float64)."""
    n = spec.sizes[group]
    cost = torch.zeros(n, n, dtype=torch.float64)
    for name, dim, ax in spec.touching(group):
        if name not in a:
            continue
        wa = a[name].detach().cpu().to(torch.float64)
        wb = b[name].detach().cpu().to(torch.float64)
        wb = permute_tensor(wb, spec.axes[name], perms, skip=dim)
        cost += unit_rows(wa, dim, ax) @ unit_rows(wb, dim, ax).T  # (n, n)
    return cost


def match_weights(
    spec: PermutationSpec,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    seed: int = 0,
    max_passes: int = MAX_PASSES,
) -> tuple[Permutations, int]:
    """The permutations of B's groups, by coordinate ascent on the total inner product of the
    tensors in ``a`` (the weights to match: parameters, not running statistics); and the
    number of passes it took."""
    from scipy.optimize import linear_sum_assignment

    perms = identity(spec)
    groups = sorted(spec.sizes)
    rng = np.random.default_rng(seed)  # the visiting order: private, no global state touched
    for passes in range(1, max_passes + 1):
        rose = False
        for k in rng.permutation(len(groups)):
            g = groups[k]
            cost = cost_matrix(spec, g, a, b, perms)
            rows, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            old = float(cost[torch.arange(len(cols)), perms[g]].sum())
            new = float(cost.numpy()[rows, cols].sum())
            if new > old + RISE * max(1.0, abs(old)):
                perms[g] = torch.as_tensor(cols, dtype=torch.int64)
                rose = True
        if not rose:
            return perms, passes
    return perms, max_passes


def inner_products(
    spec: PermutationSpec,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    perms: Permutations,
) -> tuple[dict[str, float], float]:
    """⟨W_A, π(W_B)⟩ summed over the tensors touching each group, and over every tensor
    touching any group (the total weight matching raises)."""
    products = {}
    for name in spec.axes:
        if name in a:
            wb = permute_tensor(b[name].detach().cpu(), spec.axes[name], perms)
            products[name] = float((a[name].detach().cpu().double() * wb.double()).sum())
    per_group = {
        g: sum(products.get(name, 0.0) for name in {t for t, _, _ in spec.touching(g)})
        for g in spec.sizes
    }
    return per_group, sum(products.values())
