"""Directions from checkpoints: training trajectories (PCA of the path) and interpolation."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.checkpoint import load_state_dict
from landscape.checkpoint_paths import expand_checkpoints
from landscape.cli import main
from landscape.config import DirectionSpec
from landscape.directions import DirectionContext, build
from landscape.errors import DirectionError
from landscape.models import build_model
from landscape.plot import contour
from landscape.store import read_surface

MLP_ARGS = {"in_features": 6, "hidden": 8, "num_classes": 3}
CLI_MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "num_classes=3"]
CLI_MLP += ["--model-arg", "hidden=8"]


# --- helpers ------------------------------------------------------------------------------------


def tiny_state(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return OrderedDict(build_model("mlp", MLP_ARGS).state_dict())


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": dict(state)}, path)
    return path


def synthetic_path(folder: Path, n: int = 6) -> tuple[list[OrderedDict], OrderedDict]:
    """Checkpoints θ_i = θ_n + known offsets, spread unevenly so the principal axes are distinct."""
    centre = tiny_state(0)
    gen = torch.Generator().manual_seed(1)
    states = []
    for i in range(n):
        scale = (n - 1 - i) / (n - 1)  # the last is the centre itself
        state = OrderedDict(
            (k, v + scale * torch.randn(v.shape, generator=gen) * (1.0 + 2.0 * (v.ndim >= 2)))
            for k, v in centre.items()
        )
        states.append(centre if i == n - 1 else state)
        save(states[-1], folder / f"epoch_{i}.pt")
    return states, centre


def context(
    spec: DirectionSpec, count: int, centre: OrderedDict, *, data: Path | None = None
) -> DirectionContext:
    """A context as compute builds it, with a loader of real checkpoint files."""
    extra = {}
    if data is not None:
        model = build_model("mlp", MLP_ARGS)
        arrays = np.load(data)
        x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        extra = {
            "model": model,
            "batches": lambda: iter([(x[:25], y[:25]), (x[25:], y[25:])]),
            "loss_fn": lambda logits, t: torch.nn.functional.cross_entropy(
                logits, t, reduction="none"
            ),
        }
    theta = OrderedDict((k, v.float()) for k, v in centre.items())
    return DirectionContext(
        theta, spec, count, state=OrderedDict(centre), load_state=load_state_dict, **extra
    )


def loss_of(state: dict[str, torch.Tensor], npz: Path, factory=None) -> float:
    """The mean cross-entropy of a model at ``state`` on ``npz``, computed by hand."""
    model = factory() if factory else build_model("mlp", MLP_ARGS)
    model.load_state_dict(state)
    model.eval()
    arrays = np.load(npz)
    with torch.no_grad():
        logits = model(torch.from_numpy(arrays["x"]))
        return torch.nn.functional.cross_entropy(logits, torch.from_numpy(arrays["y"])).item()


def flat(state: dict[str, torch.Tensor], names: list[str]) -> np.ndarray:
    return np.concatenate([state[k].double().numpy().ravel() for k in names])


def run_cli(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


# --- trajectory -------------------------------------------------------------------------------


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_trajectory_matches_a_numpy_pca_oracle(tmp_path: Path, tiny_npz: Path, ignore: str) -> None:
    states, centre = synthetic_path(tmp_path / "run")
    spec = DirectionSpec(name="trajectory", trajectory=[str(tmp_path / "run")], ignore=ignore)
    ds = build(context(spec, 2, centre, data=tiny_npz))

    # oracle: every checkpoint minus the centre as a row, columns centred, numpy's SVD
    names = [k for k, v in centre.items() if ignore == "none" or v.ndim >= 2]
    m = np.stack([flat(s, names) - flat(centre, names) for s in states])
    _, sv, vt = np.linalg.svd(m - m.mean(axis=0), full_matrices=False)
    d = [flat(v, names) for v in ds.vectors]
    for k in range(2):
        assert abs(abs(d[k] @ vt[k]) - 1.0) < 1e-5  # the same axis up to sign
        np.testing.assert_allclose(np.linalg.norm(d[k]), 1.0, rtol=1e-6)
    assert abs(d[0] @ d[1]) < 1e-6
    np.testing.assert_allclose(
        ds.attrs["explained_variance_ratio"], (sv**2 / (sv**2).sum())[:2], rtol=1e-5
    )
    for k, v in ds.vectors[0].items():  # zero on the tensors that do not move
        if k not in names:
            assert not v.any()

    # every checkpoint projected as (θ_i − θ_n)·d; the centre on the origin; θ_0 at negative x, y
    traj = ds.trajectory
    np.testing.assert_allclose(traj["x"], m @ d[0], atol=1e-5)
    np.testing.assert_allclose(traj["y"], m @ d[1], atol=1e-5)
    assert (traj["x"][-1], traj["y"][-1]) == (0.0, 0.0)
    assert traj["x"][0] < 0 and traj["y"][0] < 0
    assert list(traj["labels"]) == [f"epoch_{i}.pt" for i in range(len(states))]
    losses = [loss_of(s, tiny_npz) for s in states]
    np.testing.assert_allclose(traj["loss"], losses, rtol=1e-5)
    assert ds.attrs["checkpoints"] == len(states)
    assert ds.attrs["path_x_range"] == [float(traj["x"].min()), float(traj["x"].max())]


def test_trajectory_1d_builds_one_direction(tmp_path: Path) -> None:
    _, centre = synthetic_path(tmp_path / "run", n=2)
    spec = DirectionSpec(name="trajectory", trajectory=[str(tmp_path / "run")])
    ds = build(context(spec, 1, centre))
    assert len(ds.vectors) == 1 and "y" not in ds.trajectory
    assert "loss" not in ds.trajectory  # no model in this context: nothing to evaluate
    assert len(ds.attrs["explained_variance_ratio"]) == 1


def test_checkpoint_folders_and_globs_expand_in_training_order(tmp_path: Path) -> None:
    state = tiny_state()
    for name in ["epoch_10.pt", "epoch_2.pt", "epoch_1.pth", "notes.txt", "epoch_3.safetensors"]:
        (tmp_path / "run" / name).parent.mkdir(exist_ok=True)
        if name.endswith(".pt") or name.endswith(".pth"):
            save(state, tmp_path / "run" / name)
        else:
            (tmp_path / "run" / name).write_text("x")
    folder = [p.name for p in expand_checkpoints([str(tmp_path / "run")])]
    assert folder == ["epoch_1.pth", "epoch_2.pt", "epoch_3.safetensors", "epoch_10.pt"]
    glob = [p.name for p in expand_checkpoints([str(tmp_path / "run" / "epoch_*.pt")])]
    assert glob == ["epoch_2.pt", "epoch_10.pt"]
    given = [str(tmp_path / "run" / "epoch_10.pt"), str(tmp_path / "run" / "epoch_2.pt")]
    assert [p.name for p in expand_checkpoints(given)] == ["epoch_10.pt", "epoch_2.pt"]
    with pytest.raises(DirectionError, match="matches no file"):
        expand_checkpoints([str(tmp_path / "run" / "*.ckpt")])
    with pytest.raises(DirectionError, match="does not exist"):
        expand_checkpoints([str(tmp_path / "missing.pt")])


@pytest.mark.parametrize("count, n", [(2, 2), (1, 1)])
def test_too_few_checkpoints_are_refused(tmp_path: Path, count: int, n: int) -> None:
    centre = tiny_state()
    for i in range(n):
        save(perturbed(centre, i) if i < n - 1 else centre, tmp_path / "run" / f"epoch_{i}.pt")
    spec = DirectionSpec(name="trajectory", trajectory=[str(tmp_path / "run")])
    with pytest.raises(DirectionError, match=rf"at least {count + 1} checkpoints .*\(got {n}\)"):
        build(context(spec, count, centre))


def test_collinear_checkpoints_span_no_plane(tmp_path: Path) -> None:
    centre, step = tiny_state(0), tiny_state(1)
    for i, t in enumerate([2.0, 1.0, 0.0]):  # three points on one line
        save({k: centre[k] + t * (step[k] - centre[k]) for k in centre}, tmp_path / f"e{i}.pt")
    spec = DirectionSpec(name="trajectory", trajectory=[str(tmp_path / "e*.pt")])
    with pytest.raises(DirectionError, match="lie on a line"):
        build(context(spec, 2, centre))


def test_trajectory_is_stored_and_drawn(tmp_path: Path, tiny_npz: Path) -> None:
    states, _ = synthetic_path(tmp_path / "run", n=4)
    out = tmp_path / "traj.h5"
    run_cli(
        [
            "compute",
            *CLI_MLP,
            "--data",
            f"npz:{tiny_npz}",
            "--direction",
            "trajectory",
            "--trajectory",
            str(tmp_path / "run"),
            "--hessian-samples",  # a subset smaller than the data: only the hessian family may use it
            "10",
            "--x=-4:1:6",
            "--y=-2:2:5",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    surface = read_surface(out)
    traj = surface.trajectory
    assert list(traj["labels"]) == [f"epoch_{i}.pt" for i in range(4)]
    assert (traj["x"][-1], traj["y"][-1]) == (0.0, 0.0)
    # the last checkpoint is the centre: its loss is the surface's value at the origin
    centre_value = surface.values["train_loss"][4, 2]  # x = 0, y = 0
    np.testing.assert_allclose(traj["loss"][-1], centre_value, rtol=1e-6)
    np.testing.assert_allclose(traj["loss"][0], loss_of(states[0], tiny_npz), rtol=1e-5)
    fig = contour(surface, "train_loss")
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == "trajectory"]
    assert len(lines) == 1
    np.testing.assert_allclose(lines[0].get_xdata(), traj["x"])
    np.testing.assert_allclose(lines[0].get_ydata(), traj["y"])


# --- interpolation ----------------------------------------------------------------------------


def perturbed(state: dict[str, torch.Tensor], seed: int, scale: float = 0.5) -> OrderedDict:
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (k, v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v)
        for k, v in state.items()
    )


def test_interpolation_1d_runs_from_a_to_b(tmp_path: Path, tiny_npz: Path) -> None:
    a = tiny_state(0)
    a_path = save(a, tmp_path / "a.pt")
    b_path = save(perturbed(a, 1), tmp_path / "b.pt")
    out = tmp_path / "interp.h5"
    run_cli(
        [
            "compute",
            *CLI_MLP,
            "--checkpoint",
            str(a_path),
            "--data",
            f"npz:{tiny_npz}",
            "--direction",
            "interpolate",
            "--target",
            str(b_path),
            "--x=-0.5:1.5:5",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    surface = read_surface(out)
    loss = surface.values["train_loss"]  # at a = -0.5, 0, 0.5, 1, 1.5
    np.testing.assert_allclose(loss[1], loss_of(a, tiny_npz), rtol=1e-6)
    np.testing.assert_allclose(loss[3], loss_of(load_state_dict(str(b_path)), tiny_npz), rtol=1e-5)
    assert loss[1] != pytest.approx(loss[3])
    assert list(surface.landmarks["names"]) == ["A", "B"]
    np.testing.assert_allclose(surface.landmarks["x"], [0.0, 1.0])
    assert not surface.direction_attrs["states"]


BN_MODEL = """
import torch
from torch import nn


