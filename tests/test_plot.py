"""Plots from analytic surfaces: every kind renders, nothing is blank, x is horizontal."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from landscape.errors import ConfigError, SurfaceFileError
from landscape.plot import FORMATS, KINDS, contour, curve_1d, heatmap, render_all, surface_3d
from landscape.surface import Surface

NX, NY = 7, 5  # non-square on purpose: a transposition cannot go unnoticed


def bowl(
    fn=lambda X, Y: X**2 + 2 * Y**2, *, trajectory: bool = False, test: bool = False
) -> Surface:
    """A 2-D surface from an analytic loss, values[i, j] = fn(x[i], y[j]), with an accuracy."""
    x = np.linspace(-1.0, 1.0, NX)
    y = np.linspace(-0.5, 0.5, NY)
    X, Y = np.meshgrid(x, y, indexing="ij")
    loss = fn(X, Y).astype(float)
    acc = 1.0 / (1.0 + loss)
    traj = None
    if trajectory:
        t = np.linspace(0.0, 1.0, 6)
        traj = {"x": 0.8 * (1 - t), "y": 0.4 * (1 - t) ** 2, "loss": t}
    values = {"train_loss": loss, "train_acc": acc}
    if test:
        values["test_loss"] = loss + 0.1
    return Surface(
        path="/tmp/bowl.h5",
        x=x,
        y=y,
        values=values,
        done=np.ones((NX, NY), dtype=bool),
        direction_attrs={"method": "filter"},
        trajectory=traj,
    )


def parabola() -> Surface:
    x = np.linspace(-1.0, 1.0, 21)
    loss = x**2 + 0.05
    return Surface(
        path="/tmp/line.h5",
        x=x,
        y=None,
        values={"train_loss": loss, "train_acc": 1 - loss / 2, "test_loss": loss + 0.2},
        done=np.ones(21, dtype=bool),
    )


def assert_not_blank(png: Path) -> None:
    img = mpimg.imread(png)[..., :3]
    assert img.std() > 0.05, f"{png.name} looks blank"
    colours = np.unique(img.reshape(-1, 3).round(2), axis=0)
    assert len(colours) > 10, f"{png.name} has only {len(colours)} colours"


# ---------------------------------------------------------------------------------------------
# render_all


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_all_2d_writes_every_kind_and_scale(tmp_path: Path, fmt: str) -> None:
    losses = ("train_loss", "test_loss") if fmt == "png" else ("train_loss",)
    s = bowl(trajectory=True, test=fmt == "png")
    paths = render_all(s, tmp_path / "figs", fmt=fmt, dpi=40)
    names = {p.name for p in paths}
    for q in losses:
        for kind in ("contour", "contourf", "heatmap", "surface3d"):
            for scale in ("linear", "log"):
                assert f"bowl_{q}_{kind}_{scale}.{fmt}" in names
    assert f"bowl_train_acc_contourf_linear.{fmt}" in names
    assert f"bowl_train_acc_heatmap_linear.{fmt}" in names
    for q in losses:  # each loss' topology: persistence barcode and merge tree
        assert {f"bowl_{q}_barcode.{fmt}", f"bowl_{q}_mergetree.{fmt}"} <= names
    assert len(names) == len(losses) * (4 * 2 + 2) + 2
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
    if fmt == "png":
        for p in paths:
            assert_not_blank(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_all_1d(tmp_path: Path, fmt: str) -> None:
    paths = render_all(parabola(), tmp_path, fmt=fmt, dpi=50)
    assert sorted(p.name for p in paths) == sorted(
        [f"line_{s}_1d_{sc}.{fmt}" for s in ("train", "test") for sc in ("linear", "log")]
        + [f"line_{s}_loss_{k}.{fmt}" for s in ("train", "test") for k in ("barcode", "mergetree")]
    )
    if fmt == "png":
        for p in paths:
            assert_not_blank(p)


def test_render_all_kinds_subset_and_linear_only(tmp_path: Path) -> None:
    s = bowl(test=True)
    paths = render_all(s, tmp_path, kinds=["heatmap"], scales=["linear"], dpi=40)
    assert sorted(p.name for p in paths) == [
        "bowl_test_loss_heatmap_linear.png",
        "bowl_train_acc_heatmap_linear.png",
        "bowl_train_loss_heatmap_linear.png",
    ]


def test_render_all_leaves_no_open_figures(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    render_all(bowl(), tmp_path, kinds=["contour"], dpi=40)
    assert plt.get_fignums() == before


def test_bad_format_and_kind_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"png, pdf, svg"):
        render_all(bowl(), tmp_path, fmt="jpg")
    with pytest.raises(ConfigError, match=r"'wireframe'.*1d, contour, contourf, heatmap"):
        render_all(bowl(), tmp_path, kinds=["wireframe"])
    with pytest.raises(ConfigError, match=r"scale"):
        render_all(bowl(), tmp_path, scales=["log2"])
    with pytest.raises(ConfigError, match=r"1-D.*1d"):
        render_all(parabola(), tmp_path, kinds=["contour"])
    assert set(KINDS) == {
        "1d",
        "contour",
        "contourf",
        "heatmap",
        "surface3d",
        "barcode",
        "mergetree",
    }


def test_empty_surface_raises(tmp_path: Path) -> None:
    s = bowl()
    s.values = {q: np.full_like(v, np.nan) for q, v in s.values.items()}
    s.done[:] = False
    for call in (
        lambda: render_all(s, tmp_path),
        lambda: contour(s),
        lambda: heatmap(s, "train_loss"),
        lambda: surface_3d(s, "train_loss"),
    ):
        with pytest.raises(SurfaceFileError, match="no computed points yet"):
            call()
    line = parabola()
    line.values = {q: np.full_like(v, np.nan) for q, v in line.values.items()}
    line.done[:] = False
    with pytest.raises(SurfaceFileError, match="no computed points yet"):
        curve_1d(line)


def test_unknown_quantity_and_wrong_dims() -> None:
    with pytest.raises(ConfigError, match="train_loss"):
        contour(bowl(), "val_loss")
    with pytest.raises(ConfigError, match="1-D"):
        curve_1d(bowl())
    with pytest.raises(ConfigError, match="2-D"):
        heatmap(parabola(), "train_loss")


# ---------------------------------------------------------------------------------------------
# Orientation: f = x² depends on x only, so values must vary along the horizontal axis


def test_heatmap_orientation() -> None:
    fig = heatmap(bowl(lambda X, Y: X**2), "train_loss")
    mesh = next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))
    coords = mesh.get_coordinates()  # (rows+1, cols+1, 2) cell corners
    centres_x = (coords[:-1, :-1, 0] + coords[1:, 1:, 0]) / 2
    values = np.asarray(mesh.get_array()).reshape(centres_x.shape)
    np.testing.assert_allclose(values, centres_x**2, atol=1e-12)
    assert values.shape == (NY, NX)  # rows run along y, columns along x
    assert fig.axes[0].get_xlim()[1] > 0.99  # the x extent is x's range [-1, 1], not y's


def test_contour_orientation() -> None:
    s = bowl(lambda X, Y: X**2)
    for filled in (False, True):
        fig = contour(s, "train_loss", filled=filled, levels=[0.1, 0.3, 0.6])
        cs = fig.axes[0].collections[0]
        # every vertex on the level-0.3 line sits at x = ±sqrt(0.3), whatever its y
        paths = cs.get_paths()
        level_paths = paths[1] if not filled else paths[0]
        verts = level_paths.vertices
        if not filled:
            np.testing.assert_allclose(np.abs(verts[:, 0]), np.sqrt(0.3), atol=0.05)
        assert np.ptp(verts[:, 1]) > 0.9 * np.ptp(s.y)  # the lines run the full height in y
    xlim = fig.axes[0].get_xlim()
    assert xlim[0] <= -0.99 and xlim[1] >= 0.99


def test_surface_3d_orientation_and_clipping() -> None:
    s = bowl(lambda X, Y: X**2)
    s.values["train_loss"][0, 0] = 1e6  # a spike at (x[0], y[0])
    fig = surface_3d(s, "train_loss", vmax=2.0)
    ax = fig.axes[0]
    assert ax.name == "3d"
    assert ax.get_zlim()[1] == pytest.approx(2.0)
    assert ax.get_xlim()[1] >= 0.99 and ax.get_ylim()[1] < 0.9


# ---------------------------------------------------------------------------------------------
# Log scale, holes, trajectory, titles


def test_log_is_log10_of_the_data() -> None:
    fig = heatmap(bowl(), "train_loss", log=True)
    mesh = next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))
    data = np.asarray(mesh.get_array())
    loss = bowl().values["train_loss"]
    floor = loss[loss > 0].min()
    np.testing.assert_allclose(
        np.sort(data.ravel()), np.sort(np.log10(np.maximum(loss, floor)).ravel())
    )
    bar = fig.axes[1]  # the colour bar: named in loss units, ticks at 1, 2, 5 × 10^k losses
    assert bar.get_ylabel() == "train_loss (log scale)"
    fig.canvas.draw()
    shown = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert shown and all(float(t) > 0 for t in shown)
    assert {float(t) for t in shown} <= {m * 10.0**k for k in range(-6, 3) for m in (1, 2, 3, 5)}


def test_log_levels_are_evenly_spaced_in_log_space() -> None:
    fig = contour(bowl(lambda X, Y: X**2 + Y**2 + 0.01), filled=True, log=True, levels=11)
    lv = np.asarray(fig.axes[0].collections[0].levels)
    np.testing.assert_allclose(np.diff(lv), np.diff(lv)[0])
    assert lv[0] == pytest.approx(np.log10(0.01), abs=1e-9)


@pytest.mark.parametrize("offset", [0.0, -0.5])
def test_log_with_zeros_and_negatives_does_not_crash(tmp_path: Path, offset: float) -> None:
    s = bowl(lambda X, Y: X**2 + 2 * Y**2 + offset)  # has an exact 0 or negatives
    paths = render_all(s, tmp_path, scales=["log"], dpi=30)
    for p in paths:
        assert_not_blank(p)
    line = parabola()
    line.values["train_loss"] = line.values["train_loss"] - 0.3
    curve_1d(line, "train", log=True)


def test_nan_holes_are_masked(tmp_path: Path) -> None:
    s = bowl(trajectory=True)
    for v in s.values.values():
        v[2:4, 1:3] = np.nan
    s.done[2:4, 1:3] = False
    s.values["train_loss"][5, 4] = np.inf
    paths = render_all(s, tmp_path, kinds=["contour", "contourf", "surface3d"], dpi=40)
    for p in paths:
        assert_not_blank(p)
    fig = heatmap(s, "train_loss")
    mesh = next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))
    assert np.ma.count_masked(mesh.get_array()) == 5
    line = parabola()
    line.values["train_loss"][3:6] = np.nan
    paths = render_all(line, tmp_path / "line", dpi=40)
    assert all(p.is_file() for p in paths)


def test_vmin_vmax_and_levels_are_respected() -> None:
    fig = contour(bowl(), filled=True, vmin=0.5, vmax=2.0, levels=7)
    lv = np.asarray(fig.axes[0].collections[0].levels)
    assert len(lv) == 7 and lv[0] == 0.5 and lv[-1] == 2.0 and np.all(np.diff(lv) > 0)
    fig = contour(bowl(), filled=True, levels=[0.5, 1.0, 1.5])  # given levels, as given
    np.testing.assert_allclose(fig.axes[0].collections[0].levels, [0.5, 1.0, 1.5])
    with pytest.raises(ConfigError, match="vmin"):
        heatmap(bowl(), "train_loss", vmin=3.0, vmax=1.0)


def _trajectory_lines(fig: Figure, s: Surface) -> list:
    ax = fig.axes[0]
    return [
        ln
        for ln in ax.get_lines()
        if np.array_equal(ln.get_xdata(), s.trajectory["x"])
        and np.array_equal(ln.get_ydata(), s.trajectory["y"])
    ]


def test_trajectory_is_drawn_on_2d_plots() -> None:
    s = bowl(trajectory=True)
    for fig in (
        contour(s),
        contour(s, filled=True),
        contour(s, log=True),
        heatmap(s, "train_loss"),
        heatmap(s, "train_acc"),
    ):
        assert len(_trajectory_lines(fig, s)) == 1
        ends = {ln.get_gid() for ln in fig.axes[0].get_lines()}
        assert {"traj-start", "traj-end"} <= ends
    assert not _trajectory_lines(contour(bowl()), s)


def test_titles_name_quantity_scale_and_label() -> None:
    s = bowl(test=True)
    title = contour(s, "test_loss", log=True).axes[0].get_title()
    assert title == "test_loss, contour (log scale)\nbowl.h5, filter directions"
    title = surface_3d(s, "train_loss").axes[0].get_title()
    assert title.startswith("train_loss, 3-D surface (linear scale)\n")


def test_curve_1d_twin_axes_in_percent() -> None:
    s = parabola()
    fig = curve_1d(s, "train")
    loss_ax, acc_ax = fig.axes[:2]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), s.values["train_loss"])
    np.testing.assert_allclose(acc_ax.get_lines()[0].get_ydata(), 100 * s.values["train_acc"])
    assert "%" in acc_ax.get_ylabel()
    assert curve_1d(s, log=True).axes[0].get_yscale() == "log"
    both = curve_1d(s)  # every split when none is named
    assert len([ln for ln in both.axes[0].get_lines() if ln.get_gid() != "centre"]) == 2


# ---------------------------------------------------------------------------------------------
# Landmarks and the trajectory's end


def _texts(fig: Figure) -> set[str]:
    """Labels drawn over the plot (landmark names, the trajectory's end), not contour labels."""
    return {
        t.get_text().strip()
        for ax in fig.axes
        for t in ax.texts
        if str(t.get_gid()).startswith(("landmark", "traj"))
    }


def test_landmarks_are_drawn_on_2d_plots() -> None:
    s = bowl()
    s.landmarks = {
        "names": np.array(["A", "B", "C"], dtype=object),
        "x": np.array([0.0, 1.0, 0.4]),
        "y": np.array([0.0, 0.0, 0.3]),
    }
    for fig in (contour(s), contour(s, filled=True, log=True), heatmap(s, "train_acc")):
        assert {"A", "B", "C"} <= _texts(fig)
        marks = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "landmarks"]
        assert len(marks) == 1
        np.testing.assert_allclose(marks[0].get_xdata(), [0.0, 1.0, 0.4])
        np.testing.assert_allclose(marks[0].get_ydata(), [0.0, 0.0, 0.3])
    assert not _texts(contour(bowl()))  # nothing stored, nothing drawn


