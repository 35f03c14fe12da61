"""Connecting curves (Garipov et al. 2018): ``landscape connect`` / ``landscape.connect`` train
the bend of a Bézier or polychain between two networks; ``compute --direction curve`` evaluates
the loss along it (1-D) and on the plane through A, B and C (2-D)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.func import functional_call

import landscape
from landscape.curves import Curve, load_curve
from landscape.errors import LandscapeError
from landscape.runs.connect import pair_of, train_curve
from landscape.runs.connect_settings import TrainSettings
from landscape.session import Session
from tests.test_cli import assert_one_line_error, run

MLP = ["--model", "mlp", "--model-arg", "in_features=64", "--model-arg", "hidden=16"]


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from landscape.config import DataSpec
    from landscape.data import load_data

    return load_data(DataSpec("digits", "train")).tensors()


def trained_mlp(seed: int, x: torch.Tensor, y: torch.Tensor, steps: int = 80) -> torch.nn.Module:
    """The built-in mlp (64 → 16 → 16 → 10) trained full-batch from its seeded initialization."""
    from landscape.models import build_model

    torch.manual_seed(seed)
    model = build_model("mlp", {"in_features": 64, "hidden": 16})
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def pair(digits: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.nn.Module, torch.nn.Module]:
    x, y = digits
    return trained_mlp(0, x, y), trained_mlp(1, x, y)


def loss_at(model: torch.nn.Module, state: dict, x: torch.Tensor, y: torch.Tensor) -> float:
    """The oracle: mean cross-entropy of the model at ``state`` (eval mode)."""
    private = copy.deepcopy(model).eval()
    with torch.no_grad():
        return float(F.cross_entropy(functional_call(private, state, (x,)), y, reduction="mean"))


def midpoint(a: dict, b: dict) -> OrderedDict:
    return OrderedDict((k, (a[k] + b[k]) / 2) for k in a)


def test_curve_ends_are_a_and_b_exactly(pair, digits) -> None:
    a, b = (m.state_dict() for m in pair)
    curve = landscape.connect(*pair, digits, epochs=1, progress=False)
    for kind in ("bezier", "polychain"):
        c = Curve(kind, curve.a, curve.b, curve.c)
        assert all(torch.equal(c.at(0.0)[k], a[k]) for k in a)
        assert all(torch.equal(c.at(1.0)[k], b[k]) for k in b)
    # the polychain passes through its bend at t = 1/2; the Bézier's midpoint is (A + 2C + B)/4
    chain = Curve("polychain", curve.a, curve.b, curve.c)
    k = next(iter(a))
    torch.testing.assert_close(chain.at(0.5)[k], curve.c[k])
    bez = Curve("bezier", curve.a, curve.b, curve.c)
    torch.testing.assert_close(bez.at(0.5)[k], (a[k] + 2 * curve.c[k] + b[k]) / 4)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_training_the_bend_lowers_the_loss_mid_curve(pair, digits, kind) -> None:
    """θ(1/2) of the trained curve has a lower training loss than the straight path's midpoint
    (the curve before training), and the record holds the loss of every epoch."""
    x, y = digits
    a, b = (m.state_dict() for m in pair)
    straight = loss_at(pair[0], midpoint(a, b), x, y)
    curve = landscape.connect(*pair, (x, y), kind, epochs=3, lr=0.1, progress=False)
    bent = loss_at(pair[0], curve.at(0.5), x, y)
    assert bent < 0.7 * straight, (bent, straight)
    assert len(curve.losses) == 3 and curve.record["training"]["curve"] == kind
    # neither model was changed
    assert all(torch.equal(pair[0].state_dict()[k], a[k]) for k in a)


def test_resume_after_a_kill_gives_the_uninterrupted_curve(pair, digits, tmp_path) -> None:
    settings = TrainSettings(epochs=2, batch_size=256, lr=0.1, save_seconds=0.0)
    whole = train_curve(pair_of(Session.from_objects(pair[0], digits), pair[1]), settings)

    class Killed(Exception):
        pass

    def kill_at_7(done: int) -> None:
        if done == 7:  # mid-epoch: 5 steps an epoch at 256 of 1437 samples
            raise Killed

    out = tmp_path / "c.safetensors"
    with pytest.raises(Killed):
        train_curve(
            pair_of(Session.from_objects(pair[0], digits), pair[1]), settings, out,
            after_step=kill_at_7,
        )  # fmt: skip
    assert not out.exists() and (tmp_path / ".c.safetensors.partial").is_file()
    # the interrupted training is continued only by the same command
    with pytest.raises(LandscapeError, match=r"interrupted training with other settings \(lr"):
        other = TrainSettings(epochs=2, batch_size=256, lr=0.3)
        train_curve(pair_of(Session.from_objects(pair[0], digits), pair[1]), other, out)
    starts: list[int] = []

    class Bar:
        def __init__(self, total: int, initial: int) -> None:
            starts.append(initial)

        def update(self, n: int) -> None: ...
        def close(self) -> None: ...

    session = Session.from_objects(pair[0], digits)
    resumed = train_curve(pair_of(session, pair[1]), settings, out, progress=Bar)
    assert starts == [7]  # it continued, not started over
    assert all(torch.equal(resumed.c[k], whole.c[k]) for k in whole.c)
    assert resumed.losses == whole.losses
    assert not (tmp_path / ".c.safetensors.partial").exists()
    on_disk = load_curve(out)
    assert all(torch.equal(on_disk.c[k], whole.c[k]) for k in whole.c)
    # rerunning the finished command returns the curve; other settings are refused
    assert train_curve(pair_of(session, pair[1]), settings, out).losses == whole.losses
    with pytest.raises(LandscapeError, match=r"other settings \(lr"):
        train_curve(pair_of(session, pair[1]), TrainSettings(epochs=2, lr=0.2), out)


class BNNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 12)
        self.bn = torch.nn.BatchNorm1d(12)
        self.fc2 = torch.nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.bn(self.fc1(x))))


def bn_curve(seed_c: int = 3) -> tuple[BNNet, Curve]:
    """Two BN nets (with nonzero running statistics) and a curve with a random bend."""
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = BNNet()
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        nets.append(net)
    a, b = nets[0].state_dict(), nets[1].state_dict()
    gen = torch.Generator().manual_seed(seed_c)
    c = OrderedDict(
        (k, (a[k] + b[k]) / 2 + 0.3 * torch.randn(a[k].shape, generator=gen))
        if a[k].is_floating_point() else (k, a[k])
        for k in a
    )  # fmt: skip
    return nets[0], Curve("bezier", OrderedDict(a), OrderedDict(b), c)


def recalibrated_loss(net: BNNet, state: dict, x, y, batch: int, batches: int) -> float:
    """The oracle for --bn recalibrate: the net at ``state`` with fresh running statistics
    accumulated (cumulative average) over the first ``batches`` training batches, then eval."""
    model = copy.deepcopy(net)
    model.load_state_dict(state)
    model.bn.reset_running_stats()
    model.bn.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(batches):
            model(x[i * batch : (i + 1) * batch])
        model.eval()
        return float(F.cross_entropy(model(x), y))


@pytest.mark.parametrize("bn", ["recalibrate", "eval"])
def test_the_curve_surface_is_the_loss_at_theta_t(digits, bn) -> None:
    x, y = digits[0][:300], digits[1][:300]
    net, curve = bn_curve()
    ts = np.linspace(0, 1, 5)
    s = landscape.compute(
        net, (x, y), x=(0, 1, 5), direction="curve", curve=curve, bn=bn, bn_batches=3,
        batch_size=64, progress=False,
    )  # fmt: skip
    for t, got in zip(ts, s.loss, strict=True):
        state = curve.at(float(t))
        if bn == "recalibrate":
            want = recalibrated_loss(net, state, x, y, 64, 3)
        else:  # buffers stay at A's (the centre's)
            state.update({k: v for k, v in curve.a.items() if "running" in k})
            want = loss_at(net, state, x, y)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), (t, got, want)
    assert s.direction_attrs["method"] == "curve"


def test_the_curve_surface_resumes_along_the_curve(digits, tmp_path) -> None:
    """A curve surface's file read back on resume (two directions, its chart) continues along
    the curve: its points equal the uninterrupted run's."""
    import h5py

    x, y = digits[0][:200], digits[1][:200]
    net, curve = bn_curve()
    out = tmp_path / "s.h5"
    kw = {"x": (0, 1, 5), "direction": "curve", "curve": curve, "progress": False}
    whole = landscape.compute(net, (x, y), out=out, **kw)
    with h5py.File(out, "r+") as f:  # forget three points, as a killed run would have
        f["done"][2:] = False
    again = landscape.compute(net, (x, y), out=out, **kw)
    np.testing.assert_allclose(again.loss, whole.loss, rtol=1e-6)


