"""Hessian eigenvector directions against a dense Hessian written from the formula."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from landscape import params
from landscape.cli import main
from landscape.config import DirectionSpec
from landscape.directions import DirectionContext, build
from landscape.directions import hessian as hessian_mod
from landscape.errors import DirectionError
from landscape.losses import get_loss
from landscape.store import read_surface

N = 30  # samples; batches of 7 leave a short last batch, so the mean must weight by size


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def conv_bn() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False),
        nn.BatchNorm2d(2),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(18, 3),
    )
    bn = model[1]
    bn.running_mean.copy_(torch.tensor([0.3, -0.2]))
    bn.running_var.copy_(torch.tensor([0.5, 2.0]))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.7]))
        bn.bias.copy_(torch.tensor([0.1, -0.4]))
    return model


def data_for(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    if isinstance(model[0], nn.Linear):
        x = torch.randn(N, model[0].in_features, generator=g)
    else:
        x = torch.randn(N, 1, 5, 5, generator=g)
    classes = model[-1].out_features
    return x, torch.randint(0, classes, (N,), generator=g)


# --- the oracle: the loss written out with torch.nn.functional, differentiated densely ----------


def reference_logits(model: nn.Module, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if isinstance(model[0], nn.Linear):
        return F.linear(
            torch.tanh(F.linear(x, p["0.weight"], p["0.bias"])), p["2.weight"], p["2.bias"]
        )
    bn = model[1]
    h = F.conv2d(x, p["0.weight"])
    mean, var = bn.running_mean.double(), bn.running_var.double()
    h = (h - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps)
    h = torch.tanh(h * p["1.weight"].view(1, -1, 1, 1) + p["1.bias"].view(1, -1, 1, 1))
    return F.linear(h.flatten(1), p["4.weight"], p["4.bias"])


def dense_eigh(model: nn.Module, ignore: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Eigenvalues (descending) and eigenvectors (columns) of the mean loss's dense Hessian."""
    theta = {k: v.detach().double() for k, v in model.named_parameters()}
    moved = [k for k, t in theta.items() if ignore == "none" or t.ndim >= 2]
    sizes = [theta[k].numel() for k in moved]
    x, y = data_for(model)
    x = x.double()

    def loss(flat: torch.Tensor) -> torch.Tensor:
        p = dict(theta)
        for k, part in zip(moved, flat.split(sizes), strict=True):
            p[k] = part.view(theta[k].shape)
        return F.cross_entropy(reference_logits(model, p, x), y)  # mean over all N samples

    w = torch.cat([theta[k].reshape(-1) for k in moved])
    h = torch.autograd.functional.hessian(loss, w).numpy()
    values, vecs = np.linalg.eigh(h)
    return values[::-1], vecs[:, ::-1], moved


def context(
    model: nn.Module,
    ignore: str = "biasbn",
    count: int = 2,
    batch: int = 7,
    seed: int = 0,
    which: str = "top",
):
    x, y = data_for(model)
    spec = DirectionSpec(name="hessian", ignore=ignore, seed=seed, hessian_samples=N, which=which)
    return DirectionContext(
        theta=OrderedDict((k, v.detach().clone()) for k, v in params.parameters_of(model).items()),
        spec=spec,
        count=count,
        state=OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items()),
        model=model,
        batches=lambda: ((x[i : i + batch], y[i : i + batch]) for i in range(0, N, batch)),
        loss_fn=get_loss("cross-entropy"),
    )


def flat(direction: dict[str, torch.Tensor], names: list[str]) -> np.ndarray:
    return torch.cat([direction[k].reshape(-1) for k in names]).double().numpy()


@pytest.mark.parametrize("make", [mlp, conv_bn])
@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_top_two_match_the_dense_hessian(make, ignore: str) -> None:
    model = make()
    values, vecs, moved = dense_eigh(model, ignore)
    assert values[0] - values[1] > 1e-3 * abs(values[0])  # a gap, so the eigenvectors are defined
    ds = build(context(model, ignore))
    assert ds.method == "hessian" and len(ds.vectors) == 2
    np.testing.assert_allclose(ds.attrs["eigenvalues"], values[:2], rtol=1e-4)
    for j, d in enumerate(ds.vectors):
        assert list(d) == [k for k, _ in model.named_parameters()]
        assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in d.values())
        assert all(float(d[k].abs().max()) == 0.0 for k in d if k not in moved)
        v = flat(d, moved)
        assert abs(np.dot(v, vecs[:, j])) > 0.999
        assert params.global_norm(d) == pytest.approx(1.0, abs=1e-6)
        largest = np.flatnonzero(np.abs(v) >= 0.999 * np.abs(v).max())
        assert v[largest[0]] > 0  # the sign convention (first of the tied largest |entries|)
    assert abs(params.inner(ds.vectors[0], ds.vectors[1])) < 1e-5
    a = ds.attrs
    assert (a["samples"], a["moved_tensors"], a["ignore"]) == (N, len(moved), ignore)
    assert a["moved_parameters"] == sum(
        p.numel() for k, p in model.named_parameters() if k in moved
    )
    assert a["hvps"] > 0


