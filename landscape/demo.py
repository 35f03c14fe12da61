"""``landscape demo``: the whole pipeline on built-in data, in seconds, with nothing to download.

Trains the built-in ``mlp`` on scikit-learn's bundled digits, saves the checkpoint, computes a
2-D filter-normalized surface around it and draws every plot into one folder, with an
interactive 3-D view (``surface.html``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from landscape._files import replaced_atomically, writable_folder, write_bytes_atomically
from landscape.config import ComputeConfig
from landscape.data import load_data
from landscape.models import build_model
from landscape.plot import render_all
from landscape.plot.export import export_surface
from landscape.runs.surface import ProgressFactory, run_compute

DEMO_CONFIG = {
    "model": {"name": "mlp", "checkpoint": None},
    "data": {"name": "digits", "split": "train"},
    "direction": {"name": "filter-norm", "seed": 0, "ignore": "biasbn", "norm": "filter"},
    "grid": {"x": "-1:1:51", "y": "-1:1:51"},
    "eval": {"loss": "cross-entropy", "device": "cpu"},
}


def train_mlp(epochs: int = 60, seed: int = 0) -> torch.nn.Module:
    """Train the built-in mlp on the digits training split with Adam (a few seconds on a CPU)."""
    torch.manual_seed(seed)
    model = build_model("mlp", {})
    data = load_data(ComputeConfig.from_dict(_config("unused.h5")).data)
    x, y = (torch.cat(t) for t in zip(*data.batches(4096, "cpu"), strict=True))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def run_demo(
    out_dir: Path,
    *,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Train, compute and plot into ``out_dir``; return the paths written."""
    writable_folder(out_dir)
    log("training the built-in mlp on scikit-learn's digits ...")
    ckpt = out_dir / "mlp_digits.pt"
    with replaced_atomically(ckpt) as tmp:
        torch.save({"state_dict": train_mlp().state_dict()}, tmp)
    config = ComputeConfig.from_dict(_config(str(out_dir / "surface.h5"), str(ckpt)))
    log(f"computing a 51 x 51 filter-normalized surface into {config.out} ...")
    return [str(ckpt), *compute_and_draw(config, out_dir, progress, log)]


def compute_and_draw(
    config: ComputeConfig,
    out_dir: Path,
    progress: ProgressFactory | None,
    log: Callable[[str], None],
) -> list[str]:
    """The demos' second half: the config saved, the surface computed, every figure and the 3-D
    view drawn into ``out_dir``; the paths written."""
    write_bytes_atomically(out_dir / "config.yaml", config.to_yaml().encode())
    result = run_compute(config, overwrite=True, progress=progress)
    log(
        f"{result.total} points in {result.seconds:.1f} s ({result.points_per_second:.1f} points/s)"
    )
    from landscape.store import read_surface

    surface = read_surface(config.out)
    figures = render_all(surface, out_dir)
    view = export_surface(surface, out_dir / "surface.html", log=True)  # opens with no network
    return [str(out_dir / "config.yaml"), config.out, *map(str, figures), str(view)]


def _config(out: str, checkpoint: str | None = None) -> dict:
    cfg = {k: dict(v) for k, v in DEMO_CONFIG.items()}
    cfg["model"]["checkpoint"] = checkpoint
    cfg["out"] = out
    return cfg
