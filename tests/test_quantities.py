"""Per-point quantities from one table; the loss's standard error against numpy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from landscape import quantities
from landscape.cli import main
from landscape.models import build_model
from landscape.quantities import PointStats
from landscape.store import read_surface

MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
       "--model-arg", "num_classes=3"]  # fmt: skip


def test_batched_statistics_equal_one_pass_over_the_set() -> None:
    """Every batching gives the same bits: one fixed sum of the whole vector (issue 23, item 10:
    the race's batch sizes must not change a value)."""
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(3, 101, generator=g, dtype=torch.float64) * 5
    correct = torch.rand(3, 101, generator=g) > 0.4
    seen = []
    for sizes in ([101], [1, 100], [7] * 14 + [3], [50, 51], [64, 37]):
        stats, start = PointStats.zeros(3), 0
        for b in sizes:
            stats.add(losses[:, start : start + b], correct[:, start : start + b].sum(1))
            start += b
        seen.append(stats.values())
        for i, v in enumerate(seen[-1]):
            row = losses[i].numpy()
            assert v["loss"] == np.add.reduce(row) / 101  # numpy's pairwise sum of the row
            assert v["loss"] == pytest.approx(row.mean(), rel=1e-14)
            assert v["loss_se"] == pytest.approx(row.std(ddof=1) / np.sqrt(101), rel=1e-12)
            assert v["acc"] == pytest.approx(float(correct[i].double().mean()))
    assert all(v == seen[0] for v in seen)  # bit for bit
    assert np.isnan(PointStats.zeros(1).values()[0]["loss_se"])


def test_nonfinite_losses_are_kept() -> None:
    stats = PointStats.zeros(3)
    row = [[1.0, float("inf")], [float("inf"), float("-inf")], [float("nan"), 1.0]]
    stats.add(torch.tensor(row, dtype=torch.float64), None)
    loss = [v["loss"] for v in stats.values()]
    assert loss[0] == math.inf and np.isnan(loss[1]) and np.isnan(loss[2])


def test_the_race_batch_sizes_give_the_same_surface(tmp_path: Path) -> None:
    """digits through the built-in mlp at two batch sizes: the same per-sample losses summed
    in other groups; the stored values are the same bits."""
    values = []
    for bs in ("64", "500"):
        out = tmp_path / f"s{bs}.h5"
        result = CliRunner().invoke(main, [
            "compute", "--model", "mlp", "--data", "digits", "--engine", "reference",
            "--batch-size", bs, "--x=-1:1:3", "--y=-1:1:3", "--out", str(out), "--quiet",
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        values.append(read_surface(out).values)
    for name in ("train_loss", "train_loss_se", "train_acc"):
        np.testing.assert_array_equal(values[0][name], values[1][name], err_msg=name)


def test_names_are_parsed_by_the_table() -> None:
    assert quantities.parse("train_loss_se")[0] == "train"
    assert quantities.kind_of("test_loss") == "loss" and quantities.kind_of("test_acc") == "acc"
    assert (
        quantities.kind_of("train_loss_se") == "se" and quantities.kind_of("xcoordinates") is None
    )
    assert quantities.error_of("test_loss") == "test_loss_se"
    assert quantities.dataset_names("train") == ["train_loss", "train_acc", "train_loss_se"]


@pytest.mark.parametrize(
    "extra", [[], ["--batch-size", "7"], ["--engine", "batched"], ["--workers", "2"]]
)
def test_the_surface_stores_each_points_standard_error(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, extra: list[str]
) -> None:
    out = tmp_path / "s.h5"
    result = CliRunner().invoke(main, [
        "compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
        "--x=-1:1:3", "--out", str(out), "--quiet", *extra,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    s = read_surface(out)
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    model.load_state_dict(torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"])
    data = np.load(tiny_npz)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    with torch.no_grad():
        per_sample = F.cross_entropy(model(x), y, reduction="none").double().numpy()
    centre = s.values["train_loss_se"][1]  # x = 0 is θ itself
    assert centre == pytest.approx(per_sample.std(ddof=1) / np.sqrt(len(per_sample)), rel=1e-5)
    assert np.isfinite(s.values["train_loss_se"]).all()
    text = CliRunner().invoke(main, ["info", str(out)]).stdout
    assert "noise:       train_loss at the centre" in text and "± " in text


def test_files_without_the_standard_error_still_resume_and_plot(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    import h5py

    out = tmp_path / "s.h5"
    args = ["compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
            "--x=-1:1:5", "--out", str(out), "--quiet"]  # fmt: skip
    assert CliRunner().invoke(main, args).exit_code == 0
    with h5py.File(out, "r+") as f:  # as written before the quantity existed, 2 points not done
        del f["train_loss_se"]
        f["done"][3:] = False
    assert CliRunner().invoke(main, args).exit_code == 0
    s = read_surface(out)
    assert s.done.all() and "train_loss_se" not in s.values
    from landscape.plot import curve_1d

    curve_1d(s)  # no band to draw, nothing breaks


def test_a_1d_curve_shades_two_standard_errors() -> None:
    from landscape.plot import curve_1d
    from landscape.surface import Surface

    x = np.linspace(-1, 1, 11)
    loss, se = 0.1 + x**2, np.full(11, 0.05)
    s = Surface("/tmp/se.h5", x, None, {"train_loss": loss, "train_loss_se": se}, np.ones(11, bool))
    band = next(c for c in curve_1d(s).axes[0].collections if c.get_gid() == "error-band")
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(loss.min() - 0.1) and ys.max() == pytest.approx(
        loss.max() + 0.1
    )
