"""plot --compare: several surfaces on one colour scale and level set, whatever their grids."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import QuadMesh
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure

from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot import compare_1d, compare_2d, render_compare
from landscape.surface import Surface


def plane(name: str, fn, x: np.ndarray, y: np.ndarray, method: str = "filter-norm") -> Surface:
    """values[i, j] = fn(x[i], y[j]) with an accuracy, on the given (non-square) grid."""
    X, Y = np.meshgrid(x, y, indexing="ij")
    loss = fn(X, Y).astype(float)
    return Surface(
        path=f"/tmp/{name}.h5",
        x=x,
        y=y,
        values={"train_loss": loss, "train_acc": 1.0 / (1.0 + loss)},
        done=np.ones(loss.shape, dtype=bool),
        direction_attrs={"method": method},
    )


def three() -> list[Surface]:
    """Three ranges (0..1.5, 2..7, 10..13) on three different grids: union [0, 13]."""
    return [
        plane(
            "bowl", lambda X, Y: X**2 + 2 * Y**2, np.linspace(-1, 1, 7), np.linspace(-0.5, 0.5, 5)
        ),
        plane(
            "wide",
            lambda X, Y: 2 + X**2 + Y**2,
            np.linspace(-2, 2, 9),
            np.linspace(-1, 1, 6),
            "pca",
        ),
        plane("tilt", lambda X, Y: 10 + X * Y, np.linspace(0, 1, 4), np.linspace(0, 3, 8), "zca"),
    ]


def line(name: str, offset: float, landmarks: bool = False) -> Surface:
    x = np.linspace(-0.5, 1.5, 21)
    loss = (x - 0.5) ** 2 + offset
    marks = {"names": np.array(["A", "B"], dtype=object), "x": np.array([0.0, 1.0])}
    return Surface(
        path=f"/tmp/{name}.h5",
        x=x,
        y=None,
        values={"train_loss": loss, "train_acc": 1 - loss / 4},
        done=np.ones(21, dtype=bool),
        direction_attrs={"method": "interpolate"},
        landmarks=marks if landmarks else None,
    )


def panels(fig: Figure, n: int) -> list:
    return fig.axes[:n]


def contour_sets(fig: Figure, n: int) -> list[ContourSet]:
    return [next(c for c in ax.collections if isinstance(c, ContourSet)) for ax in panels(fig, n)]


def texts(fig: Figure) -> set[str]:
    return {t.get_text().strip() for ax in fig.axes for t in ax.texts}


def assert_not_blank(png: Path) -> None:
    img = mpimg.imread(png)[..., :3]
    assert img.std() > 0.05, f"{png.name} looks blank"
    assert len(np.unique(img.reshape(-1, 3).round(2), axis=0)) > 10, png.name


# ---------------------------------------------------------------------------------------------
# One colour scale, one level set


@pytest.mark.parametrize("kind", ["contour", "contourf"])
def test_shared_levels_span_the_union(kind: str) -> None:
    surfaces = three()
    fig = compare_2d(surfaces, "train_loss", kind, levels=14)
    sets = contour_sets(fig, 3)
    shared = np.asarray(sets[0].levels)
    assert shared[0] >= 0.0 and shared[-1] <= 13.0 and len(shared) >= 7
    if kind == "contourf":  # bands from the union's minimum to its maximum
        assert len(shared) >= 10 and (shared[0], shared[-1]) == (0.0, 13.0)  # rounding merges some
    for cs in sets:
        np.testing.assert_allclose(cs.levels, shared)  # one level set for every panel
        assert cs.get_clim() == pytest.approx((0.0, 13.0))
    # one colour bar for all panels, and every panel titled with its surface's label
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in panels(fig, 3)] == [s.label for s in surfaces]
    # each panel keeps its own grid's extent
    assert panels(fig, 3)[2].get_xlim() == pytest.approx((0.0, 1.0))
    assert panels(fig, 3)[1].get_xlim() == pytest.approx((-2.0, 2.0))


def test_heatmap_shares_colour_limits_linear_and_log() -> None:
    surfaces = three()
    fig = compare_2d(surfaces, "train_loss", "heatmap")
    meshes = [next(c for c in ax.collections if isinstance(c, QuadMesh)) for ax in fig.axes[:3]]
    assert {m.get_clim() for m in meshes} == {(0.0, 13.0)}
    assert fig.axes[3].get_ylim() == pytest.approx((0.0, 13.0))  # the shared colour bar
    fig = compare_2d(surfaces, "train_loss", "heatmap", log=True)
    meshes = [next(c for c in ax.collections if isinstance(c, QuadMesh)) for ax in fig.axes[:3]]
    bowl = surfaces[0].values["train_loss"]
    floor = bowl[bowl > 0].min()  # the zero at the centre is clipped to the smallest positive
    expected = (np.log10(floor), np.log10(13.0))
    for m in meshes:
        assert m.get_clim() == pytest.approx(expected)
    assert fig.axes[3].get_ylabel() == "train_loss (log scale)"


def test_user_range_and_levels_apply_to_every_panel() -> None:
    fig = compare_2d(three(), "train_loss", "contourf", vmin=1.0, vmax=11.0, levels=6)
    sets = contour_sets(fig, 3)
    assert len(sets[0].levels) == 6 and (sets[0].levels[0], sets[0].levels[-1]) == (1.0, 11.0)
    for cs in sets:
        np.testing.assert_allclose(cs.levels, sets[0].levels)
    fig = compare_2d(three(), "train_loss", "contour", log=True, levels=[1, 10])
    for cs in contour_sets(fig, 3):
        np.testing.assert_allclose(cs.levels, [0.0, 1.0])
    with pytest.raises(ConfigError, match="vmin"):
        compare_2d(three(), "train_loss", "heatmap", vmin=5.0, vmax=1.0)


def test_surface3d_panels_share_z_limits() -> None:
    fig = compare_2d(three(), "train_loss", "surface3d")
    zlims = [ax.get_zlim() for ax in fig.axes if ax.name == "3d"]
    assert len(zlims) == 3 and all(z == pytest.approx((0.0, 13.0)) for z in zlims)


def test_single_surface_is_one_panel() -> None:
    fig = compare_2d(three()[:1], "train_loss", "contourf")
    assert len(fig.axes) == 2  # the panel and its colour bar
    cs = contour_sets(fig, 1)[0]
    assert cs.levels[0] == pytest.approx(0.0) and cs.levels[-1] == pytest.approx(1.5)


def test_landmarks_and_trajectory_end_on_panels() -> None:
    surfaces = three()
    surfaces[1].landmarks = {"names": ["A", "B", "C"], "x": [0.0, 1.0, 0.3], "y": [0.0, 0.0, 0.8]}
    t = np.linspace(0, 1, 5)
    surfaces[0].trajectory = {
        "x": 0.8 * (1 - t),
        "y": 0.4 * (1 - t),
        "labels": ["e0.pt"] * 4 + ["e9.pt"],
    }
    fig = compare_2d(surfaces, "train_loss", "contourf")
    assert {"A", "B", "C", "final (e9)"} <= texts(fig)
    gids = {ln.get_gid() for ln in fig.axes[0].get_lines()}
    assert {"trajectory", "traj-start", "traj-end"} <= gids
    assert fig.axes[0].get_legend() is None and fig.legends  # one legend for the figure


# ---------------------------------------------------------------------------------------------
# 1-D


def test_1d_curves_share_one_axis_with_landmarks() -> None:
    a, b = line("low", 0.1, landmarks=True), line("high", 5.0)
    fig = compare_1d([a, b], "train_loss")
    ax = fig.axes[0]
    curves = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in curves] == [a.label, b.label]
    lo, hi = ax.get_ylim()
    assert lo <= 0.1 and hi >= 6.0  # both ranges on one y-scale
    assert {"A", "B"} <= texts(fig)
    marks = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("landmark")]
    assert sorted(float(ln.get_xdata()[0]) for ln in marks) == [0.0, 1.0]
    log = compare_1d([a, b], "train_loss", log=True)
    assert log.axes[0].get_yscale() == "log"
    acc = compare_1d([a, b], "train_acc")
    assert acc.axes[0].get_lines()[0].get_ydata().max() > 1.0  # percent


def test_render_compare_1d_files(tmp_path: Path) -> None:
    paths = render_compare([line("a", 0.1, True), line("b", 1.0)], tmp_path, dpi=40)
    assert sorted(p.name for p in paths) == [
        "compare_paths_train.png",  # interpolate surfaces: paths between two networks
        "compare_train_acc_1d_linear.png",
        "compare_train_loss_1d_linear.png",
        "compare_train_loss_1d_log.png",
    ]
    for p in paths:
        assert_not_blank(p)


# ---------------------------------------------------------------------------------------------
# Files and errors


def test_render_compare_2d_files(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    paths = render_compare(three(), tmp_path / "cmp", dpi=30)
    names = {p.name for p in paths}
    for kind in ("contour", "contourf", "heatmap", "surface3d"):
        for scale in ("linear", "log"):
            assert f"compare_train_loss_{kind}_{scale}.png" in names
    assert {
        "compare_train_acc_contourf_linear.png",
        "compare_train_acc_heatmap_linear.png",
    } <= names
    assert len(names) == 10
    for p in paths:
        assert_not_blank(p)
    assert plt.get_fignums() == before
    svg = render_compare(three(), tmp_path, kinds=["surface3d"], scales=["log"], fmt="svg")
    assert [p.name for p in svg] == ["compare_train_loss_surface3d_log.svg"]


def test_mixed_dims_and_nothing_in_common_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="1-D and 2-D"):
        render_compare([three()[0], line("l", 0.1)], tmp_path)
    other = three()[1]
    other.values = {"test_loss": other.values["train_loss"]}
    with pytest.raises(ConfigError, match=r"no quantity in common.*train_loss.*test_loss"):
        render_compare([three()[0], other], tmp_path)
    with pytest.raises(ConfigError, match="at least one"):
        render_compare([], tmp_path)
    with pytest.raises(ConfigError, match=r"2-D.*contour"):
        render_compare(three(), tmp_path, kinds=["1d"])
    empty = three()[0]
    empty.done[:] = False
    with pytest.raises(SurfaceFileError, match="no computed points"):
        render_compare([empty, three()[1]], tmp_path)


def test_cli_compare_on_real_files(tmp_path: Path, tiny_npz: Path) -> None:
    from landscape.cli import main

    runner = CliRunner()
    tiny = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "num_classes=3"]
    files = []
    for seed, grid in ((0, ["--x=-1:1:3", "--y=-1:1:3"]), (1, ["--x=-2:2:4", "--y=-1:1:3"])):
        out = tmp_path / f"seed{seed}.h5"
        args = [*tiny, "--data", f"npz:{tiny_npz}", "--seed", str(seed), *grid, "--out", str(out)]
        result = runner.invoke(main, ["compute", *args, "--quiet"])
        assert result.exit_code == 0, result.output
        files.append(str(out))
    target = tmp_path / "cmp"
    result = runner.invoke(
        main,
        ["plot", "--compare", *files, "--out", str(target), "--kind", "contourf", "--dpi", "40"],
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in target.iterdir())
    assert written == [
        "compare_train_acc_contourf_linear.png",
        "compare_train_loss_contourf_linear.png",
        "compare_train_loss_contourf_log.png",
    ]
    assert all(str(target / name) in result.output for name in written)
    for name in written:
        assert_not_blank(target / name)
