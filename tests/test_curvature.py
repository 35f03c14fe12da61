"""``landscape curvature``: λmin, λmax of the Hessian over a surface's plane (Li et al. Fig. 7).

The oracle is the dense Hessian of the loss written out with torch.nn.functional, as a function of
one flat float64 parameter vector, from ``torch.autograd.functional.hessian``, and numpy's eigvalsh.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from landscape.cli import main
from landscape.errors import SurfaceFileError
from landscape.losses import cross_entropy
from landscape.runs.curvature import (
    CurvatureSpec,
    curvature_grid,
    default_out,
    point_curvature,
    read_source,
    run_curvature,
)
from landscape.store.curvature import read_curvature

CPU = torch.device("cpu")
MLP_ARGS = [
    "--model-arg",
    "in_features=6",
    "--model-arg",
    "hidden=8",
    "--model-arg",
    "num_classes=3",
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


# --- the oracle ---------------------------------------------------------------------------------


def dense_extremes(loss_of_flat, w0: torch.Tensor, keep: np.ndarray | None = None):
    """(λmax, λmin) of the dense Hessian of ``loss_of_flat`` at ``w0`` (float64), optionally
    restricted to the coordinates ``keep`` (the others held fixed: a principal sub-block)."""
    h = torch.autograd.functional.hessian(loss_of_flat, w0, vectorize=True).numpy()
    if keep is not None:
        h = h[np.ix_(keep, keep)]
    w = np.linalg.eigvalsh((h + h.T) / 2)
    return w[-1], w[0]


def flat_loss(names, shapes, forward, x, y):
    """``w ↦ mean cross-entropy`` with the parameters unflattened from ``w`` by name."""
    sizes = [int(np.prod(s)) for s in shapes]

    def loss(w: torch.Tensor) -> torch.Tensor:
        p = {n: t.view(s) for n, t, s in zip(names, w.split(sizes), shapes, strict=True)}
        return F.cross_entropy(forward(p, x), y)

    return loss


def tanh_forward(p, x):
    return F.linear(torch.tanh(F.linear(x, p["0.weight"], p["0.bias"])), p["2.weight"], p["2.bias"])


def plane_point(model: nn.Module, coords: tuple[float, float], seed: int = 3):
    """θ, two seeded Gaussian directions, and θ + a·d1 + b·d2 (float32 and a flat float64 copy)."""
    g = torch.Generator().manual_seed(seed)
    theta = OrderedDict((k, v.detach()) for k, v in model.named_parameters())
    d1 = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in theta.items()}
    d2 = {k: torch.randn(v.shape, generator=g) * 0.3 for k, v in theta.items()}
    a, b = coords
    state = OrderedDict((k, v + a * d1[k] + b * d2[k]) for k, v in theta.items())
    flat = torch.cat([v.double().reshape(-1) for v in state.values()])
    return state, flat


def data(n: int, features: int, classes: int):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def batches_of(x, y, size: int = 13):
    out = [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]
    return lambda: out


# --- one point against the dense Hessian (at the default tol 1e-3) ---------------------------------


@pytest.mark.parametrize("ignore", ["none", "biasbn"])
@pytest.mark.parametrize("coords", [(0.5, -0.3), (1.0, 1.0)])
def test_point_matches_the_dense_hessian(ignore: str, coords: tuple[float, float]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4))  # 164 parameters
    x, y = data(30, 5, 4)  # batches of 13, 13, 4: the mean must weight by size
    state, flat = plane_point(model, coords)
    names = [k for k, v in state.items() if ignore == "none" or v.ndim >= 2]
    got = point_curvature(model, state, names, batches_of(x, y), cross_entropy, CPU)  # tol 1e-3

    shapes = [v.shape for v in state.values()]
    loss = flat_loss(list(state), shapes, tanh_forward, x.double(), y)
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    keep = np.concatenate(
        [np.arange(offsets[i], offsets[i + 1]) for i, k in enumerate(state) if k in names]
    )
    lam_max, lam_min = dense_extremes(loss, flat, keep)

    assert lam_min < 0 < lam_max  # a point with negative curvature: λmin is a real test
    np.testing.assert_allclose(got.lambda_max, lam_max, rtol=1e-3)
    np.testing.assert_allclose(got.lambda_min, lam_min, rtol=1e-3)
    np.testing.assert_allclose(got.ratio, abs(lam_min / lam_max), rtol=2e-3)
    np.testing.assert_allclose(got.loss, float(loss(flat)), rtol=1e-5)
    assert got.hvps > 0


def test_small_models_are_diagonalized_densely() -> None:
    model = nn.Sequential(nn.Linear(4, 3))  # 15 parameters: assembled from 15 products
    x, y = data(20, 4, 3)
    state, flat = plane_point(model, (0.7, 0.2))
    got = point_curvature(model, state, list(state), batches_of(x, y), cross_entropy, CPU)

    def forward(p, inputs):
        return F.linear(inputs, p["0.weight"], p["0.bias"])

    shapes = [v.shape for v in state.values()]
    lam_max, lam_min = dense_extremes(flat_loss(list(state), shapes, forward, x.double(), y), flat)
    assert got.hvps == 15
    np.testing.assert_allclose([got.lambda_max, got.lambda_min], [lam_max, lam_min], atol=1e-5)


def test_a_non_finite_point_is_nan_not_an_error() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    x, y = data(10, 4, 3)
    state, _ = plane_point(model, (0.0, 0.0))
    state["0.weight"] = torch.full_like(state["0.weight"], float("nan"))
    got = point_curvature(model, state, list(state), batches_of(x, y), cross_entropy, CPU)
    assert np.isnan(got.lambda_min) and np.isnan(got.lambda_max) and got.hvps == 0


# --- the command, on a surface computed with landscape compute -------------------------------------


def compute_surface(tmp_path: Path, npz: Path, ckpt: Path, *grid: str, name: str = "s.h5") -> Path:
    out = tmp_path / name
    code, _, err = run(
        "compute", "--model", "mlp", *MLP_ARGS, "--checkpoint", str(ckpt), "--data", f"npz:{npz}",
        "--device", "cpu", *grid, "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    return out


@pytest.fixture
def surface(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> Path:
    return compute_surface(tmp_path, tiny_npz, tiny_mlp_ckpt, "--x=-1:1:5", "--y=-1:1:5")


def mlp_oracle(surface_file: Path, npz: Path, ckpt: Path, a: float, b: float):
    """(λmax, λmin) of the built-in MLP's dense Hessian at θ + a·d1 + b·d2, over every sample."""
    theta = torch.load(ckpt, weights_only=True)["state_dict"]
    with h5py.File(surface_file, "r") as f:
        d1 = {k: torch.from_numpy(f[f"directions/x/{k}"][()]) for k in f["directions/x"]}
        d2 = {k: torch.from_numpy(f[f"directions/y/{k}"][()]) for k in f["directions/y"]}
    state = {k: (v + a * d1[k] + b * d2[k]).double() for k, v in theta.items()}
    arrays = np.load(npz)
    x, y = torch.from_numpy(arrays["x"]).double(), torch.from_numpy(arrays["y"])

    def forward(p, inputs):  # layers.0, ReLU, layers.2, ReLU, layers.4
        h = F.relu(F.linear(inputs, p["layers.0.weight"], p["layers.0.bias"]))
        h = F.relu(F.linear(h, p["layers.2.weight"], p["layers.2.bias"]))
        return F.linear(h, p["layers.4.weight"], p["layers.4.bias"])

    flat = torch.cat([v.reshape(-1) for v in state.values()])
    shapes = [v.shape for v in state.values()]
    return dense_extremes(flat_loss(list(state), shapes, forward, x, y), flat)


