"""Per-layer weight statistics and the symmetry check.

A *layer* is a module that owns parameters directly (``layers.0`` owns ``layers.0.weight`` and
``layers.0.bias``); a parameter registered on the root module is a layer of its own. Its *units*
are the slices of its weight along dim 0 (a linear layer's output units, a conv's output
channels), as in DESIGN §2; ``ConvTranspose`` weights keep their units along dim 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.diagnostics.findings import Finding

HISTOGRAM_BINS = 40
ROOT = "(model)"  # the name of the root module's own layer or output

# Two units are identical when their rows (incoming weights and bias) differ by at most
# SYMMETRY_RTOL times the layer's RMS row norm. Independent random rows are about sqrt(2) row
# norms apart, so a normally initialized layer is nowhere near; rows that started equal stay
# equal to float rounding (~1e-7 relative), well inside the tolerance.
SYMMETRY_RTOL = 1e-4

# Modules whose dim-0 slices are lookup rows, not units computing a function of the input.
NOT_UNITS = ("Embedding", "EmbeddingBag")


@dataclass
class Histogram:
    edges: list[float]  # len(counts) + 1 bin edges
    counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges, "counts": self.counts}


@dataclass
class TensorStats:
    """Summary of one tensor's values. ``std`` is the population standard deviation."""

    shape: tuple[int, ...]
    numel: int
    mean: float
    std: float
    min: float
    max: float
    abs_max: float
    zero_fraction: float
    norm: float  # Frobenius (L2) norm of all entries
    histogram: Histogram | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("numel", "mean", "std", "min", "max", "abs_max")}
        out.update(
            shape=list(self.shape),
            zero_fraction=self.zero_fraction,
            norm=self.norm,
            histogram=self.histogram.to_dict() if self.histogram else None,
        )
        return out


@dataclass
class Layer:
    """A module's own parameters, detached (no copies): ``weight``, ``bias``, ...

    ``prefix`` is the owning module's name (empty for the root): the tensors' names in the state
    dict are ``prefix.local``.
    """

    name: str
    kind: str
    prefix: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    @property
    def weight(self) -> torch.Tensor | None:
        """``weight`` if present, else the first tensor with filters, else the only tensor."""
        if "weight" in self.tensors:
            return self.tensors["weight"]
        with_filters = [t for t in self.tensors.values() if t.ndim >= 2]
        if with_filters:
            return with_filters[0]
        return next(iter(self.tensors.values())) if len(self.tensors) == 1 else None

    def full_names(self) -> list[str]:
        """The parameters' names in the model's state dict."""
        return [f"{self.prefix}.{local}" if self.prefix else local for local in self.tensors]


@dataclass
class LayerReport:
    """A layer's statistics, and what the forward pass measured at its output."""

    name: str
    kind: str
    params: int
    has_filters: bool  # a Linear/Conv-like weight (ndim >= 2, not an embedding)
    tensors: dict[str, TensorStats]
    output_rms: float | None = None  # RMS of the layer's output over the inspected samples
    dead_fraction: float | None = None  # share of dead units of the ReLU right after it

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "params": self.params,
            "tensors": {k: v.to_dict() for k, v in self.tensors.items()},
            "output_rms": self.output_rms,
            "dead_fraction": self.dead_fraction,
        }


# --- layers and statistics ---------------------------------------------------------------------


def layers_of(model: nn.Module) -> list[Layer]:
    """Group ``model.named_parameters()`` by owning module, in registration order.

    A model that is a single module (a bare ``nn.Linear``) is one layer named ``ROOT``; the root's
    own parameters beside submodules are each a layer named after the parameter.
    """
    kinds = {name: module_kind(m) for name, m in model.named_modules()}
    root_is_leaf = not any(True for _ in model.children())
    layers: dict[str, Layer] = {}
    for full, p in model.named_parameters():
        owner, _, local = full.rpartition(".")
        key = layer_name(owner) if owner or root_is_leaf else full
        if key not in layers:
            kind = kinds.get(owner, "") if owner or root_is_leaf else "Parameter"
            layers[key] = Layer(key, kind, owner)
        layers[key].tensors[local] = p.detach()
    return list(layers.values())


def layer_name(module_name: str) -> str:
    """The layer named after its module; the root module is ``ROOT``."""
    return module_name or ROOT


def module_kind(module: nn.Module) -> str:
    """The class name; TorchScript modules keep the original one as ``original_name``."""
    return str(getattr(module, "original_name", None) or type(module).__name__)


def tensor_stats(t: torch.Tensor, bins: int = HISTOGRAM_BINS) -> TensorStats | None:
    """Mean, population std, extremes, share of exact zeros, L2 norm and a histogram."""
    if t.numel() == 0 or not t.is_floating_point():
        return None
    x = t.detach().flatten()
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    xd = x.double()  # moments in float64: a constant tensor has std exactly 0
    mean = xd.mean()
    return TensorStats(
        shape=tuple(t.shape),
        numel=x.numel(),
        mean=float(mean),
        std=float((xd - mean).square().mean().sqrt()),  # population std: sqrt(mean((x - μ)²))
        min=float(x.min()),
        max=float(x.max()),
        abs_max=float(x.abs().max()),
        zero_fraction=1.0 - int(torch.count_nonzero(x)) / x.numel(),
        norm=float(torch.linalg.vector_norm(xd)),
        histogram=histogram_of(x, bins),
    )


