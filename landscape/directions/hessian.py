"""Hessian eigenvector directions: the top of the loss curvature spectrum at θ.

Let ``w`` be the tensors the direction may move (``moved_names``: under ``ignore=biasbn`` the tensors
with filters, as in the reference code's eigenvalue maps; under ``none`` every parameter), flattened
in parameter order into one vector of length n; every other tensor (biases and BN parameters under
``biasbn``, BN running statistics always) stays fixed at the centre. With the model in eval mode,

    L(w) = (1/N) Σ_i ℓ(f(x_i; w), y_i)          (exact mean over the N Hessian samples)
    H    = ∇²_w L(w)  at w = θ                   (n × n, symmetric, never formed)

``d1, d2`` are the unit eigenvectors of the two largest (algebraic) eigenvalues ``λ1 ≥ λ2`` of H:
the directions of sharpest upward curvature, orthogonal to each other (``⟨d1, d2⟩ = 0``). With
``--which bottom`` they are those of the two smallest, ``λn ≤ λn−1`` (negative ones: the
directions along which θ is a saddle, which random planes hide, Böttcher & Wheeler 2024); with
``--which extreme`` d1 is λmax's and d2 λmin's (2-D only). ``directions.eigen`` finds them.

H is touched only through Hessian-vector products, by double backward (Pearlmutter's trick):

    g(w) = ∇_w Σ_{i∈b} ℓ_i                        (graph kept: create_graph=True)
    H_b v = ∇_w ⟨g(w), v⟩                          (v held constant)
    H v   = (1/N) Σ_b H_b v                        (float32 passes, float64 sum)

Double backward needs no forward-mode formulas (``jvp`` of ``grad`` does, and measured ~2x slower
on CPU for the CIFAR ResNets). Each pass covers at most ``CHUNK`` samples, so memory is that of one
chunk's second-order graph plus a few n-vectors, whatever the model size (ResNet-56 included).
``Hv`` feeds ``scipy.sparse.linalg.eigsh`` (implicitly restarted Lanczos, ``which="LA"``) as a
float64 ``LinearOperator``, started from ``v0 ~ N(0, I)`` seeded with ``seed``, so the same seed
and data give the same directions. Each vector is normalized to ‖d‖ = 1 over all tensors (grid
coordinates are in parameter units, not filter-normalized) and its sign fixed so that its largest
|entry| is positive (the first entry within ``SIGN_TIE`` of the largest: symmetries make exact ties,
e.g. the two output biases of a 2-class softmax, which rounding must not flip). The eigenvalues
are recorded with the directions.

The caller's model is never written: parameters go in through ``functional_call`` with a dict (a
TorchScript module, which refuses ``functional_call``, is differentiated on a private copy), and
``eval_mode`` restores every submodule's training flag afterwards.
"""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.func import functional_call

from landscape.directions.base import DirectionContext, DirectionSet, moved_names, zero_direction
from landscape.directions.eigen import Eigenpairs, eigenpairs
from landscape.engine import eval_mode
from landscape.errors import DirectionError

CHUNK = 128  # samples per double-backward pass: bounds the second-order graph's memory
CACHE_BYTES = 1 << 30  # Hessian samples kept on the device between products, up to this size
TOL = 1e-5  # eigsh: relative accuracy of the Ritz values (float32 products are good to ~1e-6)
MAX_RESTARTS = 200  # eigsh maxiter: Lanczos restarts, each of about ncv - k products

Batch = tuple[torch.Tensor, torch.Tensor]


def build_hessian(ctx: DirectionContext) -> DirectionSet:
    model, loss_fn = ctx.require("model"), ctx.require("loss_fn")
    batches = ctx.require("batches")
    names = moved_names(ctx.theta, ctx.spec.ignore)
    n = sum(ctx.theta[k].numel() for k in names)
    if n < ctx.count:
        raise DirectionError(
            f"hessian needs at least {ctx.count} parameters to move, but only {n} move under "
            f"--ignore {ctx.spec.ignore}; use --ignore none or another model"
        )
    with eval_mode(model):
        op = HessianOperator(model, ctx.state, names, batches, loss_fn, ctx.device)
        pairs = _ends(op, ctx.count, ctx.spec.which, ctx.spec.seed)
    vectors = [unflatten_direction(ctx.theta, names, pairs.vectors[:, j]) for j in range(ctx.count)]
    attrs = {
        "which": ctx.spec.which,
        "eigenvalues": [float(v) for v in pairs.values],
        "hvps": op.products,
        "samples": op.samples,
        "moved_tensors": len(names),
        "moved_parameters": n,
        "ignore": ctx.spec.ignore,
        "seed": ctx.spec.seed,
    }
    return DirectionSet("hessian", vectors, attrs)


def _ends(op: HessianOperator, count: int, which: str, seed: int) -> Eigenpairs:
    """The ``count`` eigenpairs the directions are: the largest (``top``: d1 with λ1 ≥ λ2), the
    smallest (``bottom``: λn ≤ λn−1, the planes that show saddles) or λmax with λmin
    (``extreme``, 2-D)."""
    k = 1 if which == "extreme" else count
    advice = "try more --hessian-samples (a smoother estimate) or a smaller model"
    return eigenpairs(op.matvec, op.n, k, which, TOL, MAX_RESTARTS, seed, advice)