def test_landmarks_on_1d_are_labelled_vertical_lines() -> None:
    s = parabola()
    s.landmarks = {"names": ["A", "B"], "x": [0.0, 1.0], "y": [0.0, 0.0]}
    fig = curve_1d(s, "train")
    assert {"A", "B"} <= _texts(fig)
    vlines = [ln for ln in fig.axes[0].get_lines() if str(ln.get_gid()).startswith("landmark")]
    assert sorted(float(ln.get_xdata()[0]) for ln in vlines) == [0.0, 1.0]
    assert all(np.ptp(ln.get_xdata()) == 0 for ln in vlines)  # vertical
    legend_labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_labels == ["train loss", "train acc"]  # landmarks stay out of the legend


def test_malformed_landmarks_are_skipped() -> None:
    s = bowl()
    s.landmarks = {"names": ["A", "B"], "x": [0.0, np.nan], "y": [0.0, 0.0]}
    assert _texts(contour(s)) == {"A"}
    s.landmarks = {"x": "not numbers"}
    contour(s)


def test_trajectory_end_is_labelled() -> None:
    s = bowl(trajectory=True)
    s.trajectory["labels"] = np.array([f"runs/epoch{i}.pt" for i in range(6)], dtype=object)
    ends = [t for t in contour(s).axes[0].texts if t.get_gid() == "traj-end-label"]
    assert [t.get_text() for t in ends] == ["final (epoch5)"]
    np.testing.assert_allclose(ends[0].xy, (s.trajectory["x"][-1], s.trajectory["y"][-1]))
    assert _texts(heatmap(bowl(trajectory=True), "train_loss")) == {"final"}


