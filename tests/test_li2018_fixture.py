"""Reproduce Li et al.'s reference surfaces from their own checkpoint, data and direction files.

Their files store 2-D values in meshgrid(x, y) order and accuracy in percent; ``read_surface``
converts both, so the comparison below is in our (x, y) orientation with accuracy as a fraction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.config import ComputeConfig
from landscape.data import load_data
from landscape.directions import load_directions
from landscape.engine import ReferenceEvaluator
from landscape.losses import get_loss
from landscape.session import Session
from landscape.store import read_surface

RTOL = 1e-5  # the bar: the reference values to within 1e-5 relative


def compute_args(fx: Path, directions: str, out: Path, *grid: str) -> list[str]:
    return [
        "compute", "--model", "resnet20", "--checkpoint", str(fx / "model_20.t7"),
        "--data", f"cifar10:{fx / 'cifar-10-batches-py'}", "--batch-size", "128",
        "--directions", str(fx / directions), *grid, "--out", str(out), "--quiet",
    ]  # fmt: skip


def test_1d_surface_reproduced(tmp_path: Path, li_fixture: Path) -> None:
    out = tmp_path / "li1d.h5"
    result = CliRunner().invoke(
        main, compute_args(li_fixture, "directions_1d.h5", out, "--x=-1:1:11")
    )
    assert result.exit_code == 0, result.output
    ours, ref = read_surface(out), read_surface(li_fixture / "surface_1d_11.h5")
    np.testing.assert_allclose(ours.values["train_loss"], ref.values["train_loss"], rtol=RTOL)
    np.testing.assert_allclose(
        ours.values["train_acc"], ref.values["train_acc"], rtol=0, atol=1e-12
    )


def test_2d_points_reproduced(li_fixture: Path) -> None:
    """A few points of the 2-D surface through the library (the whole grid is the slow test)."""
    cfg = ComputeConfig.from_dict(
        {
            "model": {"name": "resnet20", "checkpoint": str(li_fixture / "model_20.t7")},
            "data": {"name": f"cifar10:{li_fixture / 'cifar-10-batches-py'}", "batch_size": 128},
            "grid": {"x": "-1:1:11", "y": "-1:1:11"},
            "out": "unused.h5",
        }
    )
    prep = Session.from_config(cfg)
    ds = load_directions(str(li_fixture / "directions_2d.h5"), prep.theta, prep.centre, 2)
    data = load_data(cfg.data)
    ev = ReferenceEvaluator(
        prep.model,
        prep.centre,
        ds.vectors,
        lambda: data.batches(128),
        get_loss("cross-entropy"),
    )
    ref = read_surface(li_fixture / "surface_2d_11x11.h5")
    for i, j in [(0, 0), (5, 5), (8, 3)]:  # a corner, the centre, and an off-diagonal point
        r = ev.evaluate((float(ref.x[i]), float(ref.y[j])))
        assert r.loss == pytest.approx(ref.values["train_loss"][i, j], rel=RTOL), (i, j)
        assert r.acc == pytest.approx(ref.values["train_acc"][i, j], abs=1e-12), (i, j)


@pytest.mark.slow
def test_2d_surface_reproduced(tmp_path: Path, li_fixture: Path) -> None:
    out = tmp_path / "li2d.h5"
    args = compute_args(li_fixture, "directions_2d.h5", out, "--x=-1:1:11", "--y=-1:1:11")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ours, ref = read_surface(out), read_surface(li_fixture / "surface_2d_11x11.h5")
    np.testing.assert_allclose(ours.values["train_loss"], ref.values["train_loss"], rtol=RTOL)
    np.testing.assert_allclose(
        ours.values["train_acc"], ref.values["train_acc"], rtol=0, atol=1e-12
    )


def test_direction_file_of_wrong_model_is_refused(
    tmp_path: Path, li_fixture: Path, tiny_npz: Path
) -> None:
    result = CliRunner().invoke(
        main,
        ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--data", f"npz:{tiny_npz}",
         "--directions", str(li_fixture / "directions_1d.h5"), "--x=-1:1:3", "--out", str(tmp_path / "s.h5")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "another --model" in result.stderr
    result = CliRunner().invoke(
        main,
        ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--data", f"npz:{tiny_npz}",
         "--directions", str(li_fixture / "surface_1d_11.h5"), "--x=-1:1:3", "--out", str(tmp_path / "s.h5")],
    )  # fmt: skip
    assert result.exit_code == 1 and "direction file it was made from" in result.stderr


BN_NET = """
import torch
def make():
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )
"""


@pytest.mark.parametrize("counters", [True, False])
def test_states_direction_files_are_read(tmp_path: Path, tiny_npz: Path, counters: bool) -> None:
    """A direction file in the layout of the reference's ``--dir_type states``: one dataset per
    ``state_dict()`` entry in its order, BatchNorm statistics and (from PyTorch 0.4.1 on) the
    ``num_batches_tracked`` scalars included. At a = 1 the loss is that of the network whose state
    dict is θ + d, every running statistic moved along its own entry (the oracle: plain
    ``load_state_dict`` and a forward in eval mode)."""
    import h5py
    import torch
    import torch.nn.functional as F

    (tmp_path / "bn.py").write_text(BN_NET)
    namespace: dict = {}
    exec(BN_NET, namespace)
    torch.manual_seed(0)
    net = namespace["make"]()
    data = np.load(tiny_npz)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    net.train()
    for _ in range(3):  # running statistics that are not the defaults
        net(x)
    ckpt = tmp_path / "bn.pt"
    torch.save(net.state_dict(), ckpt)
    state = net.state_dict()
    g = torch.Generator().manual_seed(1)
    entries = [
        (k, v) for k, v in state.items() if counters or not k.endswith("num_batches_tracked")
    ]
    steps = {k: 0.1 * torch.randn(v.shape, generator=g) for k, v in entries}
    for k in steps:
        if k.endswith("running_var"):
            steps[k] = steps[k].abs()  # keep the variance positive at a = 1
        if k.endswith("num_batches_tracked"):
            steps[k] = torch.tensor(5.0)  # a counter: must be ignored
    path = tmp_path / "states.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("xdirection")
        for i, (k, _) in enumerate(entries):
            group[str(i)] = steps[k].numpy()

    out = tmp_path / "s.h5"
    result = CliRunner().invoke(main, [
        "compute", "--model", f"{tmp_path / 'bn.py'}:make", "--checkpoint", str(ckpt),
        "--data", f"npz:{tiny_npz}", "--directions", str(path), "--x=0:1:2", "--out", str(out),
        "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    moved = {
        k: v + steps[k] if k in steps and not k.endswith("num_batches_tracked") else v
        for k, v in state.items()
    }
    oracle = namespace["make"]()
    oracle.load_state_dict(moved)
    with torch.no_grad():
        expected = float(F.cross_entropy(oracle.eval()(x), y, reduction="sum")) / len(x)
    s = read_surface(out)
    np.testing.assert_allclose(s.values["train_loss"][1], expected, rtol=1e-5)
