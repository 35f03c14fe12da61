"""Parameter dicts: the ordered ``name → tensor`` maps that directions and points are made of.

A tensor with ``ndim >= 2`` has *filters*: its slices along dim 0 (a conv's output channels, a
linear layer's output units). Tensors with ``ndim <= 1`` (biases, BatchNorm weight and bias) have
none; under ``ignore=biasbn`` directions are zero on them, as in Li et al. (2018).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping

import torch

TensorDict = Mapping[str, torch.Tensor]


def parameters_of(model: torch.nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The model's parameters in ``model.parameters()`` order, detached (no copy)."""
    return OrderedDict((name, p.detach()) for name, p in model.named_parameters())


def buffers_of(model: torch.nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The model's buffers (BN running statistics, ...), detached (no copy)."""
    return OrderedDict((name, b.detach()) for name, b in model.named_buffers())


class Float32View(Mapping):
    """A read-only map of tensors seen in float32, each converted when it is read (no copy for
    float32 ones): a bfloat16 model's weights are never copied whole to float32 at once."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name].float()

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def select(names: list[str], include: list[str], exclude: list[str]) -> list[str]:
    """The names that match an ``include`` glob (every name when there is none) and no
    ``exclude`` glob, in order. ``*`` matches across dots (``model.layers.11.*``). A glob that
    matches no name is a ValueError naming it: a typo would otherwise move nothing, or all."""
    from fnmatch import fnmatchcase

    for flag, globs in (("--params", include), ("--exclude", exclude)):
        for glob in globs:
            if not any(fnmatchcase(n, glob) for n in names):
                sample = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                raise ValueError(
                    f"{flag} {glob!r} matches none of the model's {len(names)} parameter tensors "
                    f"({sample}); `landscape inspect` lists them"
                )
    kept = [n for n in names if not include or any(fnmatchcase(n, g) for g in include)]
    return [n for n in kept if not any(fnmatchcase(n, g) for g in exclude)]


def has_filters(t: torch.Tensor) -> bool:
    return t.ndim >= 2


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    """‖t[i]‖ for every filter i, shape (n_out,) (float64 for stability)."""
    return t.detach().reshape(t.shape[0], -1).double().norm(dim=1)


INNER_CHUNK = 1 << 20  # elements converted to float64 at a time: a few MB, in cache


def inner(a: TensorDict, b: TensorDict) -> float:
    """⟨a, b⟩ summed over every tensor, in float64 (converted a chunk at a time, so a 1B-parameter
    model's tensors are never copied whole to float64)."""
    total = 0.0
    for k in a:
        x, y = a[k].detach().reshape(-1), b[k].detach().reshape(-1)
        for s in range(0, x.numel(), INNER_CHUNK):
            total += float(
                torch.dot(x[s : s + INNER_CHUNK].double(), y[s : s + INNER_CHUNK].double())
            )
    return total


def global_norm(a: TensorDict) -> float:
    return inner(a, a) ** 0.5


def cosine(a: TensorDict, b: TensorDict) -> float:
    """cos(a, b) = ⟨a, b⟩ / (‖a‖‖b‖); NaN when either is zero."""
    na, nb = global_norm(a), global_norm(b)
    return inner(a, b) / (na * nb) if na > 0 and nb > 0 else float("nan")


def combine(
    centre: TensorDict,
    directions: list[TensorDict],
    coords: tuple[float, ...],
    work: Workspace | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """θ + Σ_k c_k·d_k on the tensors the directions cover; every other tensor as it is.

    Returns a new dict; ``centre`` is never written. With a ``work`` space the moved tensors are
    written into its buffers, allocated once and reused at every point (a 1B-parameter model's
    4 GB working copy is not allocated and faulted in again per point); the arithmetic is the
    same either way, ``(θ + c_1·d_1) + c_2·d_2`` with each product rounded, so both give the same
    bits. The returned tensors are then valid until the next call with that space.
    """
    out = OrderedDict(centre)
    for name in directions[0]:
        v = centre[name]
        if work is not None:
            out[name] = work.combine(
                name, v, [(c, d[name]) for c, d in zip(coords, directions, strict=True)]
            )
            continue
        for c, d in zip(coords, directions, strict=True):
            if c != 0.0:
                v = v + c * d[name]
        out[name] = v
    return out


class Workspace:
    """Buffers for one point's moved tensors and one scratch product, reused point after point."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.scratch: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def combine(
        self, name: str, v: torch.Tensor, terms: list[tuple[float, torch.Tensor]]
    ) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None or buf.shape != v.shape or buf.dtype != v.dtype:
            buf = self.buffers[name] = torch.empty_like(v)
        first = True
        for c, d in terms:
            if c != 0.0:
                prod = self._scratch(d)
                torch.mul(d, c, out=prod)  # c·d rounded, as in v + c * d
                if first:
                    torch.add(v, prod, out=buf)  # θ + c·d straight into the buffer, no copy
                else:
                    buf.add_(prod)
                first = False
        if first:  # every coordinate 0: θ itself
            buf.copy_(v)
        return buf

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        flat = self.scratch.get(key)
        if flat is None or flat.numel() < like.numel():
            flat = self.scratch[key] = torch.empty(
                like.numel(), dtype=like.dtype, device=like.device
            )
        return flat[: like.numel()].view(like.shape)