def test_ignore_decides_which_tensors_move() -> None:
    model = conv_bn()
    biasbn, none = build(context(model, "biasbn")), build(context(model, "none"))
    assert (biasbn.attrs["moved_tensors"], none.attrs["moved_tensors"]) == (2, 5)
    for key in ("1.weight", "1.bias", "4.bias"):
        assert float(biasbn.vectors[0][key].abs().max()) == 0.0
    assert any(float(none.vectors[0][k].abs().max()) > 0 for k in ("1.weight", "1.bias", "4.bias"))


def test_same_inputs_same_directions_and_batches_do_not_matter() -> None:
    model = conv_bn()
    a, b = build(context(model)), build(context(model))
    for da, db in zip(a.vectors, b.vectors, strict=True):
        for k in da:
            assert torch.equal(da[k], db[k])
    assert a.attrs == b.attrs
    whole = build(context(model, batch=N))  # one batch: the exact mean is the same number
    np.testing.assert_allclose(whole.attrs["eigenvalues"], a.attrs["eigenvalues"], rtol=1e-5)


def test_one_direction_is_the_top_eigenvector() -> None:
    model = mlp()
    values, vecs, moved = dense_eigh(model, "biasbn")
    ds = build(context(model, count=1))
    assert len(ds.vectors) == 1
    assert ds.attrs["eigenvalues"] == pytest.approx([values[0]], rel=1e-4)
    assert abs(np.dot(flat(ds.vectors[0], moved), vecs[:, 0])) > 0.999


def test_as_many_parameters_as_directions_uses_the_dense_hessian() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 1))
    x = torch.randn(N, 2)
    y = torch.randn(N, 1)
    ctx = DirectionContext(
        theta=params.parameters_of(model),
        spec=DirectionSpec(name="hessian"),
        count=2,
        model=model,
        batches=lambda: iter([(x, y)]),
        loss_fn=get_loss("mse"),
    )
    ds = build(ctx)
    # mse of a linear model: H = (2/N) XᵀX over the weights
    values = np.linalg.eigvalsh(2 * (x.T @ x).double().numpy() / N)[::-1]
    np.testing.assert_allclose(ds.attrs["eigenvalues"], values, rtol=1e-5)
    assert abs(params.inner(ds.vectors[0], ds.vectors[1])) < 1e-6


def test_the_model_is_not_changed() -> None:
    model = conv_bn()
    model.train()
    model[1].eval()  # a mixed state: every flag must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    build(context(model, "none"))
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v) and after[k].dtype == v.dtype, k
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in torch 2.x
def test_torchscript_model_gives_the_same_directions() -> None:
    eager = build(context(mlp()))
    scripted = build(context(torch.jit.script(mlp())))
    np.testing.assert_allclose(scripted.attrs["eigenvalues"], eager.attrs["eigenvalues"], rtol=1e-5)
    for a, b in zip(eager.vectors, scripted.vectors, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net, self.spare = mlp(), nn.Linear(5, 5)  # spare: in the state, never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_an_unused_tensor_gets_zeros() -> None:
    model = WithUnused()
    ctx = context(model.net)
    ctx.theta = params.parameters_of(model)
    ctx.state = OrderedDict(model.state_dict())
    ctx.model = model
    ds = build(ctx)
    reference = build(context(model.net))
    assert ds.attrs["eigenvalues"] == pytest.approx(reference.attrs["eigenvalues"], rel=1e-6)
    assert float(ds.vectors[0]["spare.weight"].abs().max()) == 0.0
    torch.testing.assert_close(ds.vectors[0]["net.0.weight"], reference.vectors[0]["0.weight"])


def test_nothing_to_move_is_refused() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4))
    with pytest.raises(
        DirectionError, match="only 0 move under --ignore biasbn; use --ignore none"
    ):
        build(context_for_bn(model))