# ---------------------------------------------------------------------------------------------
# As a reader sees them: the trained point, loss units, a resolved basin, readable labels


def fine_bowl(fn=lambda X, Y: 0.001 + 2 * X**2 + 6 * Y**2 + 2 * X**2 * Y**2, n: int = 41):
    """The demo's shape: 0.001 at the centre rising to about 10 at the corners."""
    x = np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    loss = fn(X, Y)
    return Surface("/tmp/fine.h5", x, x, {"train_loss": loss}, np.ones_like(loss, bool),
                   direction_attrs={"method": "filter-norm"})  # fmt: skip


def test_the_trained_point_is_marked_on_every_plot() -> None:
    s = bowl()
    for fig in (contour(s), contour(s, filled=True), heatmap(s, "train_loss"),
                surface_3d(s, "train_loss"), curve_1d(parabola())):  # fmt: skip
        ax = fig.axes[0]
        centre = [ln for ln in ax.get_lines() if ln.get_gid() == "centre"]
        assert len(centre) == 1, fig.axes[0].get_title()
        xs = np.asarray(centre[0].get_xdata(), dtype=float)
        assert np.all(xs == 0.0)


def test_log_contour_labels_are_losses_not_exponents() -> None:
    s = fine_bowl()
    fig = contour(s, log=True)
    labels = [float(t.get_text()) for t in fig.axes[0].texts if t.get_gid() is None]
    assert len(labels) >= 4
    assert all(0.001 <= v <= 11 for v in labels)  # loss values; log10 exponents would be < 0