def test_the_plane_holds_a_b_and_c_at_their_landmarks(digits) -> None:
    x, y = digits[0][:200], digits[1][:200]
    net, curve = bn_curve()
    s = landscape.compute(
        net, (x, y), x=(-0.25, 1.25, 7), y=(-0.5, 1.5, 5), direction="curve", curve=curve,
        progress=False,
    )  # fmt: skip
    marks = s.landmarks
    assert list(marks["names"]) == ["A", "B", "C"]
    d1, d2 = s.directions
    for name, px, py in zip(marks["names"], marks["x"], marks["y"], strict=True):
        point = {"A": curve.a, "B": curve.b, "C": curve.c}[name]
        for k in d1:
            on_plane = curve.a[k].double() + px * d1[k].double() + py * d2[k].double()
            torch.testing.assert_close(on_plane, point[k].double(), rtol=1e-5, atol=1e-5)
    path = s.direction_attrs["path"]
    path = path if isinstance(path, dict) else json.loads(path)
    assert (path["x"][0], path["y"][0]) == (0.0, 0.0)
    assert path["x"][-1] == pytest.approx(1.0) and path["y"][-1] == pytest.approx(0.0)
    # the path's midpoint is θ(1/2) = A + (1/2)(C − A) + (1/4)(B − A) on the plane
    assert path["x"][50] == pytest.approx(0.5 * marks["x"][2] + 0.25)
    assert path["y"][50] == pytest.approx(0.5 * marks["y"][2])


