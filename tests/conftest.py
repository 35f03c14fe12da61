"""Shared fixtures: tiny models and data written to real temporary files."""

from __future__ import annotations

import os

# idle OpenMP threads sleep instead of spinning: on a machine whose cores other processes share
# (CI runners, parallel test runs), spinning threads slowed tests 20-50x
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# compile records and the inductor cache of test runs stay out of the user's ~/.cache
os.environ.setdefault("LANDSCAPE_CACHE", __import__("tempfile").mkdtemp(prefix="landscape-cache-"))

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "li2018-resnet20"
if not FIXTURES.is_dir():  # CI clones main with shared/ beside it
    FIXTURES = Path(
        os.environ.get("LANDSCAPE_FIXTURES", "../shared/fixtures/li2018-resnet20")
    ).resolve()


@pytest.fixture(scope="session")
def li_fixture() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip("Li et al. reference fixture folder not found (../shared/fixtures)")
    return FIXTURES


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """40 samples of 6 features in 3 classes, as npz arrays x, y."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture
def tiny_mlp_ckpt(tmp_path: Path, tiny_npz: Path) -> Path:
    """A checkpoint of the built-in mlp (6 features, 3 classes) trained on tiny_npz."""
    from landscape.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    data = np.load(tiny_npz)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    path = tmp_path / "tiny_mlp.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A compile cache folder of the test's own (records and inductor's kernels), none chosen
    yet in this process."""
    import tempfile

    from landscape.engine import compile_cache

    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(compile_cache, "_chosen", [], raising=False)  # none from an earlier test
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # private fallback folders go here
    return tmp_path / "cache"


@pytest.fixture
def slow_model(tmp_path: Path) -> Path:
    """A model file (``PATH:make``) for tiny_npz whose every forward sleeps 20 ms, so a run
    killed at a random moment stops mid-grid."""
    path = tmp_path / "slow.py"
    path.write_text(
        """
import time, torch
class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 3)
    def forward(self, x):
        time.sleep(0.02)  # make each point take a while, so kills land mid-run
        return self.fc2(torch.relu(self.fc1(x)))
def make():
    return Slow()
"""
    )
    return path
