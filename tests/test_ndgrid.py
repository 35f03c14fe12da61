"""n-D grids (3 to 5 directions): the CLI and the API, an independent oracle, the 2-D slice,
resume, sharding, the v2 file and its checks, 1-D/2-D files unchanged, plot and info."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch.func import functional_call

import landscape
from landscape import params
from landscape.cli import main
from landscape.config import ComputeConfig, GridSpec
from landscape.grid import Grid, point_coords, point_levels
from landscape.store import read_surface
from landscape.store.validate import check_surface

TINY = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
        "--model-arg", "num_classes=3"]  # fmt: skip
AXES3 = ["--x=-1:1:5", "--y=-1:1:5", "--z=-1:1:3"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def cli_args(npz: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["compute", *TINY, "--checkpoint", str(ckpt), "--data", f"npz:{npz}",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def tiny_objects(npz: Path, ckpt: Path) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """The CLI's model at the checkpoint and its data, as objects for the API."""
    from landscape.models import build_model

    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    model.load_state_dict(torch.load(ckpt)["state_dict"])
    data = np.load(npz)
    return model, (torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))


def one_line_error(code: int, stderr: str, fragment: str) -> None:
    assert code != 0
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], stderr
    assert "Traceback" not in stderr


# --- the grid itself -----------------------------------------------------------------------------


def test_points_and_levels_of_a_k_axis_grid_follow_row_major_order() -> None:
    axes = [np.linspace(-1, 1, 3), np.linspace(0, 2, 5), np.linspace(-2, 2, 4)]
    for flat, (i, j, k) in enumerate(itertools.product(range(3), range(5), range(4))):
        assert point_coords(flat, *axes) == (axes[0][i], axes[1][j], axes[2][k])
    assert point_coords(2, axes[0], None) == (1.0,)
    levels = point_levels((5, 5, 5)).reshape(5, 5, 5)
    coarse = np.zeros((5, 5, 5), bool)
    coarse[np.ix_([0, 2, 4], [0, 2, 4], [0, 2, 4])] = True  # 3 x 3 x 3 first
    assert (levels[coarse] == 0).all() and (levels[~coarse] == 1).all()


def test_the_config_takes_z_or_axes_and_leaves_2d_configs_as_they_were() -> None:
    base = {"model": {"name": "mlp"}, "data": {"name": "digits"}, "out": "o.h5"}
    plane = ComputeConfig.from_dict({**base, "grid": {"x": "-1:1:5", "y": "-1:1:5"}})
    # the text and fingerprint of a 2-D config hold no key it did not hold before
    assert plane.value_fingerprint()["grid"] == {"x": "-1:1:5", "y": "-1:1:5"}
    assert "z:" not in plane.to_yaml() and "axes" not in plane.to_yaml()
    cube = ComputeConfig.from_dict({**base, "grid": {"x": "-1:1:5", "y": "-1:1:5", "z": "0:1:3"}})
    assert cube.dims == 3 and Grid.of(cube.grid).shape == (5, 5, 3)
    three = ComputeConfig.from_dict({**base, "grid": {"axes": ["-1:1:5", "-1:1:5", "0:1:3"]}})
    assert three == cube  # --axes A B C is --x A --y B --z C: one config, one file to resume
    five = ComputeConfig.from_dict({**base, "grid": {"axes": ["-1:1:3"] * 5}})
    assert five.dims == 5 and ComputeConfig.from_yaml(five.to_yaml()) == five  # resumes
    assert Grid.of(GridSpec(axes=["-1:1:3"] * 4)).spec() == GridSpec(axes=["-1.0:1.0:3"] * 4)


# --- computing: the CLI, the API and an oracle ---------------------------------------------------


def test_a_3d_surface_from_the_cli_equals_the_apis(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "cube.h5"
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, "--axes", "-1:1:5", "-1:1:5",
                                 "-1:1:3"))  # fmt: skip
    assert code == 0, err
    cli = read_surface(out)
    model, data = tiny_objects(tiny_npz, tiny_mlp_ckpt)
    api = landscape.compute(model, data, x=(-1, 1, 5), y=(-1, 1, 5), z=(-1, 1, 3), progress=False)
    assert cli.loss.shape == api.loss.shape == (5, 5, 3)
    np.testing.assert_allclose(cli.loss, api.loss, rtol=1e-6, atol=1e-7)
    assert [len(a) for a in api.axes] == [5, 5, 3] and len(api.directions) == 3
    np.testing.assert_array_equal(api.axes[2], [-1.0, 0.0, 1.0])
    assert "3-D 5 x 5 x 3" in repr(api) and "data:image/png" in api._repr_html_()  # x-y slice
    for d_cli, d_api in zip(cli.directions, api.directions, strict=True):
        assert all(torch.equal(d_cli[k], d_api[k]) for k in d_api)


