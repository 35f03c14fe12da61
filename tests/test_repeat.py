"""``--repeat R``: R surfaces along directions of seeds seed..seed+R-1 in one file, their mean and
spread in ``info`` and ``plot``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.config import ComputeConfig
from landscape.errors import ConfigError
from landscape.info import format_info
from landscape.runs import surface as compute
from landscape.runs.surface import run_compute
from landscape.store import read_surface
from landscape.surface import Repeat, Surface

MLP = {"name": "mlp", "args": {"in_features": 6, "hidden": 8, "num_classes": 3}}


def config(tmp_path: Path, npz: Path, ckpt: Path, out: str = "r.h5", **direction) -> ComputeConfig:
    return ComputeConfig.from_dict(
        {
            "model": {**MLP, "checkpoint": str(ckpt)},
            "data": {"name": f"npz:{npz}"},
            "direction": {"seed": 4, **direction},
            "grid": {"x": "-1:1:5", "y": "-1:1:5"},
            "eval": {"device": "cpu", "engine": "reference", "compile": "off"},
            "out": str(tmp_path / out),
        }
    )


def cli_args(tmp_path: Path, npz: Path, ckpt: Path, out: str, *extra: str) -> list[str]:
    return ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
            "--model-arg", "num_classes=3", "--checkpoint", str(ckpt), "--data", f"npz:{npz}",
            "--x=-1:1:7", "--engine", "reference", "--device", "cpu", "--out", str(tmp_path / out),
            "--quiet", *extra]  # fmt: skip


@pytest.mark.parametrize("name", ["filter-norm", "qr-orthogonal"])
def test_each_repeat_is_the_run_of_its_seed(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, name: str
) -> None:
    result = run_compute(config(tmp_path, tiny_npz, tiny_mlp_ckpt, name=name, repeat=3))
    assert result.total == result.computed == 75
    s = read_surface(result.path)
    assert s.repeat_count == 3 and [r.seed for r in s.repeats] == [5, 6]
    with h5py.File(result.path, "r") as f:
        assert f.attrs["repeats"] == 3 and f.attrs["seed"] == 4
        assert [f[f"repeats/{r}"].attrs["seed"] for r in (1, 2)] == [5, 6]
        assert f["repeats/2/directions"].attrs["seed"] == 6
    for r in range(3):  # repeat r is exactly the surface of seed 4 + r, directions and all
        alone = run_compute(
            config(tmp_path, tiny_npz, tiny_mlp_ckpt, f"s{r}.h5", name=name, seed=4 + r)
        )
        one = read_surface(alone.path)
        for q in ("train_loss", "train_acc"):
            np.testing.assert_array_equal(s.stacked(q)[r], one.values[q])
        with h5py.File(result.path, "r") as f, h5py.File(alone.path, "r") as g:
            group = f["directions"] if r == 0 else f[f"repeats/{r}/directions"]
            for tensor, ds in g["directions/y"].items():
                np.testing.assert_array_equal(group[f"y/{tensor}"][()], ds[()])
    centre = s.values["train_loss"][2, 2]  # (x=0, y=0): the trained weights, whatever the seed
    assert np.all(s.stacked("train_loss")[:, 2, 2] == centre)
    assert not np.array_equal(s.stacked("train_loss")[1], s.stacked("train_loss")[2])


def test_batched_engine_moves_along_each_repeat(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """The batched path evaluates repeat r along seed 4 + r's directions, as the reference does."""
    cfg = config(tmp_path, tiny_npz, tiny_mlp_ckpt, "b.h5", repeat=2)
    batched = replace(cfg, eval=replace(cfg.eval, engine="batched"))
    s = read_surface(run_compute(batched).path)
    assert '"engine": "batched"' in s.attrs["engine"]
    reference = read_surface(run_compute(cfg).path)
    alone = config(tmp_path, tiny_npz, tiny_mlp_ckpt, "s.h5", seed=5)
    alone = replace(alone, eval=replace(alone.eval, engine="batched"))
    one = read_surface(run_compute(alone).path)
    np.testing.assert_allclose(s.stacked("train_loss")[1], one.values["train_loss"], rtol=1e-12)
    np.testing.assert_allclose(s.stacked("train_loss"), reference.stacked("train_loss"), rtol=1e-6)