class HessianOperator:
    """``v ↦ H v`` for the mean loss over ``batches()``, w.r.t. the tensors ``names`` (flattened).

    ``state`` holds every parameter and buffer at the centre; call it inside ``eval_mode(model)``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        state: dict[str, torch.Tensor],
        names: list[str],
        batches: Callable[[], Iterable[Batch]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
    ) -> None:
        self.names, self.loss_fn, self.batches = names, loss_fn, batches
        self.shapes = [state[k].shape for k in names]
        self.n = sum(s.numel() for s in self.shapes)
        self.device = device
        self.products = 0
        self.leaves, self.forward = _differentiable_forward(model, state, names, device)
        self.samples, self._cache = _count_and_cache(batches)
        if self.samples == 0:
            raise DirectionError(
                "hessian: the data gave no samples; check --data and --max-samples"
            )

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``H v`` as float64; ``v`` is a float64 vector of length n."""
        self.products += 1
        flat = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32).reshape(-1))
        parts = flat.split([s.numel() for s in self.shapes])
        vs = [
            p.view(w.shape).to(w.device, w.dtype) for p, w in zip(parts, self.leaves, strict=True)
        ]
        total = torch.zeros(self.n, dtype=torch.float64, device=self.device)
        for x, y in self._chunks():
            total += self._chunk_hvp(x, y, vs)
        hv = (total / self.samples).cpu().numpy()
        if not np.isfinite(hv).all():
            raise DirectionError(
                "hessian: a Hessian-vector product is not finite; the loss at the centre is not "
                "twice differentiable there (NaN/inf); check the checkpoint and --loss"
            )
        return hv

    def _chunk_hvp(self, x: torch.Tensor, y: torch.Tensor, vs: list[torch.Tensor]) -> torch.Tensor:
        # H_b v = ∇_w ⟨∇_w Σ_b ℓ, v⟩ (double backward); float64 copy of the flat result.
        # A tensor the loss does not use, or whose gradient does not depend on w, adds zeros.
        hv: tuple[torch.Tensor | None, ...] = (None,) * len(self.leaves)
        with torch.enable_grad():
            loss = self.loss_fn(self.forward(x), y).sum()
            grads = torch.autograd.grad(loss, self.leaves, create_graph=True, allow_unused=True)
            terms = [(g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None]
            dot = sum(terms[1:], terms[0]) if terms else None
            if dot is not None and dot.requires_grad:
                hv = torch.autograd.grad(dot, self.leaves, allow_unused=True)
        parts = [
            torch.zeros_like(w) if h is None else h for h, w in zip(hv, self.leaves, strict=True)
        ]
        return torch.cat([p.reshape(-1).double() for p in parts])

    def _chunks(self) -> Iterator[Batch]:
        source = self._cache if self._cache is not None else self.batches()
        for x, y in source:
            for start in range(0, int(y.shape[0]), CHUNK):
                yield x[start : start + CHUNK], y[start : start + CHUNK]


def _differentiable_forward(
    model: torch.nn.Module, state: dict[str, torch.Tensor], names: list[str], device: torch.device
) -> tuple[list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """Leaf tensors for the moved ``names`` (at θ) and ``x ↦ logits`` depending on them."""
    fixed = OrderedDict((k, v.detach().to(device)) for k, v in state.items() if k not in names)
    leaves = [
        state[k].detach().to(device, _float(state[k])).clone().requires_grad_() for k in names
    ]
    if not isinstance(model, torch.jit.ScriptModule):
        point = OrderedDict(fixed)
        point.update(zip(names, leaves, strict=True))
        return leaves, lambda x: functional_call(model, point, (x,))
    # TorchScript refuses functional_call: a private copy whose moved parameters are the leaves
    # (a save/load round trip: deepcopy of a ScriptModule gives non-leaf parameters)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.x
        torch.jit.save(model, buffer)
        buffer.seek(0)
        private = torch.jit.load(buffer, map_location=device).eval()
    own = dict(private.named_parameters())
    with torch.no_grad():
        for name, t in [*private.named_parameters(), *private.named_buffers()]:
            t.copy_(state[name])
    for name, p in own.items():
        p.requires_grad_(name in names)
    return [own[k] for k in names], private


def _float(t: torch.Tensor) -> torch.dtype:
    """float32, or the tensor's own dtype when it is float64 (a double model stays double)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _count_and_cache(batches: Callable[[], Iterable[Batch]]) -> tuple[int, list[Batch] | None]:
    """N, and the batches themselves while they fit in CACHE_BYTES (else re-read per product)."""
    n, size, cache = 0, 0, []
    for x, y in batches():
        n += int(y.shape[0])
        size += x.numel() * x.element_size() + y.numel() * y.element_size()
        if cache is not None and size <= CACHE_BYTES:
            cache.append((x, y))
        else:
            cache = None
    return n, cache


def unflatten_direction(
    theta: dict[str, torch.Tensor], names: list[str], flat: np.ndarray
) -> OrderedDict[str, torch.Tensor]:
    """A direction over every tensor of θ: ``flat`` laid out on ``names``, zero elsewhere."""
    d = zero_direction(theta)
    start = 0
    for k in names:
        size = theta[k].numel()
        d[k] = torch.from_numpy(flat[start : start + size].astype(np.float32)).view(theta[k].shape)
        start += size
    return d
