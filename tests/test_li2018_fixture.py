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
from landscape.compute import prepare
from landscape.config import ComputeConfig
from landscape.data import load_data
from landscape.directions import load_directions
from landscape.engine import ReferenceEvaluator
from landscape.losses import correct_count, get_loss
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
    prep = prepare(cfg)
    ds = load_directions(str(li_fixture / "directions_2d.h5"), prep.theta, prep.centre, 2)
    data = load_data(cfg.data)
    ev = ReferenceEvaluator(
        prep.model,
        prep.centre,
        ds.vectors,
        lambda: data.batches(128),
        get_loss("cross-entropy"),
        correct_count,
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
