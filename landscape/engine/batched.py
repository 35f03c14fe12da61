"""The batched evaluator: K grid points in one forward call (DESIGN §4).

For a chunk of K points with coefficients ``C`` (K × n_dirs), every tensor the directions move is
stacked along a new leading axis,

    P[name] = θ[name] + Σ_j C[:, j] · d_j[name]          # (K, *shape)

and ``torch.func.vmap`` maps ``functional_call(model, P_k, x)`` over k with the data batch
shared, giving logits of shape (K, B, classes) in one call. Tensors no direction moves (biases
under ``ignore=biasbn``, BN buffers) are passed once, unstacked. A last, short chunk is padded to
K by repeating its last point, so shapes never change and a compiled graph is reused; the padded
results are dropped.

Under a forward split (``engine.split``: only some tensors move) the vmapped call is the split's
dependent part, ``vmap(lambda P_k, F: dynamic(P_k, F))`` with the batch's frontier F shared
(in_dims None) like the data: F is computed once per data batch at θ for the whole run and kept
(``PointEvaluatorBase.prime``), where vmap over the full forward would compute the unmoved layers
once per chunk of K points, for every chunk.

This is meant for GPUs, where one small model per call leaves the device idle. On CPUs, vmap over
convolution weights becomes a grouped convolution, which measured slower than the per-point loop:
``--engine auto`` times both and keeps the faster.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch.func import functional_call, vmap

from landscape.engine import policies
from landscape.engine.reference import PointEvaluatorBase, PointResult, eval_mode, is_jitted
from landscape.errors import ConfigError
from landscape.losses import score_batch
from landscape.quantities import PointStats


class BatchedEvaluator(PointEvaluatorBase):
    """Evaluate ``k`` points per forward call with stacked parameters and ``vmap``."""

    name = "batched"
    points_per_call = True  # K points per call
    runs_scripted = False  # vmap cannot trace a TorchScript module

    def __init__(self, *args: object, k: int = 8, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if is_jitted(self.model):
            raise ConfigError(
                "--engine batched cannot vmap a TorchScript model; use --engine reference"
            )
        if k < 1:
            raise ConfigError(f"batched engine needs k >= 1 points per call, got {k}")
        self.k = k
        self.moved = list(self.directions[0])
        # recalibrated statistics differ per point, so BN buffers are stacked under that policy
        self.stacked_names = self.moved + [
            n for n in self.bn_names if self.bn == "recalibrate" and n not in self.moved
        ]
        fixed = OrderedDict((n, t) for n, t in self.centre.items() if n not in self.stacked_names)
        if self.bn == "train":
            for name in self.bn_names:
                fixed.pop(name, None)
        self.fixed = fixed

        def one(stacked: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, (stacked, self.fixed), (x,))

        def dependent(stacked: dict[str, torch.Tensor], frontier: object) -> torch.Tensor:
            # the split's dependent part at one point, from the batch's frontier at θ
            assert self.split is not None
            return self.split.dynamic({**self.fixed, **stacked}, frontier)

        # the frontier, like the data, is shared by the K points (in_dims None): the static
        # part runs once per batch for the whole run, not once per chunk
        call = vmap(one if self.split is None else dependent, in_dims=(0, None))
        self._call = torch.compile(call, dynamic=False) if self.compile else call

    def stack(self, coords: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """The chunk's moved tensors, (K, *shape) each: θ + Σ_j C[:, j]·d_j."""
        out = OrderedDict()
        for name in self.moved:
            base = self.centre[name]
            v = base.unsqueeze(0).expand(coords.shape[0], *base.shape)
            for j, d in enumerate(self.directions):
                c = coords[:, j].to(base.dtype).view(-1, *([1] * base.ndim))
                v = v + c * d[name]
            out[name] = v
        return out

    def _recalibrated(self, chunk: Sequence[tuple[float, ...]]) -> OrderedDict[str, torch.Tensor]:
        """Per-point re-estimated BN buffers, stacked along the chunk axis."""
        per_point = [self.point_state(p) for p in chunk]
        return OrderedDict(
            (n, torch.stack([s[n] for s in per_point]))
            for n in self.stacked_names
            if n not in self.moved
        )

    def evaluate_block(self, points: Sequence[tuple[float, ...]]) -> list[PointResult]:
        results: list[PointResult] = []
        for start in range(0, len(points), self.k):
            chunk = list(points[start : start + self.k])
            real = len(chunk)
            chunk += [chunk[-1]] * (self.k - real)  # pad: constant shapes for compiled graphs
            results.extend(self._evaluate_chunk(chunk)[:real])
        return results

    def evaluate(self, coords: tuple[float, ...]) -> PointResult:
        return self.evaluate_block([coords])[0]

    def _evaluate_chunk(self, chunk: list[tuple[float, ...]]) -> list[PointResult]:
        device = next(iter(self.centre.values())).device
        coords = torch.tensor(chunk, dtype=torch.float64, device=device)
        stacked = self.stack(coords)
        if self.bn == "recalibrate":
            stacked.update(self._recalibrated(chunk))
        k = len(chunk)
        stats = PointStats.zeros(k, device)
        with eval_mode(self.module), torch.inference_mode(), self.autocast_context():
            for x, y in self._inputs():  # x: a data batch, or under a split its frontier
                b = int(y.shape[0])
                logits = self._call(stacked, x)[:, :b].float()  # (K, B, classes), padding dropped
                flat = logits.reshape(k * b, *logits.shape[2:])
                targets = y.repeat(k, *([1] * (y.ndim - 1)))
                stats.add(*score_batch(self.loss_fn, flat, targets, k))
        return [PointResult(v) for v in stats.values()]

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, "k": self.k, **super().describe()}


__all__ = ["BatchedEvaluator", "policies"]