def context_for_bn(model: nn.Module) -> DirectionContext:
    x, y = torch.randn(N, 4), torch.randn(N, 4)
    return DirectionContext(
        theta=params.parameters_of(model),
        spec=DirectionSpec(name="hessian"),
        count=2,
        model=model,
        batches=lambda: iter([(x, y)]),
        loss_fn=get_loss("mse"),
    )


def test_missing_model_is_named() -> None:
    ctx = context(mlp())
    ctx.model = None
    with pytest.raises(DirectionError, match="needs model"):
        build(ctx)


def test_no_convergence_gives_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hessian_mod, "MAX_RESTARTS", 1)
    monkeypatch.setattr(hessian_mod, "TOL", 1e-15)
    with pytest.raises(DirectionError, match=r"more --hessian-samples .* or a smaller model"):
        build(context(conv_bn(), "none"))


def test_cli_stores_the_eigenvalues(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    out = tmp_path / "s.h5"
    args = [
        "compute",
        "--model",
        "mlp",
        "--model-arg",
        "in_features=6",
        "--model-arg",
        "hidden=8",
        "--model-arg",
        "num_classes=3",
        "--checkpoint",
        str(tiny_mlp_ckpt),
        "--data",
        f"npz:{tiny_npz}",
        "--direction",
        "hessian",
        "--hessian-samples",
        "30",
        "--x=-1:1:3",
        "--y=-1:1:3",
        "--out",
        str(out),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    a = read_surface(out).direction_attrs
    assert a["method"] == "hessian" and a["samples"] == 30 and a["ignore"] == "biasbn"
    eigenvalues = np.asarray(a["eigenvalues"])
    assert eigenvalues.shape == (2,) and eigenvalues[0] >= eigenvalues[1]
    assert a["norm_x"] == pytest.approx(1.0, abs=1e-6) and abs(a["cosine"]) < 1e-5
    info = CliRunner().invoke(main, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "hessian" in info.output and "eigenvalues" in info.output


@pytest.mark.parametrize(("which", "picks"), [("bottom", [-1, -2]), ("extreme", [0, -1])])
def test_which_gives_the_smallest_or_both_ends_of_the_dense_spectrum(
    which: str, picks: list[int]
) -> None:
    """--which bottom: the two smallest eigenvalues' eigenvectors (ascending); extreme: λmax's,
    then λmin's; each against the dense Hessian, on a model with more than the dense solver's
    parameters so that the Lanczos path with its shift runs."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 3))  # 49 weights move
    values, vecs, moved = dense_eigh(model, "biasbn")
    for j in picks:  # a gap beside each picked eigenvalue, so that its eigenvector is defined
        assert abs(values[j] - values[j + 1 if j >= 0 else j - 1]) > 1e-4
    ds = build(context(model, which=which))
    np.testing.assert_allclose(ds.attrs["eigenvalues"], values[picks], rtol=1e-4, atol=1e-6)
    assert ds.attrs["which"] == which
    for d, j in zip(ds.vectors, picks, strict=True):
        assert abs(np.dot(flat(d, moved), vecs[:, j])) > 0.999


def test_which_is_checked_and_shown(tmp_path: Path, tiny_npz: Path) -> None:
    base = ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg",
            "hidden=8", "--model-arg", "num_classes=3", "--data", f"npz:{tiny_npz}",
            "--direction", "hessian", "--hessian-samples", "20", "--quiet"]  # fmt: skip
    one_d = CliRunner().invoke(main, [*base, "--which", "extreme", "--x=-1:1:3",
                                      "--out", str(tmp_path / "e.h5")])  # fmt: skip
    assert one_d.exit_code == 1 and "needs a 2-D grid" in one_d.stderr
    bad = CliRunner().invoke(main, [*base, "--which", "sideways", "--out", str(tmp_path / "s.h5")])
    assert bad.exit_code == 2 and "sideways" in bad.stderr
    out = tmp_path / "b.h5"
    ok = CliRunner().invoke(main, [*base, "--which", "bottom", "--x=-1:1:3", "--y=-1:1:3",
                                   "--out", str(out)])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    info = CliRunner().invoke(main, ["info", str(out)])
    assert "which=bottom" in info.output
    values = read_surface(out).direction_attrs["eigenvalues"]
    assert values[0] <= values[1]  # λn ≤ λn−1
