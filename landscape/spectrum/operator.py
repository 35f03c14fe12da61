"""``v ↦ H v`` for the spectrum, reusing one gradient graph per data chunk where memory allows.

H is the Hessian of the mean loss ``L(w) = (1/N) Σ_i ℓ_i(w)`` over the selected tensors ``w``
(flattened in parameter order), touched only through products (Pearlmutter's double backward):

    g_b(w) = ∇_w Σ_{i∈b} ℓ_i          (the chunk's gradient, its graph kept: create_graph=True)
    H_b v  = ∇_w ⟨g_b(w), v⟩            (v held constant)
    H v    = (1/N) Σ_b H_b v            (float32 passes, float64 sum)

``directions.hessian.HessianOperator`` rebuilds ``g_b`` (a forward and a first backward) for every
product. Here, when the graphs of all chunks fit (``GraphPlan``), each ``g_b`` is built once and
every product is only the second backward through it (``retain_graph=True``), as PyHessian does
per batch; otherwise each product rebuilds them as before. The plan measures one chunk's graph on
CUDA (the allocator's count before and after building it) and estimates it elsewhere from the
chunk's activations; the graphs are kept when all of them take at most ``GRAPH_SHARE`` of the
free memory.

A *block* of tensors (a layer's weight and bias) gives the diagonal block of H for them: the
inner product and the second backward run over those tensors only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from landscape.directions.hessian import HessianOperator
from landscape.errors import DirectionError
from landscape.memory import activation_bytes, available_bytes, size

GRAPH_SHARE = 0.5  # keep the graphs when all of them fit in this share of the free memory
# CPU estimate of a chunk's gradient graph: this × the sum of every leaf module's output on the
# chunk, plus two parameter-sized sets of tensors (the gradient and its graph's copies). Measured
# on ResNet-20 (CPU, RSS growth over 128-sample chunks): 2.0x; the estimate errs high.
GRAPH_FACTOR = 3

Batch = tuple[torch.Tensor, torch.Tensor]
Grads = tuple[torch.Tensor | None, ...]


@dataclass(frozen=True)
class GraphPlan:
    """Whether the gradient graphs are kept between products, and the figures that decided it."""

    mode: str  # "reuse" or "recompute"
    asked: str  # "auto", "reuse" or "recompute"
    chunks: int
    per_chunk: int  # bytes of one chunk's gradient graph
    measured: bool  # measured on the device (CUDA), else estimated from the activations
    available: int | None  # free bytes when planned; None: unknown

    def text(self) -> str:
        how = "measured" if self.measured else "estimated"
        free = "unknown free" if self.available is None else f"{size(self.available)} free"
        why = "as asked" if self.asked != "auto" else f"they {'' if self.fits else 'do not '}fit"
        return (
            f"gradient graphs: {self.chunks} chunk(s) x {size(self.per_chunk)} ({how}) = "
            f"{size(self.chunks * self.per_chunk)}, {free}: {self.mode} ({why})"
        )

    @property
    def fits(self) -> bool:
        return self.available is not None and (
            self.chunks * self.per_chunk <= GRAPH_SHARE * self.available
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class SpectrumOperator(HessianOperator):
    """``HessianOperator`` (leaves at θ, the chunked samples) with graphs kept per ``graph``
    (``auto``: as the plan says), and products restricted to blocks of tensors. Use it inside
    ``eval_mode(model)``, as its parent."""

    def __init__(
        self,
        model: torch.nn.Module,
        state: dict[str, torch.Tensor],
        names: list[str],
        batches: Callable[[], Iterable[Batch]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
        graph: str = "auto",
    ) -> None:
        super().__init__(model, state, names, batches, loss_fn, device)
        self.sizes = [s.numel() for s in self.shapes]
        self.graphs: list[Grads] | None = None
        self.plan = self._plan(model, graph)

    # --- products ---------------------------------------------------------------------------

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``H v`` over every selected tensor (float64 in and out)."""
        return self.block_matvec(v, list(range(len(self.leaves))))

    def block_matvec(self, v: np.ndarray, block: list[int]) -> np.ndarray:
        """``H_BB v`` for the block B of leaf indices ``block``; ``v`` has B's length."""
        self.products += 1
        flat = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        parts = flat.split([self.sizes[i] for i in block])
        vs = [
            p.view(self.leaves[i].shape).to(self.leaves[i].device, self.leaves[i].dtype)
            for p, i in zip(parts, block, strict=True)
        ]
        total = torch.zeros(flat.numel(), dtype=torch.float64, device=self.device)
        for grads in self._gradients():
            total += self._second_backward(grads, block, vs)
        hv = (total / self.samples).cpu().numpy()
        if not np.isfinite(hv).all():
            raise DirectionError(
                "hessian: a Hessian-vector product is not finite; the loss at the centre is not "
                "twice differentiable there (NaN/inf); check the checkpoint and --loss"
            )
        return hv

    def block(self, block: list[int]) -> BlockOperator:
        return BlockOperator(self, block)

    def _second_backward(
        self, grads: Grads, block: list[int], vs: list[torch.Tensor]
    ) -> torch.Tensor:
        # H_b v = ∇_w ⟨g_b, v⟩ over the block's tensors; a tensor the loss does not use (or
        # whose gradient does not depend on w) adds zeros
        hv: tuple[torch.Tensor | None, ...] = (None,) * len(block)
        with torch.enable_grad():
            terms = [
                (grads[i] * v).sum() for i, v in zip(block, vs, strict=True) if grads[i] is not None
            ]
            dot = sum(terms[1:], terms[0]) if terms else None
            if dot is not None and dot.requires_grad:
                hv = torch.autograd.grad(
                    dot,
                    [self.leaves[i] for i in block],
                    retain_graph=self.graphs is not None,
                    allow_unused=True,
                )
        parts = [
            torch.zeros_like(self.leaves[i]) if h is None else h
            for h, i in zip(hv, block, strict=True)
        ]
        return torch.cat([p.reshape(-1).double() for p in parts])

    # --- gradient graphs --------------------------------------------------------------------

    def _gradients(self) -> Iterator[Grads]:
        """Each chunk's gradient with its graph: the kept ones, or rebuilt one at a time."""
        if self.graphs is not None:
            yield from self.graphs
            return
        for x, y in self._chunks():
            yield self._gradient(x, y)

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> Grads:
        """g_b = ∇_w Σ_b ℓ with its graph (create_graph=True), ready for second backwards."""
        with torch.enable_grad():
            loss = self.loss_fn(self.forward(x), y).sum()
            return torch.autograd.grad(loss, self.leaves, create_graph=True, allow_unused=True)

    def _plan(self, model: torch.nn.Module, asked: str) -> GraphPlan:
        """Measure (CUDA) or estimate one chunk's graph; keep all of them if the plan says so."""
        chunks = sum(1 for _ in self._chunks())
        x, y = next(iter(self._chunks()))
        measured = self.device.type == "cuda"
        if measured:
            before = torch.cuda.memory_allocated(self.device)
            first = self._gradient(x, y)
            per_chunk = torch.cuda.memory_allocated(self.device) - before
            del first  # rebuilt below with the others when kept
        else:
            grads_bytes = 2 * sum(w.numel() * w.element_size() for w in self.leaves)
            per_chunk = GRAPH_FACTOR * saved_outputs_bytes(model, x) + grads_bytes
        free = available_bytes(self.device)
        plan = GraphPlan("recompute", asked, chunks, int(per_chunk), measured, free)
        if asked == "reuse" or (asked == "auto" and plan.fits):
            self.graphs = [self._gradient(cx, cy) for cx, cy in self._chunks()]
            plan = GraphPlan("reuse", asked, chunks, int(per_chunk), measured, free)
        return plan


def saved_outputs_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """The sum of every leaf module's output on ``x``: what a gradient graph keeps of a forward
    (an inference forward frees them as it goes: ``memory.activation_bytes`` counts a few). A
    model that refuses hooks (TorchScript) gets 4x that inference estimate instead."""
    sizes: list[int] = []

    def record(_m: torch.nn.Module, _i: object, out: object) -> None:
        outs = out if isinstance(out, (tuple, list)) else [out]
        sizes.extend(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = []
    try:
        handles = [m.register_forward_hook(record) for m in leaves]
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, AttributeError):
        return 4 * activation_bytes(model, x, len(x))
    finally:
        for h in handles:
            h.remove()
    return sum(sizes)


class BlockOperator:
    """The diagonal block of H on some of an operator's tensors, as an operator of its own."""

    def __init__(self, op: SpectrumOperator, block: list[int]) -> None:
        self.op, self.block = op, block
        self.n = sum(op.sizes[i] for i in block)

    @property
    def products(self) -> int:
        return self.op.products

    def matvec(self, v: np.ndarray) -> np.ndarray:
        return self.op.block_matvec(v, self.block)
