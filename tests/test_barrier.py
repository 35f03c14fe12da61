"""Paths between two networks: interpolate --align, the loss barrier and its s.e. (issue 25, 2)."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import landscape
from landscape import alignment, families
from landscape.barrier import error_rise, rise
from landscape.config import ComputeConfig
from landscape.errors import ConfigError
from landscape.info import format_info
from landscape.models import build_model

HIDDEN = 16


# --- the maths against closed forms ------------------------------------------------------------


def test_barrier_of_a_concave_bump_over_a_trend_is_its_height() -> None:
    """f = 4t(1 − t) + 2t: the chord from f(0) = 0 to f(1) = 2 is 2t, so the rise is the bump,
    largest (1) at t = 0.5; points beyond [0, 1] do not count however high they are."""
    t = np.linspace(-0.5, 1.5, 21)
    f = 4 * t * (1 - t) + 2 * t
    f[t < 0] = 50.0
    found = rise(t, f)
    assert found.value == pytest.approx(1.0)
    assert found.t == pytest.approx(0.5)
    assert (found.start, found.end) == pytest.approx((0.0, 2.0))


def test_barrier_of_a_convex_path_is_zero() -> None:
    """f = −t(1 − t) + 3 lies below its chord: the largest rise is at the ends, 0."""
    t = np.linspace(0, 1, 11)
    found = rise(t, 3 - t * (1 - t))
    assert found.value == pytest.approx(0.0, abs=1e-12)
    assert found.t in (0.0, 1.0)


def test_barrier_standard_error_combines_the_three_points() -> None:
    """At t* = 0.25 with s(t*) = 0.1, s(A) = 0.2, s(B) = 0.3: the conservative sum
    0.1 + 0.75·0.2 + 0.25·0.3 and, as if independent, the root of the weighted squares."""
    t = np.linspace(0, 1, 5)
    f = np.array([0.0, 1.0, 0.5, 0.2, 0.0])
    se = np.array([0.2, 0.1, 9.0, 9.0, 0.3])
    found = rise(t, f, se)
    assert found.t == pytest.approx(0.25)
    assert found.se == pytest.approx(0.1 + 0.75 * 0.2 + 0.25 * 0.3)
    assert found.se_independent == pytest.approx(
        math.sqrt(0.1**2 + (0.75 * 0.2) ** 2 + (0.25 * 0.3) ** 2)
    )


def test_barrier_se_covers_correlated_noise() -> None:
    """The three values come from the same samples: simulate per-sample losses at A, t* and B
    (correlated) and check the reported s.e. is at least the spread of the barrier estimate."""
    rng = np.random.default_rng(0)
    n, t = 200, np.array([0.0, 0.5, 1.0])
    estimates, reported = [], []
    for _ in range(400):
        base = rng.exponential(size=n)
        per_sample = np.stack([base, 1.5 * base + rng.normal(0, 0.1, n), 0.5 + base])
        f = per_sample.mean(axis=1)
        se = per_sample.std(axis=1, ddof=1) / math.sqrt(n)
        found = rise(t, f, se)
        estimates.append(found.value)
        reported.append(found.se)
    assert np.std(estimates) <= np.mean(reported)


def test_error_barrier_uses_the_binomial_se() -> None:
    t = np.linspace(0, 1, 3)
    found = error_rise(t, np.array([0.9, 0.6, 0.8]), samples=100)
    assert found.value == pytest.approx(0.4 - 0.15)
    s = [math.sqrt(e * (1 - e) / 100) for e in (0.1, 0.4, 0.2)]
    assert found.se == pytest.approx(s[1] + 0.5 * s[0] + 0.5 * s[2])


def test_barrier_needs_both_ends_on_the_grid() -> None:
    assert "no point at A" in rise(np.linspace(0.05, 1, 5), np.ones(5))
    assert "no point at B" in rise(np.linspace(0, 0.9, 5), np.ones(5))
    assert "not computed" in rise(np.linspace(0, 1, 3), np.array([np.nan, 1.0, 1.0]))


# --- a tiny MLP pair ---------------------------------------------------------------------------


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()


def _trained(seed: int) -> torch.nn.Module:
    x, y = _data()
    torch.manual_seed(seed)
    model = build_model("mlp", {"in_features": 6, "hidden": HIDDEN, "num_classes": 3})
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(120):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    return _trained(0), _trained(1)


def _path(model: torch.nn.Module, target: torch.nn.Module, **kw: object) -> landscape.Surface:
    with warnings.catch_warnings():  # interpolate's d1 is aligned with θ: warned, not tested here
        warnings.simplefilter("ignore")
        return landscape.compute(
            model, _data(), x="-0.5:1.5:9", direction="interpolate", target=target,
            progress=False, **kw,
        )  # fmt: skip


def test_barrier_of_a_path_equals_the_stored_losses_by_hand(pair) -> None:
    s = _path(*pair)
    t, f, se = s.x, s.values["train_loss"], s.values["train_loss_se"]
    inside = (t >= 0) & (t <= 1)
    g = f[inside] - ((1 - t[inside]) * f[t == 0] + t[inside] * f[t == 1])
    k = int(np.argmax(g))
    got = s.analysis()["train_loss"]["barrier"]
    assert got["value"] == pytest.approx(g[k])
    assert got["t"] == pytest.approx(t[inside][k])
    ts = t[inside][k]
    assert got["se"] == pytest.approx(se[inside][k] + (1 - ts) * se[t == 0][0] + ts * se[t == 1][0])
    err = 1 - s.values["train_acc"]
    ge = err[inside] - ((1 - t[inside]) * err[t == 0] + t[inside] * err[t == 1])
    assert got["error"] == pytest.approx(ge.max())
    assert got["value"] > 0.1  # two seeds: a barrier on the straight path


def test_align_in_interpolate_equals_the_path_to_the_aligned_model(pair) -> None:
    """--align weights is landscape.align(A, B) then the straight path: the same numbers."""
    a, b = pair
    by_option = _path(a, b, align="weights")
    by_hand = _path(a, landscape.align(a, b))
    np.testing.assert_allclose(
        by_option.values["train_loss"], by_hand.values["train_loss"], rtol=1e-6, atol=1e-7
    )
    record = by_option.direction_attrs["alignment"]
    record = record[0] if isinstance(record, list) else json.loads(record)[0]
    assert record["method"] == "weights" and record["total_after"] > record["total_before"]


def _permuted_copy(model: torch.nn.Module, noise: float = 1e-3) -> torch.nn.Module:
    """A with the units of both hidden layers reordered (the same function) and a little noise."""
    g = torch.Generator().manual_seed(1)
    out = copy.deepcopy(model)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    p0, p1 = torch.randperm(HIDDEN, generator=g), torch.randperm(HIDDEN, generator=g)
    sd["layers.0.weight"], sd["layers.0.bias"] = sd["layers.0.weight"][p0], sd["layers.0.bias"][p0]
    sd["layers.2.weight"] = sd["layers.2.weight"][p1][:, p0]
    sd["layers.2.bias"] = sd["layers.2.bias"][p1]
    sd["layers.4.weight"] = sd["layers.4.weight"][:, p1]
    sd = {k: v + noise * torch.randn(v.shape, generator=g) for k, v in sd.items()}
    out.load_state_dict(sd)
    return out


def test_aligned_path_to_a_permuted_copy_has_no_barrier(pair) -> None:
    a = pair[0]
    b = _permuted_copy(a)
    x, _ = _data()
    with torch.no_grad():  # the same function (up to the noise)
        assert (a(x) - b(x)).abs().max() < 0.01 * a(x).abs().max()
    straight = _path(a, b).analysis()["train_loss"]["barrier"]
    for method in alignment.METHODS:
        aligned = _path(a, b, align=method).analysis()["train_loss"]["barrier"]
        assert aligned["value"] < 1e-3, method
    assert straight["value"] > 0.1


def test_plane_aligns_both_targets(pair) -> None:
    """--target B C with --align: both are aligned to A, each with its record."""
    a, b = pair
    c = _trained(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = landscape.compute(a, _data(), x="0:1:2", y="0:1:2", direction="interpolate",
                              target=[b, c], align="weights", progress=False)  # fmt: skip
    records = s.direction_attrs["alignment"]
    records = records if isinstance(records, list) else json.loads(records)
    assert [r["method"] for r in records] == ["weights", "weights"]
    assert all(r["total_after"] > r["total_before"] for r in records)
    assert np.isfinite(s.values["train_loss"]).all()


def test_other_surfaces_have_no_barrier(pair) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = landscape.compute(pair[0], _data(), x="-1:1:5", progress=False)
    assert s.analysis()["train_loss"]["barrier"] is None
    assert "barrier" not in format_info(s)


def test_align_choices_are_the_alignment_methods() -> None:
    assert ("none", *alignment.METHODS) == families.ALIGN_CHOICES


def test_align_from_yaml_and_refused_elsewhere(tmp_path: Path) -> None:
    base = {
        "model": {"name": "mlp", "checkpoint": "a.pt"},
        "data": {"name": "digits"},
        "out": "s.h5",
    }
    d = {"name": "interpolate", "targets": ["b.pt"], "align": "activations"}
    assert ComputeConfig.from_dict({**base, "direction": d}).direction.align == "activations"
    with pytest.raises(ConfigError, match=r"direction\.align"):
        ComputeConfig.from_dict({**base, "direction": {**d, "align": "bogus"}})
    with pytest.raises(ConfigError, match=r"--align\) is for the path"):
        ComputeConfig.from_dict({**base, "direction": {"name": "filter-norm", "align": "weights"}})


def test_bn_recalibrate_re_estimates_the_statistics_along_an_aligned_path() -> None:
    """A conv net with BatchNorm: --bn recalibrate runs with --align, and at t = 0.5 the
    re-estimated statistics give another loss than A's frozen ones (REPAIR-style resets)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 1, 4, 4, generator=g)
    y = (x[:, 0, 0, 0] > 0).long()

    def net(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        m = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(64, 2),
        )  # fmt: skip
        opt = torch.optim.Adam(m.parameters(), lr=0.05)
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        return m.eval()

    a, b = net(0), net(1)
    kw = {"x": "0:1:3", "direction": "interpolate", "target": b, "align": "weights"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = landscape.compute(a, (x, y), progress=False, **kw)
        recal = landscape.compute(a, (x, y), bn="recalibrate", progress=False, **kw)
    assert np.isfinite(recal.values["train_loss"]).all()
    assert recal.values["train_loss"][1] != pytest.approx(frozen.values["train_loss"][1], rel=1e-3)
    assert recal.analysis()["train_loss"]["barrier"] is not None


def test_an_exact_permuted_copy_once_aligned_is_refused_as_a(pair) -> None:
    from landscape.errors import DirectionError

    a = pair[0]
    with pytest.raises(DirectionError, match="once aligned"):
        _path(a, _permuted_copy(a, noise=0.0), align="weights")