def test_the_path_is_drawn_on_the_plane(digits) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from landscape.plot import figures

    x, y = digits[0][:100], digits[1][:100]
    net, curve = bn_curve()
    s = landscape.compute(
        net, (x, y), x=(0, 1, 3), y=(0, 1, 3), direction="curve", curve=curve, progress=False
    )
    ax = Figure().add_subplot()
    figures.draw_curve_path(ax, s)
    assert [line.get_gid() for line in ax.lines] == ["curve-path"]
    along = landscape.compute(
        net, (x, y), x=(0, 1, 3), direction="curve", curve=curve, progress=False
    )  # the 1-D surface's axis is the curve's t
    assert figures.x_label_1d(along) == "t (along the bezier curve, A → B)"


def test_bad_input_is_refused_in_one_line(pair, digits, tmp_path) -> None:
    from landscape.models import build_model

    wide = trained_mlp(2, *digits, steps=1)
    other = build_model("mlp", {"in_features": 64, "hidden": 8})
    with pytest.raises(LandscapeError, match="shape"):
        landscape.connect(pair[0], other, digits, progress=False)
    with pytest.raises(LandscapeError, match="same weights"):
        landscape.connect(pair[0], copy.deepcopy(pair[0]), digits, progress=False)
    # a curve of another pair: the model is not its A
    _, curve = bn_curve()
    torch.manual_seed(9)
    with pytest.raises(LandscapeError, match="starts at other weights"):
        landscape.compute(BNNet(), digits, x=(0, 1, 3), direction="curve", curve=curve,
                          progress=False)  # fmt: skip
    with pytest.raises(LandscapeError, match=r"another architecture|shape"):
        landscape.compute(wide, digits, x=(0, 1, 3), direction="curve", curve=curve,
                          progress=False)  # fmt: skip
    fake = tmp_path / "fake.safetensors"
    save_file({"w": torch.zeros(2)}, str(fake))
    with pytest.raises(LandscapeError, match="not a landscape-curve file"):
        load_curve(fake)
    with pytest.raises(LandscapeError, match="unknown curve"):
        landscape.connect(*pair, digits, "spline", progress=False)


