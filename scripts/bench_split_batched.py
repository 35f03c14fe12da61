"""The batched engine with and without the forward split (issue 27), in one process.

    python scripts/bench_split_batched.py                    # CPU, defaults below
    python scripts/bench_split_batched.py --device cuda --samples 20000 --k 32

An MLP of ``--depth`` hidden layers of width ``--width`` with only its last layer moving, an
``--grid``² grid. Without the split the batched engine's ``vmap`` runs the unmoved layers once per
chunk of K points (per data batch); with it they run once per data batch for the whole run and each
chunk runs only the last layer. Both sides evaluate every point of the grid (frontier computation
included on the split side), in turn, ``--repeats`` times (the best counts: a shared machine only
slows a run down); the losses are compared to 1e-6 relative.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from landscape.engine import split
from landscape.engine.batched import BatchedEvaluator
from landscape.losses import get_loss


def _model(args: argparse.Namespace) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    width_in = args.features
    for _ in range(args.depth):
        layers += [nn.Linear(width_in, args.width), nn.ReLU()]
        width_in = args.width
    return nn.Sequential(*layers, nn.Linear(width_in, 10)).eval()


def _run(evaluator: BatchedEvaluator, points: list[tuple[float, float]]) -> tuple[list, float]:
    """Every point, the frontiers of a split computed inside the clock (a fresh evaluator)."""
    _sync(evaluator)
    start = time.perf_counter()
    losses = [r.loss for r in evaluator.evaluate_block(points)]
    _sync(evaluator)
    return losses, time.perf_counter() - start


def _sync(evaluator: BatchedEvaluator) -> None:
    if next(iter(evaluator.centre.values())).is_cuda:
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = _model(args).to(device)
    last = f"{2 * args.depth}"
    moved = [f"{last}.weight", f"{last}.bias"]
    centre = {k: v.detach().clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    dirs = [
        {n: (torch.randn(centre[n].shape, generator=g) * 0.3).to(device) for n in moved}
        for _ in range(2)
    ]
    x = torch.randn(args.samples, args.features, generator=g).to(device)
    y = torch.randint(0, 10, (args.samples,), generator=g).to(device)
    batches = lambda: ((x[i : i + args.batch], y[i : i + args.batch])  # noqa: E731
                       for i in range(0, args.samples, args.batch))  # fmt: skip
    axis = np.linspace(-1, 1, args.grid)
    points = [(float(a), float(b)) for a in axis for b in axis]
    made = split.split_forward(model, set(moved))
    assert isinstance(made, split.Split), made
    loss = get_loss("cross-entropy")

    def make(used: split.Split | None) -> BatchedEvaluator:
        return BatchedEvaluator(model, centre, dirs, batches, loss, k=args.k, split=used)

    make(made).evaluate_block(points[: args.k])  # warm-up of both paths (allocator, kernels)
    make(None).evaluate_block(points[: args.k])
    seconds: dict[str, list[float]] = {"split": [], "full": []}
    losses = {}
    for _ in range(args.repeats):
        for name, used in (("split", made), ("full", None)):
            losses[name], t = _run(make(used), points)
            seconds[name].append(t)
    diff = np.max(np.abs(np.subtract(losses["split"], losses["full"])) / np.abs(losses["full"]))
    best = {name: min(ts) for name, ts in seconds.items()}
    result = {
        "device": str(device), "threads": torch.get_num_threads(),
        "model": f"mlp {args.features}-{args.width}x{args.depth}-10, last layer moving",
        "points": len(points), "k": args.k, "samples": args.samples, "batch": args.batch,
        "seconds": seconds, "speedup": round(best["full"] / best["split"], 2),
        "max_rel_diff": float(f"{diff:.2e}"),
    }  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