def factory():
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
"""


@pytest.mark.parametrize("states", [True, False])
def test_states_moves_batchnorm_buffers(tmp_path: Path, tiny_npz: Path, states: bool) -> None:
    model_file = tmp_path / "bn_model.py"
    model_file.write_text(BN_MODEL)
    namespace: dict = {}
    exec(BN_MODEL, namespace)  # the same factory, for the losses by hand
    torch.manual_seed(0)
    a = OrderedDict(namespace["factory"]().state_dict())
    a["1.running_mean"] += 0.3
    b = perturbed(a, 2, scale=0.3)
    b["1.running_var"] = a["1.running_var"] * 2.5
    b["1.num_batches_tracked"] = torch.tensor(7)
    a_path, b_path = save(a, tmp_path / "a.pt"), save(b, tmp_path / "b.pt")
    out = tmp_path / "bn.h5"
    run_cli(
        [
            "compute",
            "--model",
            f"{model_file}:factory",
            "--checkpoint",
            str(a_path),
            "--data",
            f"npz:{tiny_npz}",
            "--direction",
            "interpolate",
            "--target",
            str(b_path),
            "--x=0:1:2",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ]
        + (["--states"] if states else [])
    )
    with h5py.File(out, "r") as f:
        covered = set(f["directions/x"].keys())
    assert "1.num_batches_tracked" not in covered
    assert ({"1.running_mean", "1.running_var"} <= covered) == states
    loss = read_surface(out).values["train_loss"]
    np.testing.assert_allclose(loss[0], loss_of(a, tiny_npz, namespace["factory"]), rtol=1e-6)
    b_loss = loss_of(b, tiny_npz, namespace["factory"])
    # with states, a = 1 is B itself; without, B's weights run on A's running statistics
    assert bool(abs(loss[1] - b_loss) <= 1e-5 * b_loss) == states


def test_interpolation_2d_landmarks_reconstruct_c(tmp_path: Path) -> None:
    a = tiny_state(0)
    b_path = save(perturbed(a, 1), tmp_path / "b.pt")
    c_path = save(perturbed(a, 2), tmp_path / "c.pt")
    spec = DirectionSpec(name="interpolate", targets=[str(b_path), str(c_path)])
    ds = build(context(spec, 2, a))
    d1, d2 = ([v.double() for v in d.values()] for d in ds.vectors)
    assert list(ds.landmarks["names"]) == ["A", "B", "C"]
    x_c, y_c = float(ds.landmarks["x"][2]), float(ds.landmarks["y"][2])
    np.testing.assert_array_equal(ds.landmarks["x"][:2], [0.0, 1.0])
    np.testing.assert_array_equal(ds.landmarks["y"][:2], [0.0, 0.0])
    c = load_state_dict(str(c_path))
    for k, u, w in zip(a, d1, d2, strict=True):  # C − A = x_C·d1 + y_C·d2
        torch.testing.assert_close(
            x_c * u + y_c * w, c[k].double() - a[k].double(), atol=1e-6, rtol=0
        )
    b = load_state_dict(str(b_path))
    for k, u in zip(a, d1, strict=True):  # B − A = d1
        torch.testing.assert_close(u, b[k].double() - a[k].double(), atol=1e-6, rtol=0)
    dot = sum(float((u * w).sum()) for u, w in zip(d1, d2, strict=True))
    n1 = sum(float((u * u).sum()) for u in d1) ** 0.5
    n2 = sum(float((w * w).sum()) for w in d2) ** 0.5
    assert abs(dot) < 1e-6 * n1 * n2 and y_c > 0
    np.testing.assert_allclose(n2, n1, rtol=1e-6)
    assert ds.attrs["distance_ab"] == pytest.approx(n1)
    assert ds.attrs["landmarks"]["x"][2] == pytest.approx(x_c)


def test_degenerate_interpolations_are_refused(tmp_path: Path) -> None:
    a, b = tiny_state(0), tiny_state(1)
    same = save(a, tmp_path / "same.pt")
    b_path = save(b, tmp_path / "b.pt")
    on_line = save({k: a[k] + 2.0 * (b[k] - a[k]) for k in a}, tmp_path / "c.pt")
    spec = DirectionSpec(name="interpolate", targets=[str(same)])
    with pytest.raises(DirectionError, match="identical to the centre A"):
        build(context(spec, 1, a))
    spec = DirectionSpec(name="interpolate", targets=[str(b_path), str(on_line)])
    with pytest.raises(DirectionError, match="lies on the line through A and B"):
        build(context(spec, 2, a))
    spec = DirectionSpec(name="interpolate", targets=[str(b_path), str(same)])
    with pytest.raises(DirectionError, match="is identical to A"):
        build(context(spec, 2, a))


def test_checkpoint_of_another_shape_names_the_tensor(tmp_path: Path, tiny_npz: Path) -> None:
    a_path = save(tiny_state(0), tmp_path / "a.pt")
    other = build_model("mlp", {**MLP_ARGS, "hidden": 9}).state_dict()
    other_path = save(other, tmp_path / "wide.pt")
    result = CliRunner().invoke(
        main,
        [
            "compute",
            *CLI_MLP,
            "--checkpoint",
            str(a_path),
            "--data",
            f"npz:{tiny_npz}",
            "--direction",
            "interpolate",
            "--target",
            str(other_path),
            "--x=0:1:2",
            "--out",
            str(tmp_path / "x.h5"),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    assert "tensor layers.0.weight has shape (9, 6)" in result.output
    assert "same architecture" in result.output
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize(
    ("lo", "hi"), [(-0.3, 12.7), (0.0, 1.0), (-5e-4, 3e-3), (-2.0, 0.0), (0.1, 0.2), (-37.2, 81.9)]
)
def test_suggested_axis_covers_the_path_and_holds_zero(lo: float, hi: float) -> None:
    from landscape.config import parse_axis
    from landscape.directions.trajectory import suggested_axis

    axis = parse_axis(suggested_axis(lo, hi))
    x = np.linspace(axis.lo, axis.hi, axis.num)
    assert x.min() < min(lo, 0.0) and x.max() > max(hi, 0.0) and 13 <= axis.num <= 32
    assert np.abs(x).min() <= 1e-12 * (axis.hi - axis.lo)  # the centre is a grid point


@pytest.mark.parametrize("form", ["copy", "unwrapped", "safetensors"])
def test_checkpoint_holding_the_last_trajectory_weights_is_the_centre(
    tmp_path: Path, tiny_npz: Path, form: str
) -> None:
    """--checkpoint is compared with the trajectory's last checkpoint by content, not by path:
    the same bytes elsewhere, or the same tensors in another wrapper or format, are accepted and
    give the surface the trajectory alone gives."""
    _, centre = synthetic_path(tmp_path / "run", n=4)
    final = tmp_path / "final" / ("final.safetensors" if form == "safetensors" else "final.pt")
    final.parent.mkdir()
    if form == "copy":
        final.write_bytes((tmp_path / "run" / "epoch_3.pt").read_bytes())
    elif form == "unwrapped":
        torch.save(dict(centre), final)  # no {"state_dict": ...} wrapper: other bytes, same weights
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in centre.items()}, str(final))
    base = [*CLI_MLP, "--data", f"npz:{tiny_npz}", "--direction", "trajectory", "--trajectory",
            str(tmp_path / "run"), "--x=-1:1:3", "--y=-1:1:3", "--device", "cpu", "--quiet"]  # fmt: skip
    run_cli(["compute", *base, "--out", str(tmp_path / "alone.h5")])
    run_cli(["compute", *base, "--checkpoint", str(final), "--out", str(tmp_path / "given.h5")])
    alone, given = read_surface(tmp_path / "alone.h5"), read_surface(tmp_path / "given.h5")
    np.testing.assert_array_equal(given.values["train_loss"], alone.values["train_loss"])


def test_checkpoint_with_other_weights_than_the_last_trajectory_one_is_refused(
    tmp_path: Path, tiny_npz: Path
) -> None:
    synthetic_path(tmp_path / "run", n=4)
    out = tmp_path / "s.h5"
    result = CliRunner().invoke(main, [
        "compute", *CLI_MLP, "--data", f"npz:{tiny_npz}", "--direction", "trajectory",
        "--trajectory", str(tmp_path / "run"), "--checkpoint", str(tmp_path / "run/epoch_2.pt"),
        "--x=-1:1:3", "--y=-1:1:3", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code != 0 and not out.exists()
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "holds other weights than the last trajectory checkpoint" in lines[0]