def _oracle(model: torch.nn.Module, data: tuple, dirs: list, coeffs: tuple) -> float:
    """The mean cross-entropy at θ + Σ c_i d_i, evaluated directly with the model."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for c, d in zip(coeffs, dirs, strict=True):
        for name, t in d.items():
            state[name] = state[name] + c * t.to(state[name].dtype)
    with torch.no_grad():
        out = functional_call(model, state, (data[0],))
        return float(torch.nn.functional.cross_entropy(out.double(), data[1]))


@pytest.mark.parametrize("family", ["qr-orthogonal", "filter-norm"])
def test_every_point_equals_the_loss_computed_by_hand(family: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    data = (torch.randn(30, 4), torch.randint(0, 3, (30,)))
    s = landscape.compute(model, data, axes=[(-1, 1, 3), (-0.5, 0.5, 3), (0, 2, 3), (-1, 1, 2)],
                          direction=family, seed=4, progress=False)  # fmt: skip
    assert s.loss.shape == (3, 3, 3, 2) and s.done.all() and len(s.directions) == 4
    for index in itertools.product(*(range(n) for n in s.loss.shape)):
        coeffs = tuple(float(a[i]) for a, i in zip(s.axes, index, strict=True))
        assert s.loss[index] == pytest.approx(_oracle(model, data, s.directions, coeffs), rel=1e-5)
    if family == "qr-orthogonal":  # k orthonormal-then-scaled directions: pairwise orthogonal
        for a, b in itertools.combinations(s.directions, 2):
            assert abs(params.cosine(a, b)) < 1e-6


def test_the_z0_slice_of_a_3d_surface_is_the_2d_surface_of_the_same_seed() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    data = (torch.randn(30, 4), torch.randint(0, 3, (30,)))
    for family in ("filter-norm", "qr-orthogonal"):
        kw = {"direction": family, "seed": 3, "progress": False}
        cube = landscape.compute(model, data, x=(-1, 1, 5), y=(-1, 1, 3), z=(-1, 1, 5), **kw)
        plane = landscape.compute(model, data, x=(-1, 1, 5), y=(-1, 1, 3), **kw)
        np.testing.assert_allclose(cube.loss[:, :, 2], plane.loss, rtol=1e-6, atol=1e-7)
        for d3, d2 in zip(cube.directions, plane.directions, strict=False):  # same d1, d2
            assert all(torch.allclose(d3[k], d2[k]) for k in d2)


def test_a_partial_3d_run_resumes_to_identical_values(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "r.h5"
    argv = cli_args(tiny_npz, tiny_mlp_ckpt, out, *AXES3)
    assert run(*argv)[0] == 0
    whole = read_surface(out).loss
    with h5py.File(out, "r+") as f:  # as a killed run leaves it: some points not done
        done = f["done"][()]
        done[1:, 1, :] = False
        done[:, :, 2] = False
        f["done"][...] = done
        f["train_loss"][...] = np.where(done, f["train_loss"][()], np.nan)
    assert not read_surface(out).done.all()
    code, _, err = run(*argv)
    assert code == 0, err
    resumed = read_surface(out)
    assert resumed.done.all()
    np.testing.assert_array_equal(resumed.loss, whole)


def test_two_workers_write_the_serial_3d_file(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    serial, shared = tmp_path / "s.h5", tmp_path / "w.h5"
    assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, serial, *AXES3, "--engine", "reference"))[0] == 0
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, shared, *AXES3, "--engine",
                                 "reference", "--workers", "2"))  # fmt: skip
    assert code == 0, err
    w = read_surface(shared)
    assert w.done.all() and '"processes": 2' in w.attrs["engine"]
    np.testing.assert_array_equal(w.loss, read_surface(serial).loss)


MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)


@pytest.mark.mpi
@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install mpi4py mpich)")
def test_mpiexec_writes_the_serial_3d_file(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    serial, sharded = tmp_path / "s.h5", tmp_path / "m.h5"
    assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, serial, *AXES3, "--engine", "reference"))[0] == 0
    argv = cli_args(tiny_npz, tiny_mlp_ckpt, sharded, *AXES3, "--engine", "reference")
    done = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "landscape.cli", *argv],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    m = read_surface(sharded)
    assert '"processes": 2' in m.attrs["engine"]
    np.testing.assert_array_equal(m.loss, read_surface(serial).loss)


# --- the file: v2 for n-D, v1 exactly as before for 1-D and 2-D -------------------------------------

V1_DATASETS = {"xcoordinates", "ycoordinates", "train_loss", "train_acc", "train_loss_se", "done"}


def test_2d_and_1d_files_keep_version_1_and_its_layout(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    for name, grid, shape in (("p.h5", ["--x=-1:1:5", "--y=-1:1:3"], (5, 3)),
                              ("l.h5", ["--x=-1:1:5"], (5,))):  # fmt: skip
        out = tmp_path / name
        assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, *grid))[0] == 0
        with h5py.File(out, "r") as f:
            assert f.attrs["schema_version"] == 1 and f.attrs["dims"] == len(shape)
            datasets = {k for k in f if isinstance(f[k], h5py.Dataset)}
            expected = V1_DATASETS if len(shape) == 2 else V1_DATASETS - {"ycoordinates"}
            assert datasets == expected
            assert all(f[k].shape == shape for k in expected if "coordinates" not in k)
            assert set(f["directions"]) == set("xy"[: len(shape)])
            assert set(yaml.safe_load(f.attrs["config"])["grid"]) == {"x", "y"}  # no z, no axes
        s = read_surface(out)  # a version-1 file reads
        assert s.dims == len(shape) and s.beyond == () and s.loss.shape == shape


def test_a_3d_file_is_version_2_with_a_third_axis(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "c.h5"
    assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, *AXES3))[0] == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["schema_version"] == 2 and f.attrs["dims"] == 3
        np.testing.assert_array_equal(f["zcoordinates"][()], [-1, 0, 1])
        assert f["done"].shape == (5, 5, 3) and set(f["directions"]) == {"x", "y", "z"}
        assert check_surface(f, out) == "landscape"


def _crafted(path: Path, version: int, lengths: list[int], *, write: bool = True) -> Path:
    """A minimal surface file of ``version`` with coordinates of ``lengths`` (x, y, z, ...)."""
    names = ["x", "y", "z", "u", "v"]
    with h5py.File(path, "w") as f:
        f.attrs.update({"schema": "landscape.surface", "schema_version": version,
                        "config": "model: {name: mlp}\n"})  # fmt: skip
        for n, length in zip(names, lengths, strict=False):
            if write:
                f[f"{n}coordinates"] = np.linspace(-1, 1, length)
            else:  # declared only: a crafted header, never written
                f.create_dataset(f"{n}coordinates", shape=(length,), dtype="f8", chunks=(1024,))
        if write:
            f["train_loss"] = np.zeros(lengths)
            f["done"] = np.ones(lengths, dtype=bool)
    return path


@pytest.mark.parametrize(
    ("version", "lengths", "fragment"),
    [
        (1, [3, 3, 3], "zcoordinates does not belong in a version-1 file"),
        (2, [3, 3], "zcoordinates is missing"),
        (2, [3, 3, 3, 3, 3, 3], "ucoordinates"),  # a sixth axis is none of ours: refused
        (3, [3, 3, 3], "schema version 3"),
    ],
)
def test_malformed_nd_files_are_refused_naming_the_problem(
    tmp_path: Path, version: int, lengths: list[int], fragment: str
) -> None:
    path = _crafted(tmp_path / "bad.h5", version, lengths[:5])
    if len(lengths) == 6:  # one coordinate beyond the five named axes: a stray dataset
        with h5py.File(path, "r+") as f:
            del f["ucoordinates"]
    with pytest.raises(landscape.errors.SurfaceFileError, match=fragment):
        read_surface(path)


def test_a_v2_file_declaring_a_billion_points_is_refused_before_reading(tmp_path: Path) -> None:
    path = _crafted(tmp_path / "huge.h5", 2, [100_000, 100_000, 100_000], write=False)
    with pytest.raises(landscape.errors.SurfaceFileError, match="declare a grid of"):
        read_surface(path)


def test_a_v2_file_reads_with_its_axes_and_values(tmp_path: Path) -> None:
    path = _crafted(tmp_path / "ok.h5", 2, [3, 4, 5, 2])
    s = read_surface(path)
    assert s.dims == 4 and s.shape == (3, 4, 5, 2) and [len(a) for a in s.axes] == [3, 4, 5, 2]


# --- the command line's n-D: refusals, plot, info --------------------------------------------------


def test_six_axes_and_a_third_axis_for_pca_are_refused_in_one_line(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "x.h5"
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, "--axes", *["-1:1:3"] * 6))
    one_line_error(code, err, "a grid has 1 to 5 axes, got 6")
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, *AXES3, "--direction", "pca"))
    one_line_error(code, err, "direction pca builds 1 or 2 directions")
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, "--axes", "-1:1:3", "-1:1:3",
                                 "--y=-1:1:3"))  # fmt: skip
    one_line_error(code, err, "grid.axes (--axes) gives every axis")
    assert not out.exists()
    with pytest.raises(landscape.errors.ConfigError, match="1 to 5 axes"):
        landscape.compute(torch.nn.Linear(2, 2), (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)),
                          axes=[(-1, 1, 2)] * 6, progress=False)  # fmt: skip


def test_plot_draws_slices_and_projections_and_info_shows_the_3d_grid(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "c.h5"
    assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, out, *AXES3))[0] == 0
    code, text, err = run("info", str(out))
    assert code == 0, err
    assert "3-D 5 x 5 x 3" in text and "z in [-1, 1] (3 points)" in text
    assert "schema version 2" in text and "|d3|=" in text
    assert "x-y plane through the centre (z=0)" in text
    code, _, err = run("plot", str(out), "--out", str(tmp_path / "plots"), "--kind", "contour",
                       "--linear")  # fmt: skip
    assert code == 0, err
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    for pair in ("xy", "xz", "yz"):
        assert f"c_train_loss_contour_linear_{pair}_slice.png" in names
        assert f"c_train_loss_contour_linear_{pair}_min.png" in names


def test_a_projection_is_the_minimum_over_the_other_axes() -> None:
    from landscape.plot.ndgrid import plane
    from landscape.store.values import SurfaceValues

    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 4, 5))
    axes = [np.linspace(-1, 1, n) for n in v.shape]
    s = SurfaceValues("m.h5", axes[0], axes[1], {"train_loss": v}, np.ones(v.shape, bool),
                      beyond=(axes[2],))  # fmt: skip
    np.testing.assert_array_equal(plane(s, 0, 2, "min").values["train_loss"], v.min(axis=1))
    np.testing.assert_array_equal(plane(s, 0, 1, "slice").values["train_loss"], v[:, :, 2])
    np.testing.assert_array_equal(plane(s, 1, 2, "slice").values["train_loss"], v[1])


def test_a_yaml_4d_grid_with_repeats_computes_tells_and_plots(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    config = tmp_path / "g.yaml"
    config.write_text('grid:\n  axes: ["-1:1:3", "-1:1:3", "-0.5:0.5:3", "0:1:2"]\n')
    out = tmp_path / "h.h5"
    argv = cli_args(tiny_npz, tiny_mlp_ckpt, out, "--config", str(config), "--repeat", "2")
    code, _, err = run(*argv)
    assert code == 0, err
    s = read_surface(out)
    assert s.shape == (3, 3, 3, 2) and s.repeat_count == 2 and s.repeats[0].done.all()
    assert len(s.directions) == 4 and s.attrs["schema_version"] == 2
    code, text, err = run("info", str(out))
    assert code == 0, err
    assert "4-D 3 x 3 x 3 x 2" in text and "u in [0, 1] (2 points)" in text and "repeats:" in text
    code, _, err = run("plot", str(out), "--out", str(tmp_path / "p"), "--kind", "heatmap",
                       "--linear")  # fmt: skip
    assert code == 0, err
    names = {p.name for p in (tmp_path / "p").iterdir()}
    assert "h_train_loss_heatmap_linear_zu_min.png" in names
    assert "h_train_loss_heatmap_linear_xy_slice_mean.png" in names


def test_directions_reused_from_a_3d_file_give_its_values_and_a_2d_file_is_refused(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    first, again, plane = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "p.h5"
    assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, first, *AXES3, "--seed", "5"))[0] == 0
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, again, *AXES3, "--directions",
                                 str(first)))  # fmt: skip
    assert code == 0, err
    np.testing.assert_allclose(read_surface(again).loss, read_surface(first).loss, rtol=1e-12)
    assert run(*cli_args(tiny_npz, tiny_mlp_ckpt, plane, "--x=-1:1:3", "--y=-1:1:3"))[0] == 0
    code, _, err = run(*cli_args(tiny_npz, tiny_mlp_ckpt, tmp_path / "c.h5", *AXES3,
                                 "--directions", str(plane)))  # fmt: skip
    one_line_error(code, err, "has no z direction (it holds 2)")


@pytest.mark.slow
def test_the_ndgrid_bench_times_both_whole_processes_and_checks_every_point(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bench.json"
    bench = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--ndgrid", "--grid", "3", "--device", "cpu", "--json",
         str(out)], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads(out.read_text())
    assert row["points"] == 27 and row["grid"] == "3x3x3"
    assert row["ratio"] == pytest.approx(row["loop_wall"] / row["engine_wall"])
    assert row["max_rel_loss_diff"] <= 1e-6 and "ratio" in done.stdout
