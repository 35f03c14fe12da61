"""``landscape inspect``: every diagnostic on purpose-built broken and healthy tiny models.

Numbers are checked against direct computations (numpy, or the layer applied by hand), not
against the code under test.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from landscape.cli import main
from landscape.config import DataSpec
from landscape.data import load_data
from landscape.diagnostics import CHECKS
from landscape.diagnostics.activations import GROWTH_FACTOR, _growth_runs, run_forward
from landscape.diagnostics.saturation import softmax_saturation
from landscape.diagnostics.training import checkpoint_movement, not_learning_findings
from landscape.diagnostics.weights import (
    duplicate_groups,
    layers_of,
    symmetry_findings,
    tensor_stats,
    unit_rows,
)
from landscape.models import build_model
from landscape.runs.inspect import inspect_model

Init = Callable[[torch.Tensor], object]


def kaiming(w: torch.Tensor) -> object:
    return nn.init.kaiming_normal_(w, nonlinearity="relu")


def normal(std: float) -> Init:
    return lambda w: nn.init.normal_(w, std=std)


def trunc_normal(std: float) -> Init:
    return lambda w: nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def constant(value: float) -> Init:
    return lambda w: nn.init.constant_(w, value)


def mlp(init: Init | None = None, depth: int = 3, width: int = 64, seed: int = 0) -> nn.Module:
    """The built-in mlp on digits (64 features, 10 classes); ``init`` on weights, zero biases."""
    torch.manual_seed(seed)
    model = build_model("mlp", {"hidden": width, "depth": depth})
    if init is not None:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                init(m.weight)
                nn.init.zeros_(m.bias)
    return model


@pytest.fixture(scope="module")
def digits() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """200 digits in two batches of 100."""
    return list(load_data(DataSpec("digits", max_samples=200)).batches(100))


def checks(report, severity: str | None = None) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for f in report.findings:
        if severity is None or f.severity == severity:
            out.setdefault(f.check, []).append(f.layer)
    return out


# --- weight statistics ------------------------------------------------------------------------


def test_tensor_stats_match_numpy() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(0.3, 2.0, size=(7, 5, 3)).astype(np.float32)
    a[0, 0, :] = 0.0
    s = tensor_stats(torch.from_numpy(a))
    v = a.astype(np.float64).ravel()
    assert s.shape == (7, 5, 3) and s.numel == v.size
    for got, want in [
        (s.mean, v.mean()),
        (s.std, v.std()),  # population std (ddof=0)
        (s.min, v.min()),
        (s.max, v.max()),
        (s.abs_max, np.abs(v).max()),
        (s.norm, np.sqrt((v**2).sum())),
        (s.zero_fraction, 3 / v.size),
    ]:
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6)
    counts, edges = np.histogram(v, bins=len(s.histogram.counts))
    np.testing.assert_allclose(s.histogram.edges, edges, rtol=1e-6)
    assert abs(np.asarray(s.histogram.counts) - counts).sum() <= 2  # float32 edge rounding
    assert sum(s.histogram.counts) == v.size


def test_layers_group_parameters_by_module() -> None:
    layers = layers_of(build_model("lenet", {}))
    assert [(x.name, x.kind, sorted(x.tensors)) for x in layers][:2] == [
        ("conv1", "Conv2d", ["bias", "weight"]),
        ("conv2", "Conv2d", ["bias", "weight"]),
    ]
    assert layers[0].params == 6 * 25 + 6 and layers[0].full_names() == [
        "conv1.weight",
        "conv1.bias",
    ]
    (bare,) = layers_of(nn.Linear(4, 3))  # a model that is one module is one layer
    assert bare.name == "(model)" and bare.full_names() == ["weight", "bias"]


# --- symmetry -----------------------------------------------------------------------------------


def brute_force_groups(rows: np.ndarray, tol: float) -> list[list[int]]:
    """Oracle: connected pairs within tol, by the full distance matrix."""
    d = np.linalg.norm(rows[:, None, :] - rows[None, :, :], axis=2)
    groups, seen = [], set()
    for i in range(len(rows)):
        if i in seen:
            continue
        members = [j for j in range(len(rows)) if d[i, j] <= tol]
        seen.update(members)
        if len(members) > 1:
            groups.append(members)
    return groups


def test_duplicate_groups_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, 30))
    rows[[3, 17, 31]] = rows[5]  # one group of four
    rows[22] = rows[8] + 1e-7 * rng.normal(size=30)  # equal up to float noise
    rows[9] = rows[2] + 1e-2 * rng.normal(size=30)  # close but different: not a duplicate
    scale = np.sqrt((rows**2).sum(1).mean())
    got = duplicate_groups(torch.from_numpy(rows).float(), rtol=1e-4)
    assert got == brute_force_groups(rows, 1e-4 * scale) == [[3, 5, 17, 31], [8, 22]]


def test_constant_init_is_flagged_and_normal_init_is_not() -> None:
    broken = symmetry_findings(layers_of(mlp(constant(0.05))))
    assert [(f.layer, f.severity) for f in broken] == [
        ("layers.0", "error"),
        ("layers.2", "error"),
        ("layers.4", "error"),
        ("layers.6", "error"),
    ]
    assert "64 of 64 units" in broken[0].message
    assert symmetry_findings(layers_of(mlp(normal(0.05)))) == []
    assert symmetry_findings(layers_of(build_model("lenet", {}))) == []


def test_symmetry_rows_include_the_bias_and_zero_layers_are_info() -> None:
    model = mlp(constant(0.1), depth=1, width=8)
    with torch.no_grad():
        model.layers[0].bias.copy_(torch.arange(8.0))  # same weights, different biases
    layers = layers_of(model)
    assert unit_rows(layers[0]).shape == (8, 65)
    assert [f.layer for f in symmetry_findings(layers)] == ["layers.2"]
    zero = mlp(constant(0.0), depth=1, width=8)
    assert {(f.layer, f.severity) for f in symmetry_findings(layers_of(zero))} == {
        ("layers.0", "info"),
        ("layers.2", "info"),
    }


def test_symmetric_conv_filters_are_flagged() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    with torch.no_grad():
        conv[0].weight[4:] = conv[0].weight[0]  # filters 0, 4..7 identical, biases differ
        conv[0].bias[4:] = conv[0].bias[0]
    (finding,) = symmetry_findings(layers_of(conv))
    assert (
        finding.layer == "0" and finding.severity == "error" and "5 of 8 units" in finding.message
    )


# --- dead units ---------------------------------------------------------------------------------


def test_very_negative_bias_kills_the_layer(digits) -> None:
    model = mlp(kaiming)
    with torch.no_grad():
        model.layers[0].bias.fill_(-100.0)
    report = inspect_model(model, digits)
    # layers.0 outputs zeros, so the layers after it (zero biases) only ever see zeros too
    assert checks(report, "error") == {"dead-units": ["layers.0", "layers.2", "layers.4"]}
    assert report.layers[0].dead_fraction == 1.0 and "64 of 64 units" in report.findings[0].message


def test_dead_units_match_a_direct_count(digits) -> None:
    model = mlp(kaiming)
    with torch.no_grad():
        model.layers[2].bias[:40] = -100.0  # 40 of 64 units dead: a warning
    report = inspect_model(model, digits)
    x = torch.cat([b[0] for b in digits])
    with torch.no_grad():
        h0 = F.relu(model.layers[0](x))
        h1 = F.relu(model.layers[2](h0))  # the oracle: the layers applied by hand
    want = [int((h.amax(0) <= 0).sum()) for h in (h0, h1)]
    relus = [r for r in report.activations if r.role == "relu"]
    assert [r.dead for r in relus[:2]] == want and want[1] >= 40
    assert ("dead-units", "layers.2", "warning") in [
        (f.check, f.layer, f.severity) for f in report.findings
    ]
    with torch.no_grad():
        rms = math.sqrt(float(model.layers[0](x).square().mean()))
    assert math.isclose(report.layers[0].output_rms, rms, rel_tol=1e-5)


def test_functional_relu_channels_are_units() -> None:
    torch.manual_seed(0)
    lenet = build_model("lenet", {})
    with torch.no_grad():
        lenet.conv1.bias[:3] = -100.0
    x = torch.randn(16, 1, 28, 28)
    report = inspect_model(lenet, [(x, torch.zeros(16, dtype=torch.long))])
    relu = next(r for r in report.activations if r.name == "relu(conv1)")
    assert relu.layer == "conv1" and relu.units == 6 and relu.dead == 3  # channels, not pixels
    with torch.no_grad():
        direct = F.relu(lenet.conv1(x)).amax(dim=(0, 2, 3))
    assert relu.dead == int((direct <= 0).sum())
    assert [(f.check, f.layer, f.severity) for f in report.findings] == [
        ("dead-units", "conv1", "warning")
    ]


def test_healthy_models_have_no_findings(digits) -> None:
    for model in (mlp(kaiming), mlp(nn.init.xavier_normal_), mlp()):
        assert inspect_model(model, digits).findings == []


def test_batchnorm_uses_batch_statistics_at_initialization() -> None:
    """At initialization BN's running statistics are the defaults (0, 1), not what its conv makes;
    the forward normalizes with each batch's statistics, as training does, on a private copy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten())
    with torch.no_grad():
        for t in net[0].parameters():  # running statistics (0, 1) would leave the output ~1e-3
            t.mul_(1e-3)
    x = torch.randn(32, 3, 6, 6)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = [(x, torch.zeros(32, dtype=torch.long))]

    def bn_rms(report) -> float:
        return next(a.rms for a in report.activations if a.name == "1")

    init = inspect_model(net, batch, trained=False)
    assert "batch" in (init.batchnorm or "")
    with torch.no_grad():  # oracle: per-channel standardized conv output has RMS 1 (γ=1, β=0)
        y = net[0](x)
        z = (y - y.mean((0, 2, 3), keepdim=True)) / torch.sqrt(y.var((0, 2, 3), False, True) + 1e-5)
    assert math.isclose(bn_rms(init), float(z.pow(2).mean().sqrt()), rel_tol=1e-4)
    trained = inspect_model(net, batch, trained=True)
    assert "running" in (trained.batchnorm or "") and bn_rms(trained) < 0.01
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert inspect_model(mlp(), [(x.flatten(1)[:, :64], batch[0][1])]).batchnorm is None


