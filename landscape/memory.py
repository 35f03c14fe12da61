"""The memory a run needs, told before it starts and checked against what the device has free.

A run holds, besides the model's weights W (already loaded when this is asked):

- the directions: ``count`` tensors the size of the moved weights M, in the weights' dtype (built
  in float32 first, so a half-precision model also needs a transient float32 copy of M);
- one working copy θ + a·d1 + b·d2 of the moved weights, made per point (the per-point path);
- the activations of one batch: measured on one real batch at θ (the sizes of every module's
  output, the largest few live at once) plus, for a language model, the attention scores and the
  logits the loss reads (``B·T·V`` floats, three times: logits, their float32 copy, log-softmax);
- the file's directions while it is created in memory (HDF5's core driver) and copied out once,
  twice their float32 size when stored in ``full``, nothing when kept as their seed;
- when the forward is split at the moved tensors (``engine.split``), the frontiers of the whole
  evaluation set: in the device's memory when they fit the memory budget, else, from a GPU, in
  the host's memory when they fit half of what it has free, else on disk; only the first counts
  here (``engine.frontier.where`` decides, for the plan as for the engine).

The estimate errs high: a run told it fits does fit, within the activations' rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from landscape.errors import ConfigError

GB = 1e9
# where a split forward's frontiers are kept (``engine.frontier.where``), as the plan and ``info``
# say it; only "memory" (the run's device) counts against the device's free memory
FRONTIER_PLACES = {"memory": "kept in memory", "host": "kept in host memory", "disk": "on disk"}
LIVE_OUTPUTS = 4  # of the per-module outputs, how many an inference forward holds at once


@dataclass(frozen=True)
class MemoryPlan:
    weights: int
    directions: int
    working: int
    activations: int
    build: int  # transient: float32 directions of a half-precision model while built
    file: int
    available: int | None  # free now (the weights already loaded), None when unknown
    device: str
    frontier: int = 0  # a split forward's kept frontiers (0: no split)
    frontier_store: str = "memory"  # where they are kept: memory | host | disk (FRONTIER_PLACES)

    @property
    def more(self) -> int:
        """What the run will still allocate beyond the loaded weights, at its peak."""
        kept = self.frontier if self.frontier_store == "memory" else 0
        return self.directions + self.working + self.activations + kept + max(self.build, self.file)

    def parts(self, on_device: bool = False) -> list[str]:
        """What the run holds, in words; ``on_device``: only what the device's memory holds (a
        frontier kept in the host's memory or on disk left out)."""
        parts = [
            f"weights {size(self.weights)} (loaded)",
            f"directions {size(self.directions)}",
            f"working copy {size(self.working)}",
            f"activations ~{size(self.activations)}",
        ]
        if self.file:
            parts.append(f"file {size(self.file)} while written")
        if self.frontier and (self.frontier_store == "memory" or not on_device):
            parts.append(f"frontier {size(self.frontier)} {FRONTIER_PLACES[self.frontier_store]}")
        return parts

    def text(self) -> str:
        free = "" if self.available is None else f", {size(self.available)} free"
        needed = f"{size(self.more)} more needed{free}"
        return f"memory on {self.device}: {', '.join(self.parts())}: {needed}"

    def check(self) -> None:
        """ConfigError when the run cannot fit in what is free, naming the ways to shrink it."""
        if self.available is None or self.more <= self.available:
            return
        raise ConfigError(
            f"this run needs about {size(self.more)} more {self.device} memory than its loaded "
            f"weights ({', '.join(self.parts(on_device=True)[1:])}), but {size(self.available)} are free; move "
            "fewer tensors (--params), lower --batch-size, keep the directions as their seed "
            "(--store-directions seed), use --dtype bfloat16, or use a bigger machine"
        )


def size(n: int) -> str:
    """``4.40 GB``, ``12.3 MB``: bytes for a reader."""
    return f"{n / GB:.2f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` now: MemAvailable on a Linux CPU, the CUDA free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def activation_bytes(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> int:
    """Activations of one ``batch_size`` batch, from a forward on the sample batch ``x``: the
    largest module outputs live at once, attention scores, and the loss's copies of the logits."""
    sizes: list[int] = []

    def record(_m: torch.nn.Module, _i: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            sizes.append(out.numel() * out.element_size())
        elif isinstance(out, (tuple, list)):
            sizes.extend(t.numel() * t.element_size() for t in out if isinstance(t, torch.Tensor))

    handles = []
    try:
        handles = [m.register_forward_hook(record) for m in model.modules() if m is not model]
        with torch.inference_mode():
            logits = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError, AttributeError):
        return 0  # a model that cannot run on this data: the run's probe says so, in one line
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor):
        return 0
    scale = batch_size / max(1, len(x))
    live = sum(sorted(sizes, reverse=True)[:LIVE_OUTPUTS])
    attention = _attention_scores(model, x)
    return int(scale * (live + attention + 3 * logits.numel() * 4))


def _attention_scores(model: torch.nn.Module, x: torch.Tensor) -> int:
    """B·heads·T² float32 scores of one attention layer (a transformer's config says its heads)."""
    heads = getattr(getattr(model, "config", None), "num_attention_heads", None)
    if not heads or x.ndim != 2:
        return 0
    return int(x.shape[0] * heads * x.shape[1] ** 2 * 4 * 2)


def plan(
    centre: dict[str, torch.Tensor],
    moved: list[str],
    count: int,
    activations: int,
    store: str,
    device: torch.device,
    builds_in_weights_dtype: bool = False,
    frontier: tuple[int, str] | None = None,
) -> MemoryPlan:
    """The plan for ``count`` directions over the ``moved`` tensors of ``centre``;
    ``builds_in_weights_dtype``: the family never holds float32 copies of half-precision ones;
    ``frontier``: a split forward's frontier bytes and where they go (``select.frontier_plan``)."""
    moved_bytes = sum(centre[n].numel() * centre[n].element_size() for n in moved)
    moved_f32 = sum(centre[n].numel() * 4 for n in moved)
    half = any(centre[n].element_size() < 4 for n in moved)
    return MemoryPlan(
        weights=sum(t.numel() * t.element_size() for t in centre.values()),
        directions=count * moved_bytes,
        working=moved_bytes,
        activations=activations,
        build=count * moved_f32 if half and not builds_in_weights_dtype else 0,
        file=0 if store == "seed" else 2 * count * moved_f32,
        available=available_bytes(device),
        device=str(device),
        frontier=frontier[0] if frontier else 0,
        frontier_store=frontier[1] if frontier else "memory",
    )
