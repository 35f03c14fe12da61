"""Train the built-in mlp on scikit-learn's digits with SGD, saving a checkpoint every epoch.

    python scripts/train_trajectory.py [--out results/trajectory] [--epochs 30] [--seed 0]

Writes ``epoch_000.pt`` (the initialization) and ``epoch_001.pt`` … ``epoch_NNN.pt`` as
``{"state_dict": ...}``, a few seconds on a CPU. The folder is a training trajectory for
``landscape compute --direction trajectory --trajectory results/trajectory`` (the last epoch is
the centre), and two runs with different ``--seed`` give end points for ``--direction
interpolate``. Plain SGD (no momentum) and a small batch keep the path long and curved enough for
its principal plane to show something.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from landscape.config import DataSpec
from landscape.data import load_data
from landscape.models import build_model


def train(
    out: Path, *, epochs: int, seed: int, lr: float, batch_size: int, momentum: float
) -> list[Path]:
    """Train and save one checkpoint per epoch into ``out``; return the files in order."""
    torch.manual_seed(seed)
    model = build_model("mlp", {})
    data = load_data(DataSpec(name="digits", split="train"))
    x, y = next(iter(data.batches(len(data))))  # the whole training split, (N, 64) and (N,)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    files = [_save(model, out, 0)]
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        files.append(_save(model, out, epoch))
        with torch.no_grad():
            model.eval()
            loss = torch.nn.functional.cross_entropy(model(x), y).item()
            acc = (model(x).argmax(1) == y).float().mean().item()
        print(f"epoch {epoch:3d}: train loss {loss:.4f}, accuracy {acc:.3f} -> {files[-1]}")
    return files


def _save(model: torch.nn.Module, out: Path, epoch: int) -> Path:
    path = out / f"epoch_{epoch:03d}.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": epoch}, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/trajectory"), help="folder")
    parser.add_argument("--epochs", type=int, default=30, help="epochs (one checkpoint each)")
    parser.add_argument("--seed", type=int, default=0, help="initialization and batch order")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per SGD step")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: a plane needs three checkpoints")
    train(
        args.out,
        epochs=args.epochs,
        seed=args.seed,
        lr=args.lr,
        batch_size=args.batch_size,
        momentum=args.momentum,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
