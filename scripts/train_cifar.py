"""Train a built-in CIFAR network (ResNet-20/56/110 with or without shortcuts, VGG-9) on CIFAR-10.

    python scripts/train_cifar.py --model resnet56 --data cifar10:data/cifar-10-batches-py \\
        --out results/li2018/resnet56.pt [--epochs 300] [--batch-size 128] [--lr 0.1] \\
        [--weight-decay 5e-4] [--schedule step|cosine] [--no-augment] [--device auto]

Li et al.'s (2018) recipe is the default: SGD with momentum 0.9, learning rate 0.1 divided by 10
at epochs 150, 225 and 275 of 300, weight decay 5e-4, batch 128, random crop (4 pixels of padding)
and horizontal flip. For their small- versus large-batch experiment train VGG-9 twice, with
``--batch-size 128`` and ``--batch-size 8192`` (see configs/li2018/vgg9.yaml).

The checkpoint ``{"state_dict", "epoch", "acc", "loss", "args"}`` is written to ``--out`` after
every epoch (``--save-every N`` for every N-th; the last epoch is always saved), atomically, so
``landscape compute --checkpoint`` can read it at any time. ``acc`` is the test accuracy (a
fraction), or the training accuracy if the data set has no test split. The data are read with
``landscape.data`` (Li et al.'s per-channel normalization), so training and evaluation see the
same inputs. Any size of CIFAR-format folder works, e.g. a tiny one for a test on a CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from landscape.config import DataSpec
from landscape.data import load_data
from landscape.engine import resolve_device
from landscape.errors import DataError
from landscape.models import build_model

MODELS = (
    "resnet20",
    "resnet20-noshort",
    "resnet56",
    "resnet56-noshort",
    "resnet110",
    "resnet110-noshort",
    "vgg9",
)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32×32 crop of the image padded by 4 zeros on each side, then a random flip.

    ``x`` is (B, C, H, W), already normalized, so the padding is the mean colour (as torchvision's
    RandomCrop before Normalize would give black; the difference does not matter for training).
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))  # (B, C, H + 8, W + 8)
    dy = torch.randint(0, 9, (b,), generator=generator)
    dx = torch.randint(0, 9, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)).to(x.device)  # (B, H)
    cols = (dx[:, None] + torch.arange(w)).to(x.device)  # (B, W)
    idx = torch.arange(b, device=x.device)[:, None, None]
    # (B, H, W, C) gathered per sample, back to (B, C, H, W)
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def learning_rate(args: argparse.Namespace, epoch: int) -> float:
    """The rate of ``epoch`` (0-based): step (÷10 at each milestone) or cosine to zero."""
    if args.schedule == "cosine":
        return args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
    return args.lr * 0.1 ** sum(epoch >= m for m in args.milestones)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple:
    """Mean cross-entropy and accuracy (fraction) over ``x, y`` in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(y), batch):
        out = model(x[start : start + batch])
        target = y[start : start + batch]
        loss += F.cross_entropy(out, target, reduction="sum").item()
        correct += int((out.argmax(1) == target).sum())
    return loss / len(y), correct / len(y)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    spec = DataSpec(name=args.data, split="train", max_samples=args.max_samples)
    x, y = load_data(spec).tensors(device)  # (N, 3, 32, 32) normalized, (N,)
    try:
        test_x, test_y = load_data(spec, split="test").tensors(device)
    except DataError:
        test_x = test_y = None
        print("no test split found: reporting the training accuracy")
    model = build_model(args.model, {}).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    gen = torch.Generator().manual_seed(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record: dict = {}
    for epoch in range(args.epochs):
        for group in opt.param_groups:
            group["lr"] = learning_rate(args, epoch)
        model.train()
        start = time.perf_counter()
        for idx in torch.randperm(len(y), generator=gen).split(args.batch_size):
            idx = idx.to(device)
            xb = augment(x[idx], gen) if args.augment else x[idx]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), y[idx]).backward()
            opt.step()
        train_loss, train_acc = evaluate(model, x, y, args.eval_batch_size)
        acc = train_acc
        if test_x is not None:
            _, acc = evaluate(model, test_x, test_y, args.eval_batch_size)
        done = epoch + 1
        record = {"epoch": done, "acc": acc, "loss": train_loss}
        print(
            f"epoch {done:3d}/{args.epochs}: lr {opt.param_groups[0]['lr']:.4g}, train loss "
            f"{train_loss:.4f}, train acc {train_acc:.4f}, "
            f"{'test' if test_x is not None else 'train'} acc {acc:.4f} "
            f"({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        if done % args.save_every == 0 or done == args.epochs:
            save(model, record, args)
    return record


def save(model: torch.nn.Module, record: dict, args: argparse.Namespace) -> None:
    """Write the checkpoint under a temporary name, then rename it over ``--out``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save({"state_dict": state, **record, "args": meta}, tmp)
    os.replace(tmp, args.out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, required=True, help="built-in CIFAR network")
    p.add_argument("--data", required=True, help="cifar10:DIR, the extracted python batches")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--epochs", type=int, default=300, help="epochs [300]")
    p.add_argument("--batch-size", type=int, default=128, help="samples per SGD step [128]")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate [0.1]")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum [0.9]")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay [5e-4]")
    p.add_argument("--schedule", choices=("step", "cosine"), default="step", help="[step]")
    p.add_argument(
        "--milestones",
        type=int,
        nargs="*",
        default=[150, 225, 275],
        help="step: epochs at which the rate is divided by 10 [150 225 275]",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random crop and flip [on]",
    )
    p.add_argument("--max-samples", type=int, default=None, help="train on a seeded subset")
    p.add_argument("--eval-batch-size", type=int, default=1000, help="[1000]")
    p.add_argument("--save-every", type=int, default=1, help="save every N epochs [1]")
    p.add_argument("--seed", type=int, default=0, help="initialization, batch order, augmentation")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "eval_batch_size", "save_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
