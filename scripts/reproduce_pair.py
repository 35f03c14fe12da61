"""Reproduce the three classic two-network findings on the built-in digits, on a CPU.

    python scripts/reproduce_pair.py [--out results/pair] [--only mlp32 mlp512 resnet20]
                                     [--quick]

For each setup, two networks of one architecture are trained from seeds 0 and 1, then
``landscape study pair`` (``landscape.runs.study``) computes the straight path between them, the
paths to B aligned by weight and by activation matching, a trained Bézier curve, and the plane
through A, B and the bend. The table printed at the end holds every path's loss and error
barrier ± 1 s.e.; the findings it tests (Entezari et al. 2022; Ainsworth et al. 2023; Garipov et
al. 2018):

1. the straight path crosses a barrier;
2. after alignment the barrier is much smaller, and smaller for the wider MLP;
3. along the trained Bézier curve it is near zero.

Setups (``SETUPS``): the built-in ``mlp`` at hidden widths 32 and 512 on the 8×8 digits, and
``resnet20`` (BatchNorm; paths evaluated with ``--bn recalibrate``) on the digits upsampled to
32×32 with three equal channels, read through this file's data factory
``scripts/reproduce_pair.py:digits32``. Everything is seeded: a rerun gives the same table, and
a rerun in the same ``--out`` reuses the checkpoints and completed study files.
``--quick`` is the smallest setup only (mlp32, few epochs, coarse grids: the test suite's).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIGITS_TRAIN = 1437  # landscape.data.DIGITS_TRAIN_SIZE: the first 80 % are `train`
SIDE = 32  # the ResNet's input: 32×32, as CIFAR's


def digits32(split: str = "train") -> torch.utils.data.TensorDataset:
    """scikit-learn's digits (pixel/16) upsampled bilinearly from 8×8 to 32×32, three equal
    channels (resnet20 takes RGB), with the built-in ``digits``' 80/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)  # (N,1,8,8)
    x = torch.nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(digits.target.astype(np.int64))
    part = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    return torch.utils.data.TensorDataset(x[part], y[part])


@dataclass(frozen=True)
class Setup:
    """One architecture: how it is built and trained, and the study's grids."""

    name: str
    model: str
    data: str
    args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    lr: float = 0.05
    batch: int = 32
    bn: str = "eval"
    x: str = "-0.2:1.2:29"
    plane: tuple[str, int] = ("-0.2:1.2:29", 21)  # the plane's x axis, points along y (auto)
    samples: int | None = None  # evaluation samples (None: the whole split)
    # the bend's training: Garipov et al. train a curve as long as an end point or longer; an
    # MLP's epoch on the digits is about 30 ms, so its curve gets ten times the end points' 30
    curve_epochs: int = 300


FACTORY = f"{Path(__file__).as_posix()}:digits32"
SETUPS = {
    "mlp32": Setup("mlp32", "mlp", "digits", {"hidden": 32}),
    "mlp512": Setup("mlp512", "mlp", "digits", {"hidden": 512}),
    "resnet20": Setup(
        "resnet20",
        "resnet20",
        FACTORY,
        epochs=8,
        lr=0.05,
        batch=64,
        bn="recalibrate",
        x="-0.2:1.2:15",
        plane=("-0.2:1.2:8", 6),
        samples=360,
        curve_epochs=40,  # five times its end points' 8 (an epoch here is seconds)
    ),
}
QUICK = Setup(
    "mlp32-quick", "mlp", "digits", {"hidden": 32}, epochs=6, x="0:1:6",
    plane=("0:1:5", 4), curve_epochs=2,
)  # fmt: skip


def train(setup: Setup, seed: int, path: Path) -> Path:
    """Train one network by SGD (momentum 0.9) on the training split; ``{"state_dict"}`` saved."""
    from landscape.config import DataSpec
    from landscape.data import load_data
    from landscape.models import build_model

    if path.exists():
        return path
    torch.manual_seed(seed)
    model = build_model(setup.model, dict(setup.args))
    data = load_data(DataSpec(name=setup.data, split="train"))
    x, y = data.tensors()
    opt = torch.optim.SGD(model.parameters(), lr=setup.lr, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(setup.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(setup.batch):
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def study(setup: Setup, out: Path) -> dict[str, Any]:
    """Train A and B, run the pair study, return each path's barrier."""
    from landscape.config import DataSpec, ModelSpec
    from landscape.runs.study import PairStudy, run_pair

    a = train(setup, 0, out / setup.name / "a.pt")
    b = train(setup, 1, out / setup.name / "b.pt")
    spec = PairStudy(
        ModelSpec(setup.model, str(a), dict(setup.args)),
        str(b),
        DataSpec(setup.data, "train", setup.samples),
        str(out / setup.name / "study"),
        x=setup.x, bn=setup.bn, curve_epochs=setup.curve_epochs,
        plane_x=setup.plane[0], plane_y_points=setup.plane[1],
    )  # fmt: skip
    return run_pair(spec).barriers


def cell(b: Any) -> str:
    """``loss ± s.e. / error % ± s.e.``"""
    if b is None:
        return "-"
    text = f"{b.value:.3g} ± {b.se:.2g}" if b.se is not None else f"{b.value:.3g}"
    if b.error is not None:
        ese = f" ± {100 * b.error_se:.2g}" if b.error_se is not None else ""
        text += f" / {100 * b.error:.2g}%{ese}"
    return text


def table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per setup, one column per path."""
    paths = ["straight", "aligned-weights", "aligned-activations", "curve"]
    lines = ["| setup | " + " | ".join(paths) + " |", "|---" * (len(paths) + 1) + "|"]
    for name, barriers in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(barriers.get(p)) for p in paths) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/pair"), help="folder")
    parser.add_argument("--only", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument("--quick", action="store_true", help="the smallest setup, coarse grids")
    args = parser.parse_args()
    # interpolate's d1 = B − A is largely aligned with A's weights: known, and said once here
    warnings.filterwarnings("ignore", message="d1 .* is largely aligned with the weights")
    setups = [QUICK] if args.quick else [SETUPS[n] for n in args.only]
    results = {}
    for setup in setups:
        start = time.perf_counter()
        results[setup.name] = study(setup, args.out)
        print(f"{setup.name}: {time.perf_counter() - start:.0f} s", flush=True)
    print("train-split loss barrier ± 1 s.e. / error barrier (percentage points) ± 1 s.e.")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