def histogram_of(x: torch.Tensor, bins: int = HISTOGRAM_BINS) -> Histogram | None:
    """``bins`` equal bins over the finite values' range (±0.5 around a constant, as numpy)."""
    x = x.detach().flatten()
    x = x[torch.isfinite(x)].float()
    if x.numel() == 0:
        return None
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(x, bins=bins, min=lo, max=hi)
    edges = np.linspace(lo, hi, bins + 1)
    return Histogram(edges=edges.tolist(), counts=[int(c) for c in counts.tolist()])


def layer_report(layer: Layer) -> LayerReport:
    stats = {k: s for k, t in layer.tensors.items() if (s := tensor_stats(t)) is not None}
    w = layer.weight
    filters = w is not None and w.ndim >= 2 and layer.kind not in NOT_UNITS
    return LayerReport(layer.name, layer.kind, layer.params, filters, stats)


# --- symmetry -----------------------------------------------------------------------------------


def unit_rows(layer: Layer) -> torch.Tensor | None:
    """``(n_units, m)``: each unit's incoming weights flattened, its bias appended.

    None for layers without units (1-D weights such as BatchNorm's, embeddings, a single unit).
    """
    w = layer.weight
    if w is None or w.ndim < 2 or layer.kind in NOT_UNITS:
        return None
    if layer.kind.startswith("ConvTranspose"):
        w = w.transpose(0, 1)  # (in, out/groups, k...) -> units along dim 0
    if w.shape[0] < 2:
        return None
    rows = w.reshape(w.shape[0], -1)
    rows = rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows
    bias = layer.tensors.get("bias")
    if bias is not None and tuple(bias.shape) == (w.shape[0],):
        rows = torch.cat([rows, bias.to(rows.dtype)[:, None]], dim=1)
    return rows


def duplicate_groups(rows: torch.Tensor, rtol: float = SYMMETRY_RTOL) -> list[list[int]]:
    """Groups (of two or more) of rows within ``rtol`` × RMS row norm of each other.

    Rows are sorted by their projection on a fixed random unit vector v: since
    ``|(r_i - r_j)·v| ≤ ‖r_i - r_j‖``, rows within ``tol`` of each other have projections within
    ``tol``, so only rows inside that window are compared in full. O(n·m + n log n) for a
    normally initialized layer, where windows hold one row; no n×n distance matrix.
    """
    n, m = rows.shape
    scale = float(rows.double().square().sum(dim=1).mean().sqrt())  # RMS row norm
    tol = rtol * scale
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(m, generator=gen, dtype=torch.float64)
    v = (v / v.norm()).to(rows.device)
    proj = torch.cat([chunk.double() @ v for chunk in rows.split(1024)]).cpu().numpy()
    order = np.argsort(proj, kind="stable")
    sorted_proj = proj[order]
    # the window is widened by the projection's own rounding; candidates are checked exactly
    ends = np.searchsorted(sorted_proj, sorted_proj + 2 * tol + 1e-12 * scale, side="right")
    assigned = np.zeros(n, dtype=bool)
    groups = []
    for a in range(n):
        i = order[a]
        if assigned[i] or ends[a] <= a + 1:
            continue
        candidates = [j for j in order[a + 1 : ends[a]] if not assigned[j]]
        if not candidates:
            continue
        idx = torch.as_tensor(candidates, device=rows.device)
        dist = (rows[idx].double() - rows[i].double()).norm(dim=1).cpu().numpy()
        close = [int(j) for j, d in zip(candidates, dist, strict=True) if d <= tol]
        if close:
            assigned[close] = True
            groups.append(sorted([int(i), *close]))
    return sorted(groups, key=lambda g: g[0])


def symmetry_findings(layers: list[Layer], rtol: float = SYMMETRY_RTOL) -> list[Finding]:
    """Units of a layer with identical incoming weights and biases.

    Such units compute the same function, and when the whole network started from one constant
    they also receive the same gradient: training never tells them apart (error). All-zero rows
    are reported as info: a zero-initialized layer (a classifier, the last layer of a residual
    branch) is a deliberate choice, and pruned units are zero too; a network that is zero
    throughout has only dead units, which the dead-units check reports as an error.
    """
    findings = []
    for layer in layers:
        rows = unit_rows(layer)
        if rows is None:
            continue
        groups = duplicate_groups(rows, rtol)
        if not groups:
            continue
        n = rows.shape[0]
        zero = [g for g in groups if float(rows[g[0]].abs().max()) == 0.0]
        same = [g for g in groups if g not in zero]
        if same:
            findings.append(_symmetric(layer.name, n, same))
        if zero:
            count = sum(len(g) for g in zero)
            what = "all" if count == n else f"{count} of"
            findings.append(
                Finding(
                    "symmetry",
                    layer.name,
                    "info",
                    f"{what} {n} units have all-zero incoming weights and bias, so they compute "
                    "the same function; fine for a deliberately zero-initialized or pruned "
                    "layer, a symmetry failure if the layers around it are constant too",
                )
            )
    return findings


def _symmetric(name: str, n: int, groups: list[list[int]]) -> Finding:
    count = sum(len(g) for g in groups)
    largest = max(len(g) for g in groups)
    grouping = (
        "all identical"
        if largest == n
        else f"in {len(groups)} group{'s' if len(groups) > 1 else ''} of identical units "
        f"(largest {largest})"
    )
    return Finding(
        "symmetry",
        name,
        "error",
        f"{count} of {n} units have identical incoming weights and bias ({grouping}): they "
        "compute the same function and, from a constant initialization, get the same gradient, "
        "so training never breaks the symmetry; initialize weights randomly "
        "(e.g. torch.nn.init.kaiming_normal_), not to one constant",
    )
