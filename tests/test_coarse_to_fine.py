"""Coarse-to-fine order: every prefix of a run covers the plane; partial files draw that lattice."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

import landscape
from landscape import grid
from landscape.cli import main

MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
       "--model-arg", "num_classes=3"]  # fmt: skip


def test_levels_nest_and_cover_every_index() -> None:
    for n in (1, 2, 3, 5, 6, 9, 51):
        levels = grid.axis_levels(n)
        assert (levels >= 0).all() and levels[0] == 0 and levels[-1] == 0
    assert list(grid.axis_levels(5)) == [0, 1, 0, 1, 0]
    assert list(grid.axis_levels(9)) == [0, 2, 1, 2, 0, 2, 1, 2, 0]
    order = grid.coarse_to_fine(np.arange(81), (9, 9))
    assert sorted(order) == list(range(81))
    first = {divmod(int(k), 9) for k in order[:9]}
    assert first == {(i, j) for i in (0, 4, 8) for j in (0, 4, 8)}  # 3 x 3 first
    second = {divmod(int(k), 9) for k in order[:25]}
    assert second == {(i, j) for i in (0, 2, 4, 6, 8) for j in (0, 2, 4, 6, 8)}  # then 5 x 5


def test_a_partial_file_draws_its_complete_sub_lattice(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "s.h5"
    result = CliRunner().invoke(main, [
        "compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
        "--x=-1:1:9", "--y=-1:1:9", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    full = landscape.load(out)
    keep = grid.coarse_to_fine(np.arange(81), (9, 9))[:30]  # as if stopped after 30 points
    with h5py.File(out, "r+") as f:
        done = np.zeros(81, bool)
        done[keep] = True
        f["done"][...] = done.reshape(9, 9)
    partial = landscape.load(out)
    view = partial.computed_view()
    assert view.done.shape == (5, 5) and view.done.all()
    np.testing.assert_array_equal(view.x, full.x[::2])
    np.testing.assert_array_equal(view.values["train_loss"], full.values["train_loss"][::2, ::2])
    info = CliRunner().invoke(main, ["info", str(out)]).output
    assert "drawn from the 5 x 5 sub-lattice of the 30 of 81 points computed so far" in info
    plots = CliRunner().invoke(main, ["plot", str(out), "--out", str(tmp_path / "p")])
    assert plots.exit_code == 0, plots.output
    assert len(list((tmp_path / "p").glob("*.png"))) >= 4
    from landscape.plot.figures import describe

    assert describe(view).endswith("5 x 5 of 9 x 9")