def test_cli_refusals(tmp_path, pair) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(pair[0].state_dict(), a)
    torch.save(pair[1].state_dict(), b)
    out = tmp_path / "c.safetensors"
    base = ["connect", *MLP, "--data", "digits", "--out", str(out), "--quiet"]
    code, _, err = run(*base, "--checkpoint", str(a), "--target", str(a))
    assert_one_line_error(code, err, 1, "same checkpoint")
    code, _, err = run("compute", *MLP, "--checkpoint", str(a), "--data", "digits",
                       "--direction", "curve", "--x=0:1:3", "--out", str(tmp_path / "s.h5"))  # fmt: skip
    assert_one_line_error(code, err, 1, "--curve FILE")
    # a curve file of another pair: B differs from --target
    curve = landscape.connect(*pair, (torch.randn(64, 64), torch.randint(0, 10, (64,))),
                              epochs=1, progress=False)  # fmt: skip
    curve.record["identity"]["b_weights_sha256"] = "0" * 64
    curve.save(out)
    code, _, err = run(*base, "--checkpoint", str(a), "--target", str(b), "--epochs", "1")
    assert_one_line_error(code, err, 1, "another pair")


def test_cli_connect_then_compute_along_the_curve(tmp_path, pair, digits) -> None:
    """The commands as a user runs them: a curve file written, then the loss along it."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(pair[0].state_dict(), a)
    torch.save(pair[1].state_dict(), b)
    out, surface = tmp_path / "ab.safetensors", tmp_path / "ab.h5"
    cli = [sys.executable, "-m", "landscape"]
    args = ["connect", *MLP, "--checkpoint", str(a), "--target", str(b), "--data", "digits",
            "--curve", "polychain", "--epochs", "2", "--out", str(out)]  # fmt: skip
    done = subprocess.run([*cli, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "polychain curve trained" in done.stdout and f"wrote {out}" in done.stdout
    curve = load_curve(out)
    assert curve.kind == "polychain" and len(curve.losses) == 2
    from landscape.checkpoint import file_sha256

    assert curve.record["a_sha256"] == file_sha256(str(a))
    assert curve.record["b_sha256"] == file_sha256(str(b))
    args = ["compute", *MLP, "--checkpoint", str(a), "--data", "digits", "--direction",
            "curve", "--curve", str(out), "--x=0:1:5", "--out", str(surface), "--quiet",
            "--workers", "2"]  # fmt: skip
    done = subprocess.run([*cli, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    s = landscape.load(surface)
    x, y = digits
    # a local worker evaluates its share along the curve as rank 0 does (the plan's chart)
    for t, got in zip(s.x, s.loss, strict=True):
        assert got == pytest.approx(loss_at(pair[0], curve.at(float(t)), x, y), rel=1e-5)
    # a curve is a path between two networks: its barrier above the chord A-B is analysed
    chord = (1 - s.x) * s.loss[0] + s.x * s.loss[-1]
    assert s.analysis()["train_loss"]["barrier"]["value"] == pytest.approx(max(s.loss - chord))


def test_training_a_batchnorm_net_leaves_both_models_as_they_were(digits) -> None:
    """BatchNorm runs on batch statistics while C trains (train mode at θ(t)); the callers'
    models keep their weights, running statistics and mode, and the process its generator."""
    x, y = digits[0][:512], digits[1][:512]
    net_a, curve = bn_curve()
    net_b = BNNet()
    net_b.load_state_dict(curve.b)
    net_a.eval()
    before = {k: v.clone() for k, v in net_a.state_dict().items()}
    rng = torch.random.get_rng_state()
    trained = landscape.connect(net_a, net_b, (x, y), epochs=2, batch_size=64, progress=False)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the draws are the run's own
    assert not net_a.training and net_b.training
    assert all(torch.equal(net_a.state_dict()[k], v) for k, v in before.items())
    assert all(np.isfinite(trained.losses)) and len(trained.losses) == 2
    # C's running statistics are the midpoint of A's and B's (recalibrate them to evaluate)
    mean = "bn.running_mean"
    torch.testing.assert_close(trained.c[mean], (curve.a[mean] + curve.b[mean]) / 2)


def test_a_curve_of_batchnorm_nets_saves_and_reads_back(tmp_path: Path) -> None:
    """C's integer buffers (num_batches_tracked) are A's own tensors: the file still writes
    (safetensors refuses tensors that share memory) and reads back equal."""
    _, curve = bn_curve()
    assert curve.c["bn.num_batches_tracked"] is curve.a["bn.num_batches_tracked"]
    back = load_curve(curve.save(tmp_path / "bn.safetensors"))
    for mine, theirs in ((curve.a, back.a), (curve.b, back.b), (curve.c, back.c)):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