def test_one_repeat_keeps_the_old_layout(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    result = run_compute(config(tmp_path, tiny_npz, tiny_mlp_ckpt))
    with h5py.File(result.path, "r") as f:
        assert "repeats" not in f and "repeats" not in f.attrs
    s = read_surface(result.path)
    assert s.repeats == [] and s.repeat_count == 1
    assert "repeats:" not in format_info(s)


class Crash(Exception):
    pass


def crash_after(points: int, opened: list | None = None) -> type:
    """A progress bar that stops the run after ``points`` points, as a kill would."""

    class Bar:
        def __init__(self, total: int, initial: int) -> None:
            self.seen = initial
            if opened is not None:
                opened.append((total, initial))

        def update(self, n: int) -> None:
            self.seen += n
            if self.seen >= points:
                raise Crash

        def close(self) -> None:
            pass

    return Bar


def test_a_stopped_run_resumes_the_missing_points_of_every_repeat(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = read_surface(
        run_compute(config(tmp_path, tiny_npz, tiny_mlp_ckpt, "full.h5", repeat=3)).path
    )
    monkeypatch.setattr(compute, "FLUSH_POINTS", 4)  # small blocks: some of them reach the disk
    cfg = config(tmp_path, tiny_npz, tiny_mlp_ckpt, "part.h5", repeat=3)
    with pytest.raises(Crash):
        run_compute(cfg, progress=crash_after(38))
    part = read_surface(cfg.out)  # readable, and what is done holds its final value
    done = [int(part.done.sum()), *(int(r.done.sum()) for r in part.repeats)]
    assert done[0] == 25 and 0 < done[1] < 25 and done[2] == 0
    for r in range(2):
        flags = part.done if r == 0 else part.repeats[0].done
        got, want = part.stacked("train_loss")[r], full.stacked("train_loss")[r]
        np.testing.assert_array_equal(got[flags], want[flags])
    opened: list = []
    again = run_compute(cfg, progress=crash_after(10**9, opened))
    assert again.resumed and again.computed == 75 - sum(done) and again.total == 75
    assert opened == [(75, sum(done))]  # progress over every repeat's points
    resumed = read_surface(cfg.out)
    for q in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(resumed.stacked(q), full.stacked(q))
    assert compute.run_compute(cfg).computed == 0  # complete: nothing left to do


def test_sweep_status_sees_every_repeat(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landscape.runs.sweep import SweepRun, status

    monkeypatch.setattr(compute, "FLUSH_POINTS", 4)
    cfg = config(tmp_path, tiny_npz, tiny_mlp_ckpt, repeat=2)
    with pytest.raises(Crash):
        run_compute(cfg, progress=crash_after(30))  # repeat 0 complete, repeat 1 not
    assert read_surface(cfg.out).done.all()
    assert status(SweepRun(0, cfg)) == "partial"
    run_compute(cfg)
    assert status(SweepRun(0, cfg)) == "complete"


def test_resume_with_another_repeat_is_refused(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    args = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "r.h5", "--repeat", "3")
    assert CliRunner().invoke(main, args).exit_code == 0
    before = (tmp_path / "r.h5").read_bytes()
    result = CliRunner().invoke(main, [*args[:-1], "2"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {str(tmp_path / 'r.h5')!r} was made with a different config (direction.repeat: "
        "3 there, 2 now); choose another --out, or pass --overwrite to replace it"
    ]
    assert (tmp_path / "r.h5").read_bytes() == before
    no_flag = [a for a in args if a not in ("--repeat", "3")]  # 1, the default
    assert "direction.repeat: 3 there, 1 now" in CliRunner().invoke(main, no_flag).stderr


@pytest.mark.parametrize(
    "extra, why",
    [
        (["--direction", "interpolate", "--target", "B.pt"], "interpolate's directions do not"),
        (["--direction", "zca"], "zca's directions do not depend on the seed"),
        (["--direction", "pca"], "pca's directions do not depend on the seed"),
        (["--direction", "hessian"], "only through the eigensolver's start"),
        (["--directions", "old.h5"], "directions read from --directions do not"),
    ],
)
def test_repeat_needs_random_directions(
    tmp_path: Path, tiny_npz: Path, extra: list[str], why: str
) -> None:
    ckpt = tmp_path / "never-read.pt"  # the config is refused before anything is loaded
    args = cli_args(tmp_path, tiny_npz, ckpt, "r.h5", "--repeat", "3", *extra)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --repeat 3 needs random directions")
    assert why in lines[0] and "drop --repeat" in lines[0]
    assert not (tmp_path / "r.h5").exists()


def test_yaml_and_flag_fill_the_same_key(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    cfg = config(tmp_path, tiny_npz, tiny_mlp_ckpt, repeat=3)
    assert cfg.direction.repeat == 3
    assert cfg.value_fingerprint()["direction"]["repeat"] == 3
    assert ComputeConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(ConfigError, match=r"direction\.repeat must be at least 1, got 0"):
        config(tmp_path, tiny_npz, tiny_mlp_ckpt, repeat=0)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("direction: {repeat: 2}\n")
    args = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "y.h5", "--config", str(yaml_file))
    assert CliRunner().invoke(main, args).exit_code == 0
    assert read_surface(tmp_path / "y.h5").repeat_count == 2
    result = CliRunner().invoke(main, [*args, "--repeat", "0"])
    assert result.exit_code == 2  # a usage error, caught by the flag's type


def test_workers_write_the_serial_file(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    serial = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "serial.h5", "--repeat", "3")
    assert CliRunner().invoke(main, serial).exit_code == 0
    pooled = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "w.h5", "--repeat", "3", "--workers", "2")
    result = CliRunner().invoke(main, pooled)
    assert result.exit_code == 0, result.output
    ours, ref = read_surface(tmp_path / "w.h5"), read_surface(tmp_path / "serial.h5")
    assert '"processes": 2' in ours.attrs["engine"]
    for q in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(ours.stacked(q), ref.stacked(q))


def surface_with_repeats() -> Surface:
    """A 5 x 3 surface with two repeats: v_r = base + r·g, so the mean is base + g and the
    std over seeds (ddof=1, of 0, 1, 2) is exactly g."""
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)
    base = 1.0 + np.add.outer(x**2, y**2)
    g = np.add.outer(np.abs(x), 0.5 * np.abs(y))  # 0 at the centre
    done = np.ones(base.shape, dtype=bool)

    def values(r: int) -> dict[str, np.ndarray]:
        return {"train_loss": base + r * g, "train_acc": 0.5 - 0.1 * r * g}

    return Surface(
        "/tmp/rep.h5", x, y, values(0), done, {"schema_version": 1, "seed": 7},
        {"method": "filter-norm"}, repeats=[Repeat(8, values(1), done), Repeat(9, values(2), done)],
    )  # fmt: skip


def test_mean_and_spread_against_numpy() -> None:
    s = surface_with_repeats()
    mean, std = s.repeat_mean_std("train_loss")
    g = s.repeats[0].values["train_loss"] - s.values["train_loss"]
    np.testing.assert_allclose(mean, s.values["train_loss"] + g, rtol=1e-15)
    np.testing.assert_allclose(std, g, rtol=1e-12, atol=1e-15)
    s.repeats[1].done[0, 0] = False  # a point not done in every repeat has no mean
    mean, std = s.repeat_mean_std("train_loss")
    assert np.isnan(mean[0, 0]) and np.isnan(std[0, 0]) and np.isfinite(mean[1:]).all()


def test_info_shows_the_repeats_block() -> None:
    s = surface_with_repeats()
    lines = format_info(s).splitlines()
    at = next(k for k, ln in enumerate(lines) if ln.startswith("repeats:"))
    # oracle: mean = 1 + x² + y² + |x| + |y|/2 (min 1 at the centre, max 4.5 at the corners),
    # std = g = |x| + |y|/2 (max 1.5 at the corners). Seed r: range (3 + 1.5r) - 1 = 2, 3.5, 5
    # (mean 3.5, std 1.5); the box around the centre holds x in {-0.5, 0, 0.5}, y in {-1, 0, 1},
    # its max is at (±0.5, ±1): 2.25 + r, so the rise is 1.25 + r = 1.25, 2.25, 3.25 (2.25 ± 1)
    assert lines[at : at + 4] == [
        "repeats:     3 surfaces, direction seeds 7, 8, 9 (done 15, 15, 15 of 15 points)",
        "             train_loss mean over seeds: min 1 at (x=0, y=0), max 4.5 at (x=-1, y=-1), "
        "centre 1",
        "             train_loss spread (std over seeds): 0 at the centre, max 1.5 at (x=-1, y=-1)",
        "             train_loss per seed: range (max-min) 3.5 ± 1.5, rise around the centre "
        "2.25 ± 1",
    ]
    assert not any("train_acc mean" in ln for ln in lines)  # losses only: keep it short


def test_info_counts_the_points_of_every_repeat() -> None:
    """Mid-run, repeat 0 complete and a later seed at 7 of 15: not "done 15 of 15 (100%)"."""
    s = surface_with_repeats()
    partial = s.done.copy()
    partial.reshape(-1)[7:] = False
    s.repeats[1] = Repeat(9, s.repeats[1].values, partial)
    done = next(ln for ln in format_info(s).splitlines() if ln.startswith("done:"))
    assert done == "done:        37 of 45 points (82.2%) over 3 repeats (15, 15, 7 of 15 each)"


def test_info_gives_each_seeds_analysis_as_mean_and_spread() -> None:
    """Seed r's surface is the bowl 1 + h_r(x² + y²)/2 with h_r = 1, 2, 3: the fitted curvatures
    are h_r (2 ± 1), and the ε-sharpness 100·(h_r·0.2²)/(1 + 1) = 2·h_r (4 ± 2)."""
    x = y = np.linspace(-1, 1, 21)
    done = np.ones((21, 21), dtype=bool)

    def bowl(h: float) -> dict[str, np.ndarray]:
        return {"train_loss": 1.0 + 0.5 * h * np.add.outer(x**2, y**2)}

    s = Surface(
        "/tmp/bowls.h5", x, y, bowl(1), done, {"schema_version": 1, "seed": 0},
        {"method": "filter-norm"}, repeats=[Repeat(1, bowl(2), done), Repeat(2, bowl(3), done)],
    )  # fmt: skip
    line = next(ln for ln in format_info(s).splitlines() if "ε-sharpness" in ln and "±" in ln)
    assert "train_loss per seed: ε-sharpness 4 ± 2, largest curvature 2 ± 1, smallest 2 ± 1" in line
    assert "basin diameter" in line


def test_info_on_a_computed_file(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    args = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "r.h5", "--repeat", "3")
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, ["info", str(tmp_path / "r.h5")])
    assert result.exit_code == 0
    assert "repeats:     3 surfaces, direction seeds 0, 1, 2 (done 7, 7, 7 of 7 points)" in (
        result.output
    )
    assert "train_loss spread (std over seeds): 0 at the centre, max " in result.output


def test_plot_draws_the_mean_and_the_spread_2d(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    from landscape.plot import mean_surface, render_all, spread_map

    path = run_compute(config(tmp_path, tiny_npz, tiny_mlp_ckpt, repeat=3)).path
    s = read_surface(path)
    written = render_all(s, tmp_path / "plots", kinds=["heatmap"], scales=["linear"])
    names = sorted(p.name for p in written)
    assert names == sorted(
        f"r_{q}_heatmap_linear{suffix}.png"
        for q in ("train_loss", "train_acc")
        for suffix in ("", "_mean", "_std")
    )
    assert all(p.stat().st_size > 0 for p in written)
    stack = s.stacked("train_loss")
    np.testing.assert_allclose(mean_surface(s).values["train_loss"], stack.mean(0), rtol=1e-15)
    fig = spread_map(s, "train_loss")
    mesh = fig.axes[0].collections[0]
    np.testing.assert_allclose(mesh.get_array().reshape(5, 5).T, stack.std(0, ddof=1), rtol=1e-12)
    assert "std over seeds" in fig.axes[0].get_title() and "3 seeds" in fig.axes[0].get_title()


def test_plot_1d_draws_every_seed_and_the_mean_band(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    from landscape.plot import render_all, repeat_curves

    args = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "l.h5", "--repeat", "4")
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "l.h5"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {Path(p).name for p in result.output.split()} == {
        "l_train_1d_linear.png", "l_train_1d_log.png",
        "l_train_1d_linear_mean.png", "l_train_1d_log_mean.png",
        "l_train_loss_barcode.png", "l_train_loss_mergetree.png",  # repeat 0's topology
    }  # fmt: skip
    s = read_surface(tmp_path / "l.h5")
    ax = repeat_curves(s).axes[0]
    lines = {ln.get_gid(): ln for ln in ax.get_lines()}
    assert {f"repeat-{seed}" for seed in range(4)} | {"repeat-mean"} == set(lines)
    stack = s.stacked("train_loss")
    np.testing.assert_allclose(lines["repeat-mean"].get_ydata(), stack.mean(0), rtol=1e-15)
    np.testing.assert_array_equal(lines["repeat-2"].get_ydata(), stack[2])
    band = next(c for c in ax.collections if c.get_gid() == "repeat-band")
    ys = band.get_paths()[0].vertices[:, 1]
    mean, std = stack.mean(0), stack.std(0, ddof=1)
    assert np.isclose(ys.min(), (mean - std).min()) and np.isclose(ys.max(), (mean + std).max())
    assert render_all(s, tmp_path / "none", scales=["linear"])  # render_all works as well


def test_plots_of_a_plain_surface_have_no_mean(tmp_path: Path) -> None:
    from landscape.plot import repeat_curves, spread_map

    s = surface_with_repeats()
    s.repeats = []
    with pytest.raises(ConfigError, match="--repeat R"):
        spread_map(s, "train_loss")
    with pytest.raises(ConfigError, match="1-D"):
        repeat_curves(s)


@pytest.mark.slow
def test_killed_repeat_run_resumes_to_identical_values(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    model = slow_model

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "landscape.cli", "compute", "--model", f"{model}:make",
                "--data", f"npz:{tiny_npz}", "--batch-size", "20", "--engine", "reference",
                "--x=-1:1:6", "--y=-1:1:5", "--repeat", "3", "--out", str(out), "--quiet"]  # fmt: skip

    reference = tmp_path / "ref.h5"
    subprocess.run(command(reference), check=True)
    out = tmp_path / "killed.h5"
    rng = np.random.default_rng(2)
    kills, counts = 0, []
    for _ in range(15):
        proc = subprocess.Popen(command(out), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 60
        while not out.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # a loaded machine may take a while to start torch
        time.sleep(float(rng.uniform(0.2, 1.2)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        s = read_surface(out)
        counts.append(int(sum(r.done.sum() for r in s.repeats) + s.done.sum()))
        if counts[-1] == 90:
            break
    assert kills >= 2 and counts == sorted(counts)
    subprocess.run(command(out), check=True)
    ours, ref = read_surface(out), read_surface(reference)
    np.testing.assert_array_equal(ours.stacked("train_loss"), ref.stacked("train_loss"))


@pytest.mark.mpi
def test_mpiexec_writes_the_serial_file(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    from test_parallel import MPIEXEC, finish

    if MPIEXEC is None:
        pytest.skip("mpiexec not found (pip install mpi4py mpich)")
    serial = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "serial.h5", "--repeat", "3")
    assert CliRunner().invoke(main, serial).exit_code == 0
    out = tmp_path / "m.h5"
    args = cli_args(tmp_path, tiny_npz, tiny_mlp_ckpt, "m.h5", "--repeat", "3")
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "landscape.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    code, err = finish(proc, out)
    assert code == 0, err
    ours, ref = read_surface(out), read_surface(tmp_path / "serial.h5")
    assert '"processes": 2' in ours.attrs["engine"]
    np.testing.assert_array_equal(ours.stacked("train_loss"), ref.stacked("train_loss"))
