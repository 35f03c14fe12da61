"""Folding eval-mode BatchNorm into convolutions (landscape.engine.fold), against the model as
written: same outputs at points off θ, same names, the caller's model untouched, and the run's
surface equal to the unfolded reference path's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.func import functional_call

from landscape.cli import main
from landscape.engine.fold import conv_bn, fold_batchnorm
from landscape.store import read_surface


def _trained_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine terms away from their initial values, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


class Block(nn.Module):
    """Every pattern the fold takes and some it must leave: conv with a bias, BN without affine
    terms, reflect padding, torch.add, nn.ReLU, a conv whose output is read twice, and a BN whose
    output is read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.bn_a = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect", bias=False)
        self.bn_b = nn.BatchNorm2d(4, affine=False)
        self.act = nn.ReLU()
        self.c = nn.Conv2d(4, 4, 1)
        self.bn_c = nn.BatchNorm2d(4)
        self.d = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.bn_d = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn_a(self.a(x)))
        h = self.act(torch.add(self.bn_b(self.b(h)), h))
        raw = self.c(h)  # read twice: its BN must stay as it is
        c = self.bn_c(raw) + raw
        d = self.bn_d(self.d(c))  # read twice after the BN: folded, nothing after it
        return self.fc(torch.cat([c, d, d.relu()], 1).flatten(1))


def _states(model: nn.Module, scale: float = 0.05, seed: int = 1):
    """θ and a point off θ (every floating tensor moved, running statistics kept positive)."""
    theta = dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    moved = {
        k: (v + scale * torch.randn(v.shape, generator=g)).abs() if "running_var" in k else
        v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in theta.items()
    }  # fmt: skip
    return theta, moved


def test_the_folded_block_gives_the_model_outputs_at_points_off_theta() -> None:
    torch.manual_seed(0)
    model = _trained_bn(Block())
    folded = fold_batchnorm(model)
    assert (folded.chains, folded.adds, folded.relus) == (3, 1, 2)  # a, b, d; b's add; a, b
    x = torch.randn(7, 3, 6, 6)
    for state in _states(model):
        with torch.inference_mode():
            want = functional_call(model, state, (x,))
            got = functional_call(folded.module, state, (x,))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the same parameter and buffer names, so a point's dict of tensors applies as it is
    assert dict(folded.module.named_parameters()).keys() == dict(model.named_parameters()).keys()
    assert dict(folded.module.named_buffers()).keys() == dict(model.named_buffers()).keys()


def test_the_fold_is_the_affine_map_of_the_docstring() -> None:
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(2, 3, 3, padding=1), _trained_bn(nn.BatchNorm2d(3))
    x, other = torch.randn(4, 2, 5, 5), torch.randn(4, 3, 5, 5)
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # written out independently
    want = (conv(x) - bn.running_mean[:, None, None]) * s[:, None, None] + bn.bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(conv_bn(conv, bn, x, other, True), (want + other).clamp_min(0))
        torch.testing.assert_close(conv_bn(conv, bn, x, None, False), want)
        bn.train()  # training: batch statistics, the chain as written
        torch.testing.assert_close(conv_bn(conv, bn, x, None, False), bn(conv(x)))


def test_the_caller_model_is_untouched_and_untraceable_models_are_left() -> None:
    torch.manual_seed(2)
    model = _trained_bn(Block())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    _, moved = _states(model)
    with torch.inference_mode():
        functional_call(folded.module, moved, (torch.randn(2, 3, 6, 6),))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = -x
            return self.bn(self.conv(x))

    left = fold_batchnorm(Branchy())
    assert left.module is None and "torch.fx" in left.reason
    assert fold_batchnorm(nn.Sequential(nn.Linear(2, 2))).module is None


