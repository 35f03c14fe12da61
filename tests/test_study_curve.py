"""`landscape study pair` with the curved path and the plane view; the reproduction script
(issue 25, items 4 and 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.curves import load_curve
from landscape.plot.paths import path_label
from landscape.plot.plane import plane_figure
from landscape.runs.study import bend_height, unit_part
from landscape.store import read_surface
from tests.test_cli import TINY, assert_one_line_error, run
from tests.test_study import _trained

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One study of two tiny MLPs with the straight and curved paths, run as a subprocess;
    (its folder, its argv)."""
    tmp = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    np.savez(tmp / "tiny.npz", x=x, y=y)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    a, b = _trained(tmp / "a.pt", xt, yt, 0), _trained(tmp / "b.pt", xt, yt, 1)
    argv = [sys.executable, "-m", "landscape", "study", "pair", *TINY, "--checkpoint", str(a),
            "--target", str(b), "--data", f"npz:{tmp / 'tiny.npz'}", "--x=-0.25:1.25:7",
            "--path", "straight", "--path", "curve", "--curve-epochs", "3",
            "--plane-x=-0.2:1.2:5", "--out", str(tmp / "out")]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return tmp / "out", argv


def test_study_trains_the_curve_and_draws_it_beside_the_straight_path(study) -> None:
    out, _ = study
    curve = load_curve(out / "curve.safetensors")
    assert curve.kind == "bezier" and len(curve.record["losses"]) == 3  # --curve-epochs 3
    along = read_surface(out / "curve.h5")
    assert along.done.all() and path_label(along) == "Bézier curve"
    assert np.allclose(along.x, np.linspace(0, 1, 5))  # the grid's step, on [0, 1] only
    assert read_surface(out / "plane.h5").done.all()
    assert (out / "compare_paths_train.png").stat().st_size > 10_000
    assert (out / "plane_train.png").stat().st_size > 10_000
    summary = (out / "summary.txt").read_text()
    line = next(x for x in summary.splitlines() if x.startswith("curve "))
    b = read_surface(out / "curve.h5").stored_analysis["train_loss"]["barrier"]
    assert f"loss barrier {b['value']:.4g} +- {b['se']:.2g}" in line
    assert any(x.startswith("straight ") and "+-" in x for x in summary.splitlines())
    assert "plane: " in summary and "the bend C at (" in summary


def test_a_rerun_keeps_the_trained_curve_and_skips_every_file(study) -> None:
    out, argv = study
    before = (out / "curve.safetensors").read_bytes()
    code, text, err = run(*argv[3:])
    assert code == 0, err
    assert text.count("complete, skipped") == 3  # straight, curve, plane
    assert (out / "curve.safetensors").read_bytes() == before
    assert len(list(out.glob("*.h5"))) == 3  # straight, curve, plane: nothing else computed


def test_the_plane_view_marks_a_b_and_c_where_the_plane_puts_them(study) -> None:
    out, _ = study
    plane = read_surface(out / "plane.h5")
    curve = load_curve(out / "curve.safetensors")
    # oracle: C's coordinates from the flat weight vectors, with numpy (A at 0, B at (1, 0))
    names = [k for k in curve.a if k.endswith(("weight", "bias"))]
    flat = {p: np.concatenate([getattr(curve, p)[k].double().numpy().ravel() for k in names])
            for p in "abc"}  # fmt: skip
    d1, d2 = flat["b"] - flat["a"], flat["c"] - flat["a"]
    x_c = d2 @ d1 / (d1 @ d1)
    y_c = np.linalg.norm(d2 - x_c * d1) / np.linalg.norm(d1)
    assert bend_height(curve) == pytest.approx(y_c, rel=1e-6)
    fig = plane_figure(plane)
    ax = fig.axes[0]
    marks = next(line for line in ax.lines if line.get_gid() == "landmarks")
    np.testing.assert_allclose(marks.get_xdata(), [0.0, 1.0, x_c], atol=1e-5)
    np.testing.assert_allclose(marks.get_ydata(), [0.0, 0.0, y_c], atol=1e-5)
    straight = next(line for line in ax.lines if line.get_gid() == "straight-path")
    assert list(straight.get_xdata()) == [0.0, 1.0] and list(straight.get_ydata()) == [0.0, 0.0]
    path = next(line for line in ax.lines if line.get_gid() == "curve-path")
    px, py = path.get_xdata(), path.get_ydata()
    assert (px[0], py[0]) == (0.0, 0.0) and px[-1] == pytest.approx(1.0)
    assert py[len(py) // 2] == pytest.approx(y_c / 2, rel=1e-5)  # a Bézier's peak: half C's
    h = max(y_c, 0.05)  # auto: -0.3 h to 1.3 h, h = y_C (at least 0.05)
    lo, hi = float(np.min(plane.y)), float(np.max(plane.y))
    assert lo == pytest.approx(-0.3 * h, rel=1e-3) and hi == pytest.approx(1.3 * h, rel=1e-3)


def test_unit_part_keeps_the_grids_step_on_zero_to_one() -> None:
    assert unit_part("-0.2:1.2:29") == "0:1:21"
    assert unit_part("0:1:6") == "0:1:6"


def test_a_bad_plane_axis_is_refused_in_one_line(tmp_path: Path) -> None:
    a = tmp_path / "a.pt"
    a.write_bytes(b"")
    code, _, err = run("study", "pair", *TINY, "--checkpoint", str(a), "--target",
                       str(tmp_path / "b.pt"), "--data", "digits", "--y", "1:0",
                       "--out", str(tmp_path / "s"))  # fmt: skip
    assert_one_line_error(code, err, 1, "--y must be MIN:MAX:NUM")


@pytest.mark.slow
def test_the_reproduction_scripts_smallest_setup_prints_its_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reproduce_pair.py"), "--quick", "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = next(x for x in done.stdout.splitlines() if x.startswith("| mlp32-quick"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert len(cells) == 4 and all(" ± " in c and "%" in c for c in cells)
    straight = float(cells[0].split()[0])
    assert straight > float(cells[1].split()[0])  # weight matching lowers the barrier
    assert (tmp_path / "mlp32-quick" / "study" / "plane_train.png").exists()