def test_linear_contours_resolve_the_basin() -> None:
    """Evenly spaced levels left everything below a tenth of the range as one blank region."""
    s = fine_bowl()
    levels = np.asarray(contour(s).axes[0].collections[0].levels)
    low, top = float(np.min(s.values["train_loss"])), float(np.max(s.values["train_loss"]))
    evenly = np.sum(np.linspace(low, top, 30)[1:-1] < 0.1 * top)  # 2 lines in the basin
    assert np.sum(levels < 0.1 * top) >= 2 * evenly + 2


def test_contour_labels_are_inside_and_apart() -> None:
    fig = contour(fine_bowl())
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_window_extent()
    texts = [t for t in ax.texts if t.get_gid() is None]
    assert len(texts) >= 5
    extents = [t.get_window_extent() for t in texts]
    for e in extents:  # nothing cut off at the frame
        assert box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1
    centres = np.array([[(e.x0 + e.x1) / 2, (e.y0 + e.y1) / 2] for e in extents])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(centres)) * 1e9
    assert gaps.min() > 0.08 * box.width  # not crowded at the centre


def test_3d_ticks_do_not_run_together() -> None:
    fig = surface_3d(fine_bowl(), "train_loss")
    fig.canvas.draw()
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        assert len(axis.get_majorticklocs()) <= 7
    for get in (ax.get_xticklabels, ax.get_yticklabels):
        boxes = [t.get_window_extent() for t in get() if t.get_text()]
        for a, b in itertools.pairwise(boxes):
            assert not a.overlaps(b)
    log = surface_3d(fine_bowl(), "train_loss", log=True)
    log.canvas.draw()
    shown = [t.get_text() for t in log.axes[0].get_zticklabels() if t.get_text()]
    assert shown and all(float(v) > 0 for v in shown)  # losses on the z axis