class Shortcuts(nn.Module):
    """One case for each rule of the in-place sum (fold._accumulate_into): only ``a`` may be
    accumulated into its addend; the others must get a buffer of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(8))
        self.bns = nn.ModuleList(nn.BatchNorm2d(4) for _ in range(8))

    def cb(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.bns[i](self.convs[i](x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.cb(0, x))
        a = F.relu(self.cb(2, F.relu(self.cb(1, h))) + h)  # in place: h is fresh, dead after
        b = self.cb(3, a) + a  # a is the convolution's own input
        c = F.relu(self.cb(4, b) + x)  # x is the model's input
        e = F.relu(self.cb(5, c))
        view = e[:, :2]  # a view of e, read after the next line
        f = self.cb(6, c) + e
        k = self.cb(7, f) + b  # b is read after, by the output
        return torch.cat([k, b, view, f], 1)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_sum_goes_into_its_addend_only_where_nothing_else_can_see_it(
    layout: torch.memory_format,
) -> None:
    from landscape.models import build_model

    torch.manual_seed(4)
    model = _trained_bn(Shortcuts()).to(memory_format=layout)
    folded = fold_batchnorm(model)
    assert (folded.chains, folded.adds, folded.into) == (8, 5, 1)
    x = torch.randn(3, 4, 6, 6).contiguous(memory_format=layout)
    given = x.clone()
    for state in _states(model):
        with torch.no_grad():  # no gradient, float32 on a CPU: oneDNN's kernels, the sum in place
            want = functional_call(model, state, (x,))
            got = functional_call(folded.module, state, (x,))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert torch.equal(x, given)  # the model's input is never written
    resnet = fold_batchnorm(build_model("resnet20"))
    assert resnet.into == resnet.adds == 9  # every shortcut: a folded, dead output
    assert resnet.describe()["fused_adds_into"] == 9


def _npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    npz = tmp_path / "img.npz"
    np.savez(npz, x=rng.normal(size=(90, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 90))
    return npz


@pytest.mark.parametrize("bn", ["eval", "recalibrate"])
def test_a_run_with_the_fold_equals_the_reference_path(tmp_path: Path, bn: str) -> None:
    torch.manual_seed(0)
    from landscape.models import build_model

    ckpt = tmp_path / "r20.pt"
    torch.save({"state_dict": _trained_bn(build_model("resnet20")).state_dict()}, ckpt)
    npz = _npz(tmp_path)
    base = ["compute", "--model", "resnet20", "--checkpoint", str(ckpt), "--data", f"npz:{npz}",
            "--x=-1:1:3", "--y=-1:1:3", "--device", "cpu", "--quiet", "--batch-size", "32",
            "--bn", bn]  # fmt: skip
    if bn == "recalibrate":
        base += ["--bn-batches", "1"]
    runs = {"auto": [], "reference": ["--engine", "reference", "--memory-format", "contiguous"]}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.h5"
        result = CliRunner().invoke(main, [*base, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
    auto = read_surface(tmp_path / "auto.h5")
    report = json.loads(auto.attrs["engine"])
    assert report["fused"] == 21 and report["fused_adds"] == 9, report
    shown = CliRunner().invoke(main, ["info", str(tmp_path / "auto.h5")]).output
    assert "engine:      reference, " in shown and "BatchNorm folded into 21 convolutions" in shown
    reference = json.loads(read_surface(tmp_path / "reference.h5").attrs["engine"])
    assert reference["fused"] == 0 and "--fuse on" in reference["fuse_reason"]
    np.testing.assert_allclose(
        auto.values["train_loss"],
        read_surface(tmp_path / "reference.h5").values["train_loss"],
        rtol=1e-6,
    )


def test_fuse_off_and_bn_train_leave_the_model_as_written(tmp_path: Path) -> None:
    npz = _npz(tmp_path)
    base = ["compute", "--model", "resnet20", "--data", f"npz:{npz}", "--x=-1:1:2",
            "--device", "cpu", "--quiet", "--batch-size", "45"]  # fmt: skip
    for extra, why in ((["--fuse", "off"], "--fuse off"), (["--bn", "train"], "--bn train")):
        out = tmp_path / f"{why[2:6]}.h5"
        result = CliRunner().invoke(main, [*base, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        report = json.loads(read_surface(out).attrs["engine"])
        assert report["fused"] == 0 and why in report["fuse_reason"]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_onednn_kernels_and_the_generic_path_agree(layout: torch.memory_format) -> None:
    """On a CPU without gradients the fold runs oneDNN's fused convolution; with gradients it
    takes the generic path (a convolution, then the add and ReLU in place): the same numbers."""
    torch.manual_seed(3)
    from landscape.models import build_model

    model = _trained_bn(build_model("resnet20")).to(memory_format=layout)
    folded = fold_batchnorm(model).module
    x = torch.randn(5, 3, 32, 32).contiguous(memory_format=layout)
    conv, bn = model.conv1, model.bn1
    with torch.no_grad():
        fast, first = folded(x), conv_bn(conv, bn, x, None, True)
    with torch.enable_grad():
        slow = folded(x).detach()
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    assert first.is_contiguous(memory_format=layout)  # the layout carries on to the next layer


def test_the_folded_model_compiles_as_one_graph() -> None:
    """oneDNN's fused add kernels have no fake-tensor rule: traced by torch.compile, the fold
    takes the plain ops, and dynamo sees one graph (a break at every residual add otherwise)."""
    from landscape.models import build_model

    torch.manual_seed(5)
    model = _trained_bn(build_model("resnet20")).to(memory_format=torch.channels_last)
    folded = fold_batchnorm(model).module
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        explained = torch._dynamo.explain(folded)(x)
        want = model(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch.testing.assert_close(folded(x), want, rtol=1e-5, atol=1e-6)
