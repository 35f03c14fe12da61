"""Li et al.'s pipeline end to end on a tiny CIFAR-format folder: train, compute, plot.

scripts/train_cifar.py trains ResNet-20 for one epoch, then configs/li2018/resnet56.yaml (with
flags shrinking it to ResNet-20 on a 3×3 grid) computes a surface at that checkpoint, and
``landscape plot`` draws it. Real files and real subprocesses throughout.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.store import read_surface

ROOT = Path(__file__).resolve().parents[1]


def write_tiny_cifar(folder: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """data_batch_1..5 and test_batch of random images, as CIFAR-10's python pickles."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            "data": rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=per_batch).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


# the tool through the interpreter running the tests: a bare `landscape` is on no fresh PATH
LANDSCAPE = (sys.executable, "-m", "landscape")


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_train_compute_plot(tmp_path: Path) -> None:
    data = write_tiny_cifar(tmp_path / "cifar-10-batches-py")
    ckpt = tmp_path / "resnet20.pt"
    log = run(
        sys.executable, str(ROOT / "scripts" / "train_cifar.py"), "--model", "resnet20",
        "--data", f"cifar10:{data}", "--out", str(ckpt), "--epochs", "1", "--batch-size", "50",
        "--device", "cpu",
    )  # fmt: skip
    assert "epoch   1/1" in log
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 1 and 0.0 <= saved["acc"] <= 1.0 and "state_dict" in saved

    surface = tmp_path / "s.h5"
    run(
        *LANDSCAPE, "compute", "--config", str(ROOT / "configs" / "li2018" / "resnet56.yaml"),
        "--model", "resnet20", "--checkpoint", str(ckpt), "--data", f"cifar10:{data}",
        "--x=-1:1:3", "--y=-1:1:3", "--device", "cpu", "--engine", "reference", "--compile", "off",
        "--out", str(surface), "--quiet",
    )  # fmt: skip
    s = read_surface(surface)
    assert s.shape == (3, 3) and s.done.all()
    assert np.isfinite(s.values["train_loss"]).all() and np.isfinite(s.values["train_acc"]).all()
    assert s.attrs["direction"] == "filter-norm"

    figures = run(*LANDSCAPE, "plot", str(surface), "--out", str(tmp_path / "plots"))
    files = [Path(line) for line in figures.splitlines() if line.strip()]
    assert files and all(f.is_file() and f.stat().st_size > 0 for f in files)


def test_augment_keeps_shape_and_pixels() -> None:
    """The crop-and-flip moves pixels around but never invents values (besides zero padding)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from train_cifar import augment, learning_rate, parse_args
    finally:
        sys.path.pop(0)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) + 1
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):
        values = set(out[i].unique().tolist()) - {0.0}
        assert values <= set(x[i].unique().tolist())
    args = parse_args(["--model", "vgg9", "--data", "cifar10:x", "--out", "m.pt"])
    assert [learning_rate(args, e) for e in (0, 149, 150, 225, 299)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.0001]
    )
    args.schedule = "cosine"
    assert learning_rate(args, 0) == pytest.approx(0.1) and learning_rate(
        args, 150
    ) == pytest.approx(0.05)