def test_an_exploding_surface_is_clipped_and_says_so() -> None:
    """0.28 at the centre, millions at the corners (a ResNet-56 without skips)."""
    s = fine_bowl(lambda X, Y: 0.28 + np.expm1(10.7 * np.hypot(X, Y)))
    fig = contour(s, filled=True)
    notes = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "clip-note"]
    assert len(notes) == 1 and "clipped at" in notes[0] and "--vmax" in notes[0]
    clim = fig.axes[0].collections[0].get_clim()
    top = float(np.max(s.values["train_loss"]))
    assert clim[1] < 1e-3 * top
    inside = s.values["train_loss"] <= clim[1]
    assert 0.2 <= inside.mean() <= 0.5  # the basin and its walls get the colours
    kept = contour(s, filled=True, vmax=top)  # --vmax overrides the clip
    assert not [t for t in kept.axes[0].texts if t.get_gid() == "clip-note"]
    for easy in (fine_bowl(), bowl()):  # ordinary surfaces are drawn in full
        assert not [
            t for t in contour(easy, filled=True).axes[0].texts if t.get_gid() == "clip-note"
        ]


def test_trajectory_planes_keep_an_equal_aspect_or_say_so() -> None:
    x, y = np.linspace(-5, 30, 15), np.linspace(-4, 6, 9)
    X, Y = np.meshgrid(x, y, indexing="ij")
    traj = {"x": np.array([28.0, 10.0, 0.0]), "y": np.array([5.0, 1.0, 0.0])}
    s = Surface("/tmp/t.h5", x, y, {"train_loss": 0.1 + 0.002 * X**2 + 0.05 * Y**2},
                np.ones(X.shape, bool), direction_attrs={"method": "trajectory"}, trajectory=traj)  # fmt: skip
    ax = contour(s).axes[0]
    assert ax.get_aspect() == 1.0
    s.y = np.linspace(-0.4, 0.6, 9)  # 35 against 1: not to one scale, and the panel says so
    ax = heatmap(s, "train_loss").axes[0]
    assert ax.get_aspect() == "auto"
    assert any(t.get_gid() == "aspect-note" for t in ax.texts)