# --- saturation ---------------------------------------------------------------------------------


def test_truncated_normal_saturates_and_glorot_does_not(digits) -> None:
    wide = inspect_model(mlp(trunc_normal(0.5), depth=3, width=128), digits)
    assert wide.saturation.share > 0.9
    assert "saturation" in checks(wide, "error")  # before training, from 90 %
    glorot = inspect_model(mlp(nn.init.xavier_normal_, depth=3, width=128), digits)
    assert glorot.saturation.share < 0.01 and "saturation" not in checks(glorot)
    assert glorot.saturation.samples == 100  # the first batch only


def test_saturation_share_by_hand() -> None:
    logits = np.array([[30.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -8.0]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    eps = 1e-3
    want = np.mean((p <= eps) | (p >= 1 - eps))  # row 0 all saturated; row 2 one output (1.7e-4)
    logits = torch.from_numpy(logits).float()
    s = softmax_saturation(logits, torch.tensor([0, 1, 2]), eps)
    assert math.isclose(s.share, want) and math.isclose(s.share, 4 / 9)
    assert s.confident_samples == pytest.approx(1 / 3) and s.confident_wrong == 0.0
    # 1000 classes at uniform 1/1000 are not "within ε of 0": ε₀ = min(ε, 0.01/K)
    assert softmax_saturation(torch.zeros(4, 1000), None, eps).share == 0.0
    probs = torch.tensor([[0.9999, 0.0001], [0.5, 0.5]])  # already probabilities: used as they are
    s = softmax_saturation(probs, None, eps)
    assert s.from_probabilities and s.share == 0.5
    assert softmax_saturation(torch.zeros(4), None, eps) is None  # not (batch, classes)


def test_confident_and_right_after_training_is_not_flagged() -> None:
    from landscape.diagnostics.saturation import saturation_findings

    logits = torch.eye(4) * 50
    right = softmax_saturation(logits, torch.arange(4), 1e-3)
    wrong = softmax_saturation(logits, torch.tensor([1, 2, 3, 0]), 1e-3)
    assert saturation_findings(right, trained=True) == []
    assert len(saturation_findings(right, trained=False)) == 1
    assert saturation_findings(wrong, trained=True)[0].severity == "warning"


INIT_NET = """
import torch
from landscape.models import build_model
INITS = {{
    "trunc": lambda w: torch.nn.init.trunc_normal_(w, std=0.5, a=-1.0, b=1.0),
    "glorot": torch.nn.init.xavier_normal_,
    "kaiming": lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu"),
}}
def make(init="{init}"):
    model = build_model("mlp", {{"hidden": 512, "depth": 2}})
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            INITS[init](m.weight)
            torch.nn.init.zeros_(m.bias)
    return model
"""


@pytest.mark.parametrize(("init", "code"), [("trunc", 3), ("glorot", 0), ("kaiming", 0)])
def test_the_two_hidden_layer_network_of_the_seeds_fails(
    tmp_path: Path, init: str, code: int
) -> None:
    """At initialization (no checkpoint), truncated normal std 0.5, two hidden layers of 512
    on digits: 97 % of the softmax outputs saturated and the hidden RMS ×3.4 then ×6.5; the
    linter must exit 3. Glorot and Kaiming networks of the same shape are clean."""
    factory = tmp_path / "net.py"
    factory.write_text(INIT_NET.format(init=init))
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, [
        "inspect", "--model", f"{factory}:make", "--data", "digits", "--max-samples", "500",
        "--json", str(report),
    ])  # fmt: skip
    assert result.exit_code == code, result.output
    found = {(f["check"], f["severity"]) for f in json.loads(report.read_text())["findings"]}
    if code:
        assert {("saturation", "error"), ("activation-growth", "warning")} <= found
    else:
        assert not found


# --- activation growth --------------------------------------------------------------------------


def test_too_large_std_grows_and_kaiming_does_not(digits) -> None:
    big = inspect_model(mlp(normal(0.5), depth=6), digits)
    assert checks(big, "warning")["activation-growth"] == ["layers.10"]  # the last hidden layer
    rms = [r for _, r in big.depth_scale]
    assert all(b / a > GROWTH_FACTOR for a, b in itertools.pairwise(rms))
    huge = inspect_model(mlp(normal(1.0), depth=6), digits)
    assert "activation-growth" in checks(huge, "error")  # ×1e3 and more
    trained = inspect_model(mlp(normal(0.5), depth=6), digits, trained=True)
    assert checks(trained, "info")["activation-growth"] == ["layers.10"]
    for init in (kaiming, nn.init.xavier_normal_):
        assert "activation-growth" not in checks(inspect_model(mlp(init, depth=6), digits))


def test_growth_runs_need_several_consecutive_layers() -> None:
    scale = [(str(k), v) for k, v in enumerate([1, 2, 4, 3, 6, 12, 24, 30])]
    assert _growth_runs(scale) == [(1, 2), (4, 6)]  # ×2 twice, then three times in a row
    assert _growth_runs([("in", 1.0), ("a", 2.0), ("b", 1.9), ("c", 3.0)]) == []  # lone ratios
    assert _growth_runs([("a", 1.0), ("b", 0.0), ("c", 5.0), ("d", 50.0)]) == []


# --- not learning -------------------------------------------------------------------------------


def states_where_only(model: nn.Module, moving: list[str], steps: int = 3) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    states, state = [], {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(steps):
        states.append({k: v.clone() for k, v in state.items()})
        for name in moving:
            state[name] += 0.1 * torch.randn(state[name].shape, generator=gen)
    return states


def test_only_the_last_layer_learning_is_an_error() -> None:
    model = mlp(depth=2)
    states = states_where_only(model, ["layers.4.weight", "layers.4.bias"])
    movement = checkpoint_movement(layers_of(model), states, ["a", "b", "c"])
    last = movement.layers[-1]
    w0, w2 = (
        np.concatenate(
            [s[n].double().numpy().ravel() for n in ("layers.4.weight", "layers.4.bias")]
        )
        for s in (states[0], states[2])
    )
    assert last.relative_change[0] == 0.0
    want = np.linalg.norm(w2 - w0) / np.linalg.norm(w0)
    assert math.isclose(last.relative_change[2], want, rel_tol=1e-9)
    assert math.isclose(
        last.weight_std[2], states[2]["layers.4.weight"].double().std(unbiased=False).item()
    )
    findings = not_learning_findings(movement)
    assert [(f.layer, f.severity) for f in findings] == [
        ("layers.0", "error"),
        ("layers.2", "error"),
    ]
    assert "only the last layer" in findings[0].message


def test_all_layers_moving_is_fine_and_a_frozen_one_is_a_warning() -> None:
    model = mlp(depth=2)
    names = [n for n, _ in model.named_parameters()]
    healthy = checkpoint_movement(layers_of(model), states_where_only(model, names), "abc")
    assert not_learning_findings(healthy) == []
    frozen = [n for n in names if not n.startswith("layers.2")]
    movement = checkpoint_movement(layers_of(model), states_where_only(model, frozen), "abc")
    assert [(f.layer, f.severity) for f in not_learning_findings(movement)] == [
        ("layers.2", "warning")
    ]
    same = checkpoint_movement(layers_of(model), states_where_only(model, []), "abc")
    (finding,) = not_learning_findings(same)
    assert finding.severity == "error" and finding.layer is None


# --- the model is left alone --------------------------------------------------------------------


class Busy(nn.Module):
    """BN, dropout, an in-place ReLU used twice and a functional ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn = nn.Linear(64, 32), nn.BatchNorm1d(32)
        self.fc2, self.fc3 = nn.Linear(32, 32), nn.Linear(32, 10)
        self.relu, self.drop = nn.ReLU(inplace=True), nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn(self.fc1(x)))
        h = self.drop(self.relu(self.fc2(h)))
        return self.fc3(F.relu(h))


def test_model_is_unchanged_and_hooks_are_removed(digits) -> None:
    torch.manual_seed(0)
    model = Busy().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fwd = run_forward(model, digits)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats too
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert not torch._C._is_torch_function_mode_enabled()
    names = [r.name for r in fwd.records]
    assert names[:6] == ["fc1", "bn", "relu", "fc2", "relu#2", "drop"]
    assert "relu(fc2)" in names  # the functional ReLU, after the last layer that ran
    # the in-place ReLU did not change what was recorded for the layer before it
    model.eval()
    x = torch.cat([b[0] for b in digits])
    with torch.no_grad():
        rms = math.sqrt(float(model.fc2(F.relu(model.bn(model.fc1(x)))).square().mean()))
    assert math.isclose(next(r for r in fwd.records if r.name == "fc2").rms, rms, rel_tol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in torch 2.x
def test_torchscript_keeps_weight_checks_and_says_what_was_skipped(digits) -> None:
    scripted = torch.jit.script(mlp(constant(0.05), depth=1))
    report = inspect_model(scripted, digits)
    assert report.activations == [] and report.saturation is not None
    assert any("dead-units and activation-growth" in s for s in report.skipped)
    assert checks(report) == {"symmetry": ["layers.0", "layers.2"]}


# --- command line ---------------------------------------------------------------------------------

FACTORIES = """
import torch
from landscape.models import build_model

def constant():
    model = build_model("mlp", {"hidden": 16, "depth": 2})
    for p in model.parameters():
        torch.nn.init.constant_(p, 0.1)
    return model
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["inspect", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


DIGITS = ["--data", "digits", "--max-samples", "120", "--device", "cpu"]


def test_cli_healthy_table_json_and_plots(tmp_path: Path) -> None:
    report, plots = tmp_path / "out" / "report.json", tmp_path / "plots"
    code, text, err = invoke(
        "--model", "mlp", "--model-arg", "hidden=16", *DIGITS, "--json", str(report),
        "--plots", str(plots),
    )  # fmt: skip
    assert code == 0, err
    assert "layers.0  Linear" in text and "act rms" in text and "no findings" in text
    doc = json.loads(report.read_text())
    assert doc["findings"] == [] and doc["schema"] == "landscape.inspect"
    assert [layer["name"] for layer in doc["layers"]] == ["layers.0", "layers.2", "layers.4"]
    assert doc["layers"][0]["tensors"]["weight"]["shape"] == [16, 64]
    assert doc["model"]["name"] == "mlp" and doc["model"]["seed"] == 0
    assert doc["data"]["n"] == 120 and doc["samples"] == 120 and doc["torch_version"]
    assert doc["activations"] and doc["saturation"]["share"] == 0.0 and doc["checkpoints"] is None
    assert sorted(p.name for p in plots.iterdir()) == ["activations.png", "weights.png"]


def test_cli_trained_checkpoint_is_healthy(tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    tiny = [
        "--model-arg",
        "in_features=6",
        "--model-arg",
        "hidden=8",
        "--model-arg",
        "num_classes=3",
    ]
    code, text, err = invoke(
        "--model", "mlp", *tiny, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert f"at checkpoint {tiny_mlp_ckpt}" in text and text.rstrip().endswith("no findings")


def test_cli_errors_exit_3_unless_no_fail(tmp_path: Path) -> None:
    factories = tmp_path / "nets.py"
    factories.write_text(FACTORIES)
    args = ["--model", f"{factories}:constant", *DIGITS, "--json", str(tmp_path / "r.json")]
    code, text, _ = invoke(*args)
    assert code == 3 and "error    symmetry" in text
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {f["check"] for f in doc["findings"]} <= set(CHECKS)
    assert {(f["check"], f["layer"], f["severity"]) for f in doc["findings"]} >= {
        ("symmetry", "layers.0", "error"),
        ("symmetry", "layers.2", "error"),
    }
    assert set(doc["findings"][0]) == {"check", "layer", "severity", "message"}
    assert invoke(*args, "--no-fail")[0] == 0


def test_cli_checkpoints_flag_layers_that_did_not_learn(tmp_path: Path) -> None:
    model = mlp(depth=1, width=16)
    files = []
    for k, state in enumerate(states_where_only(model, ["layers.2.weight"])):
        files += ["--checkpoints", str(tmp_path / f"epoch{k}.pt")]
        torch.save(state, tmp_path / f"epoch{k}.pt")
    args = ["--model", "mlp", "--model-arg", "hidden=16", "--model-arg", "depth=1", *DIGITS]
    code, text, _ = invoke(*args, *files, "--plots", str(tmp_path / "p"))
    assert code == 3 and "not-learning" in text and "only the last layer" in text
    assert "checkpoint " + str(tmp_path / "epoch2.pt") in text  # the last one is inspected
    assert (tmp_path / "p" / "checkpoints.png").is_file()
    code, _, _ = invoke(
        *args, "--checkpoints", str(tmp_path / "epoch*.pt"), "--json", str(tmp_path / "r.json")
    )
    doc = json.loads((tmp_path / "r.json").read_text())
    assert code == 3 and len(doc["checkpoints"]["files"]) == 3
    assert doc["checkpoints"]["layers"][0]["relative_change"] == [0.0, 0.0, 0.0]
    listed = [str(tmp_path / f"epoch{k}.pt") for k in range(3)]  # --checkpoints A B C
    code, _, _ = invoke(*args, "--checkpoints", *listed, "--json", str(tmp_path / "r2.json"))
    doc = json.loads((tmp_path / "r2.json").read_text())
    assert code == 3 and doc["checkpoints"]["files"] == listed
    code, _, err = invoke(*args, listed[0])  # a file without --checkpoints is a usage error
    assert code == 2 and "unexpected extra argument" in err


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--checkpoint", "missing.pt"], "checkpoint file 'missing.pt' does not exist"),
        (["--checkpoints", "missing.pt"], "--checkpoints file 'missing.pt' does not exist"),
        (["--model-arg", "width=3"], "has no argument 'width'"),
    ],
)
def test_cli_bad_input_is_one_error_line(extra: list[str], fragment: str) -> None:
    code, _, err = invoke("--model", "mlp", *DIGITS, *extra)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and fragment in errors[0], err
    assert "Traceback" not in err


class Unhooked(nn.Module):
    """Like a torch.export program: parameters live in submodules that never run as modules."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.linear(x, self.fc1.weight, self.fc1.bias))
        return F.linear(h, self.fc2.weight, self.fc2.bias)


def test_layers_that_never_run_as_modules_skip_activation_checks(digits) -> None:
    report = inspect_model(Unhooked(), digits)
    assert report.activations == [] and report.depth_scale == []
    assert [layer.name for layer in report.layers] == ["fc1", "fc2"]
    assert report.saturation is not None and len(report.skipped) == 1


@pytest.mark.slow  # the first torch.export of a process takes seconds
def test_cli_exported_program_gets_weight_statistics(tmp_path: Path) -> None:
    exported = tmp_path / "m.pt2"
    batch = ({0: torch.export.Dim("batch")},)
    program = torch.export.export(
        mlp(constant(0.05), depth=1), (torch.zeros(2, 64),), dynamic_shapes=batch
    )
    torch.export.save(program, str(exported))
    code, text, _ = invoke("--model", str(exported), *DIGITS, "--json", str(tmp_path / "r.json"))
    assert code == 3 and "skipped: dead-units and activation-growth" in text
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["activations"] == [] and doc["layers"][0]["tensors"]["weight"]["std"] == 0.0
    assert {f["check"] for f in doc["findings"]} == {"symmetry"} and doc["skipped"]


def test_cli_one_checkpoint_in_a_series_is_an_error(tmp_path: Path) -> None:
    torch.save(mlp().state_dict(), tmp_path / "a.pt")
    code, _, err = invoke("--model", "mlp", *DIGITS, "--checkpoints", str(tmp_path / "a.pt"))
    assert code == 1 and "at least two checkpoints" in err


# --- TensorBoard ----------------------------------------------------------------------------------


def read_events(folder: Path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    ).EventAccumulator(str(folder), size_guidance={"histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_histograms_one_step_per_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp", {"hidden": 16, "depth": 1})
    files = []
    for k in range(3):  # a training run: each checkpoint's weights scaled by 1 + k
        state = {n: t * (1 + k) for n, t in model.state_dict().items()}
        files.append(str(tmp_path / f"epoch{k}.pt"))
        torch.save(state, files[-1])
    board = tmp_path / "tb"
    code, text, err = invoke(
        "--model", "mlp", "--model-arg", "hidden=16", "--model-arg", "depth=1", *DIGITS,
        "--checkpoints", *files, "--tensorboard", str(board), "--no-fail",
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote TensorBoard events to {board}" in text
    events = read_events(board)
    tags = events.Tags()["histograms"]
    assert {"weights/layers.0/weight", "weights/layers.0/bias", "weights/layers.2/weight"} <= set(
        tags
    )
    assert any(t.startswith("activations/") for t in tags)
    steps = events.Histograms("weights/layers.0/weight")
    assert [e.step for e in steps] == [0, 1, 2]
    w = model.state_dict()["layers.0.weight"].double()
    for k, e in enumerate(steps):  # each step holds that checkpoint's values
        assert e.histogram_value.num == w.numel()
        assert e.histogram_value.sum == pytest.approx(float(w.sum()) * (1 + k), rel=1e-5, abs=1e-6)
        assert e.histogram_value.max == pytest.approx(float(w.max()) * (1 + k), rel=1e-6)
    assert [
        e.step for e in events.Histograms(next(t for t in tags if t.startswith("activations/")))
    ] == [2]


def test_tensorboard_without_checkpoints_is_one_step(tmp_path: Path) -> None:
    board = tmp_path / "tb"
    code, _, err = invoke(
        "--model", "mlp", "--model-arg", "hidden=16", *DIGITS, "--tensorboard", str(board)
    )
    assert code == 0, err
    steps = read_events(board).Histograms("weights/layers.0/weight")
    assert [e.step for e in steps] == [0] and steps[0].histogram_value.num == 16 * 64