def test_curvature_command_writes_the_map(
    surface: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    code, out, err = run("curvature", str(surface), "--x=-1:1:3", "--y=-1:1:3")
    assert code == 0, err
    path = default_out(surface)
    assert path == surface.with_name("s_curvature.h5")
    assert f"wrote {path}: 9 of 9 points computed" in out

    c = read_curvature(path)
    assert c.shape == (3, 3) and c.done.all() and c.failed == 0
    np.testing.assert_array_equal(c.x, [-1, 0, 1])
    np.testing.assert_allclose(
        c.maps["ratio"], np.abs(c.maps["lambda_min"] / c.maps["lambda_max"]), rtol=1e-12
    )
    assert c.attrs["schema"] == "landscape.curvature" and c.attrs["schema_version"] == 1
    assert c.attrs["samples"] == 40 and c.attrs["moved_parameters"] == 155
    assert c.attrs["source"] == str(surface.resolve())
    assert c.attrs["weights_sha256"] == read_source(str(surface)).attrs["weights_sha256"].strip('"')
    # value[i, j] is the point (x[i], y[j]): check a corner against the dense Hessian there
    lam_max, lam_min = mlp_oracle(surface, tiny_npz, tiny_mlp_ckpt, a=1.0, b=-1.0)
    np.testing.assert_allclose(c.maps["lambda_max"][2, 0], lam_max, rtol=1e-3)
    np.testing.assert_allclose(c.maps["lambda_min"][2, 0], lam_min, rtol=1e-3)
    # the loss at the centre is the surface's own
    surface_loss = read_source(str(surface)).values["train_loss"][2, 2]
    np.testing.assert_allclose(c.maps["loss"][1, 1], surface_loss, rtol=1e-5)


def test_resume_computes_only_the_missing_points(surface: Path) -> None:
    out = surface.with_name("c.h5")
    args = ("curvature", str(surface), "--x=-1:1:2", "--y=-1:1:2", "--samples", "25")
    assert run(*args, "--out", str(out))[0] == 0
    full = read_curvature(out)
    assert full.attrs["samples"] == 25
    with h5py.File(out, "r+") as f:  # as if killed after 2 points
        f["done"][1, :] = False
        for name in ("ratio", "lambda_min", "lambda_max", "loss"):
            f[name][1, :] = np.nan
    calls: list[tuple[str, int, int]] = []

    class Bar:  # records what the progress bar is told
        def update(self, n: int) -> None:
            calls.append(("update", n, 0))

        def close(self) -> None:
            calls.append(("close", 0, 0))

    def progress(total: int, initial: int) -> Bar:
        calls.append(("open", total, initial))
        return Bar()

    spec = CurvatureSpec(str(surface), "-1:1:2", "-1:1:2", samples=25, out=str(out))
    result = run_curvature(spec, progress=progress)
    assert result.resumed and (result.computed, result.total, result.failed) == (2, 4, 0)
    assert calls == [("open", 4, 2), ("update", 1, 0), ("update", 1, 0), ("close", 0, 0)]
    again = read_curvature(out)
    assert again.done.all()
    for name, values in full.maps.items():
        np.testing.assert_allclose(again.maps[name], values, rtol=1e-12, err_msg=name)


def test_other_settings_are_refused_and_the_file_kept(surface: Path) -> None:
    out = surface.with_name("c.h5")
    args = ("curvature", str(surface), "--x=-1:1:2", "--y=-1:1:2", "--out", str(out), "-q")
    assert run(*args)[0] == 0
    before = out.read_bytes()
    code, _, err = run(*args, "--tol", "1e-2")
    assert code == 1 and "other settings (tol: 0.001 there, 0.01 now)" in err
    code, _, err = run("curvature", str(surface), "--x=-1:1:3", "--y=-1:1:2", "--out", str(out))
    assert code == 1 and "another grid" in err
    assert out.read_bytes() == before
    assert run(*args, "--tol", "1e-2", "--overwrite")[0] == 0
    assert read_curvature(out).attrs["tol"] == 1e-2


def test_a_checkpoint_with_other_weights_is_refused(
    surface: Path, tiny_mlp_ckpt: Path, tmp_path: Path
) -> None:
    out = surface.with_name("c.h5")
    args = ("curvature", str(surface), "--x=-1:1:2", "--y=-1:1:2", "--out", str(out), "-q")
    assert run(*args)[0] == 0
    before = out.read_bytes()
    state = torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"]
    copy = tmp_path / "copy.pt"  # the same weights in another file (bare, not wrapped): accepted
    torch.save(state, copy)
    code, text, err = run(*args[:-1], "--checkpoint", str(copy))
    assert code == 0 and "0 of 4 points computed" in text, err

    state["layers.0.weight"] = state["layers.0.weight"] + 0.01
    other = tmp_path / "other.pt"
    torch.save({"state_dict": state}, other)
    code, _, err = run(*args, "--checkpoint", str(other), "--overwrite")
    assert code == 1 and "holds other weights than" in err and "--checkpoint PATH" in err
    torch.save({"state_dict": state}, tiny_mlp_ckpt)  # the surface's checkpoint changed in place
    code, _, err = run(*args)
    assert code == 1 and "holds other weights than" in err
    tiny_mlp_ckpt.unlink()
    code, _, err = run(*args)
    assert code == 1 and "does not exist" in err and "--checkpoint PATH" in err
    assert out.read_bytes() == before


def test_plot_and_info_read_the_curvature_file(surface: Path, tmp_path: Path) -> None:
    assert run("curvature", str(surface), "--x=-1:1:3", "--y=-1:1:3", "-q")[0] == 0
    path = default_out(surface)
    code, out, err = run("plot", str(path), "--out", str(tmp_path / "plots"))
    assert code == 0, err
    written = [Path(p) for p in out.split()]
    assert [p.name for p in written] == [
        "s_curvature_ratio_heatmap.png",
        "s_curvature_lambda_min_heatmap.png",
        "s_curvature_lambda_max_heatmap.png",
    ]
    assert all(p.stat().st_size > 1000 for p in written)
    code, _, err = run("plot", str(path), "--kind", "contour")
    assert code == 2 and "is a curvature file" in err

    code, out, err = run("info", str(path))
    assert code == 0, err
    assert "landscape curvature map, schema version 1" in out
    assert "done:        9 of 9 points (100.0%)" in out
    c = read_curvature(path)
    i, j = np.unravel_index(np.nanargmax(c.maps["ratio"]), c.shape)
    assert f"max {c.maps['ratio'][i, j]:.6g} at (x={c.x[i]:g}, y={c.y[j]:g})" in out
    for line in ("ratio:", "lambda_min:", "lambda_max:", "loss:", "hessian:     over 40 samples"):
        assert line in out


def test_one_dimensional_surface(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    s = compute_surface(tmp_path, tiny_npz, tiny_mlp_ckpt, "--x=-1:1:5", name="line.h5")
    code, _, err = run("curvature", str(s), "--x=-1:1:3", "--y=-1:1:3")
    assert code == 1 and "1-D surface; drop --y" in err
    assert run("curvature", str(s), "--x=-1:1:3", "-q")[0] == 0
    c = read_curvature(default_out(s))
    assert c.shape == (3,) and c.y is None and c.done.all()
    code, out, err = run("plot", str(default_out(s)), "--out", str(tmp_path))
    assert code == 0 and out.strip().endswith("line_curvature_curvature_1d.png"), err


def test_default_grid_and_bad_inputs(surface: Path, tmp_path: Path) -> None:
    x, y = curvature_grid(read_source(str(surface)), CurvatureSpec(str(surface)))
    np.testing.assert_allclose(x, np.linspace(-1, 1, 11))
    np.testing.assert_allclose(y, np.linspace(-1, 1, 11))
    code, _, err = run("curvature", str(surface), "--out", str(surface))
    assert code == 1 and "the surface file itself" in err
    code, _, err = run("curvature", str(surface), "--out", str(tmp_path / "no" / "c.h5"))
    assert code == 1 and "does not exist" in err
    code, _, _ = run("curvature", str(surface), "--tol", "0")
    assert code == 2
    li = tmp_path / "li.h5"  # a Li et al. reference surface file: no model to rebuild
    with h5py.File(li, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 3)
        f["ycoordinates"] = np.linspace(-1, 1, 3)
        f["train_loss"] = np.ones((3, 3))
    with pytest.raises(SurfaceFileError, match=r"Li et al\. reference surface file"):
        read_source(str(li))
    code, _, err = run("curvature", str(li))
    assert code == 1 and "Li et al. reference surface file" in err