def test_titles_name_the_model_the_data_and_the_directions_once(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    from click.testing import CliRunner

    from landscape.cli import main
    from landscape.store import read_surface

    out = tmp_path / "run.h5"
    result = CliRunner().invoke(main, [
        "compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
        "--model-arg", "num_classes=3", "--checkpoint", str(tiny_mlp_ckpt),
        "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--y=-1:1:3", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    title = contour(read_surface(out), log=True, filled=True).axes[0].get_title()
    assert (
        title == "train_loss, filled contour (log scale)\nmlp on tiny.npz, filter-norm directions"
    )
    assert "run.h5" not in title and title.count("log") == 1


# ---------------------------------------------------------------------------------------------
# Names from files and users are drawn as they are, never read as mathtext

MATH = r"$\frac{$"  # matplotlib would parse this as mathtext, and fail to
MODEL = """
import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.add_module(MATH, torch.nn.Linear(6, 8))
        self.out = torch.nn.Linear(8, 3)
    def forward(self, x):
        return self.out(torch.relu(getattr(self, MATH)(x)))
def make():
    return Net()
"""


def _cli(*args: str) -> str:
    from click.testing import CliRunner

    from landscape.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0 and not result.exception, result.stderr
    return result.stdout


def _mathtext_surface(tmp_path: Path, npz: Path, model: str, name: str, *grid: str) -> Path:
    """A surface made by the CLI from a model whose parameters hold mathtext, then given a
    quantity, a model name and landmarks that hold it too."""
    import h5py
    import yaml

    out = tmp_path / f"{MATH}{name}.h5"
    _cli("compute", "--model", model, "--data", f"npz:{npz}", *grid, "--out", str(out), "-q")
    with h5py.File(out, "r+") as f:
        f[f"{MATH}_loss"] = f["train_loss"][()]
        cfg = yaml.safe_load(f.attrs["config"])
        cfg["model"]["name"] = MATH
        f.attrs["config"] = yaml.safe_dump(cfg)
        marks = f.create_group("landmarks")
        marks["names"] = np.array([MATH], dtype=h5py.string_dtype())
        marks["x"], marks["y"] = [0.5], [0.5]
    return out


def test_mathtext_in_names_is_drawn_literally(tmp_path: Path, tiny_npz: Path) -> None:
    import torch

    from landscape.store import read_surface

    (tmp_path / "net.py").write_text(f"MATH = {MATH!r}\n" + MODEL)
    model = f"{tmp_path / 'net.py'}:make"
    flat = [_mathtext_surface(tmp_path, tiny_npz, model, f"1d{k}", "--x=-1:1:3") for k in (0, 1)]
    planes = [
        _mathtext_surface(tmp_path, tiny_npz, model, f"2d{k}", "--x=-1:1:3", "--y=-1:1:3")
        for k in (0, 1)
    ]
    out = tmp_path / "plots"
    for args in ([str(flat[0])], [str(planes[0])], ["--compare", "--linear", *map(str, flat)],
                 ["--compare", "--linear", "--kind", "surface3d", *map(str, planes)]):  # fmt: skip
        written = _cli("plot", *args, "--out", str(out)).split()
        assert written and all(Path(p).stat().st_size > 0 for p in written)
    curvature = tmp_path / f"{MATH}_curvature.h5"
    _cli("curvature", str(planes[0]), "--model", model, "--x=-1:1:2", "--y=-1:1:2",
         "--samples", "8", "--out", str(curvature), "-q")  # fmt: skip
    assert _cli("plot", str(curvature), "--out", str(out)).split()
    # inspect: a layer named so, checkpoints named so
    for k in (1, 2):
        torch.manual_seed(k)
        namespace: dict = {}
        exec(f"MATH = {MATH!r}\n" + MODEL, namespace)
        torch.save(namespace["make"]().state_dict(), tmp_path / f"{MATH}{k}.pt")
    _cli("inspect", "--model", model, "--data", f"npz:{tiny_npz}", "--no-fail",
         "--checkpoints", str(tmp_path / f"{MATH}1.pt"), str(tmp_path / f"{MATH}2.pt"),
         "--plots", str(tmp_path / "inspect"))  # fmt: skip
    assert len(list((tmp_path / "inspect").glob("*.png"))) >= 3
    # drawn as they are: matplotlib shows "\$" as "$"
    title = contour(read_surface(planes[0]), f"{MATH}_loss").axes[0].get_title()
    assert title.startswith(r"\$\frac{\$_loss, contour") and r"\$\frac{\$ on" in title


def test_tick_labels_stay_distinct_on_a_narrow_range() -> None:
    """Losses within 0.02 of 6.95 (an untrained net, a layer that barely moves the loss): ticks a
    tenth of the range apart read differently, linear and log; wide ranges keep 3 (2) digits."""
    import math

    from landscape.plot.figures import Prepared

    z = np.ma.masked_array([0.0])
    for scale, lo, hi in (("linear", 6.9445, 6.9572), ("log", math.log10(6.9445),
                                                         math.log10(6.9572))):  # fmt: skip
        prep = Prepared(z, lo, hi, "train_loss", scale, 0.0)
        ticks = np.linspace(lo, hi, 11)
        assert len({prep.text(t) for t in ticks}) == 11, [prep.text(t) for t in ticks]
    assert Prepared(z, 0.1, 5.0, "train_loss", "linear", 0.0).text(2.5543) == "2.55"
    assert Prepared(z, -3.0, 1.0, "train_loss", "log", 0.0).text(-2.5) == "0.0032"
