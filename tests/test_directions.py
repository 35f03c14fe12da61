"""Filter-normalized directions against an oracle written from the formula (Li et al. 2018 §4)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape import params
from landscape.cli import main
from landscape.config import DirectionSpec
from landscape.directions import build_directions, summarize
from landscape.errors import DirectionError


def tiny_theta() -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return OrderedDict(
        [
            ("conv.weight", torch.randn(4, 3, 3, 3, generator=g)),
            ("conv.bias", torch.randn(4, generator=g)),
            ("bn.weight", torch.rand(4, generator=g) + 0.5),
            ("fc.weight", torch.randn(5, 36, generator=g)),
            ("fc.bias", torch.randn(5, generator=g)),
        ]
    )


def stream(seed: int) -> torch.Generator:
    """The CPU generator of a direction seed: seeded with the first 8 bytes (big-endian) of
    sha256("landscape.directions:<seed>"), not with the seed (torch's own stream for it)."""
    digest = hashlib.sha256(f"landscape.directions:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big"))


def oracle(theta, seed: int, ignore: str, norm: str, count: int) -> list[dict[str, np.ndarray]]:
    """From DESIGN §3: Gaussians from a CPU generator seeded from ``seed`` (``stream``), drawn
    tensor by tensor in parameter order, x before y; then per filter d_i·‖w_i‖/(‖d_i‖+1e-10)."""
    gen = stream(seed)
    out = []
    for _ in range(count):
        d = {}
        for name, w in theta.items():
            g = torch.randn(w.shape, generator=gen).numpy().astype(np.float64)
            w64 = w.numpy().astype(np.float64)
            if w.ndim <= 1:
                if ignore == "biasbn":
                    g = np.zeros_like(g)
                elif norm != "none":
                    g = g * np.linalg.norm(w64) / (np.linalg.norm(g) + 1e-10)
            elif norm == "filter":
                for i in range(w.shape[0]):
                    g[i] = g[i] * np.linalg.norm(w64[i]) / (np.linalg.norm(g[i]) + 1e-10)
            elif norm == "layer":
                g = g * np.linalg.norm(w64) / (np.linalg.norm(g) + 1e-10)
            d[name] = g
        out.append(d)
    return out


@pytest.mark.parametrize("ignore", ["biasbn", "none"])
@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_matches_oracle(ignore: str, norm: str) -> None:
    theta = tiny_theta()
    ds = build_directions(theta, DirectionSpec(seed=5, ignore=ignore, norm=norm), 2)
    expected = oracle(theta, 5, ignore, norm, 2)
    for got, want in zip(ds.vectors, expected, strict=True):
        assert list(got) == list(theta)
        for name in theta:
            np.testing.assert_allclose(got[name].numpy(), want[name], rtol=1e-5, atol=1e-7)


def test_filter_norms_equal_weight_filter_norms() -> None:
    theta = tiny_theta()
    d = build_directions(theta, DirectionSpec(seed=0), 1).vectors[0]
    for name, w in theta.items():
        if w.ndim >= 2:
            torch.testing.assert_close(
                params.filter_norms(d[name]), params.filter_norms(w), rtol=1e-6, atol=0
            )
        else:
            assert torch.count_nonzero(d[name]) == 0, name  # biasbn ignored by default


def test_deterministic_by_seed_and_distinct_axes() -> None:
    theta = tiny_theta()
    a = build_directions(theta, DirectionSpec(seed=1), 2)
    b = build_directions(theta, DirectionSpec(seed=1), 2)
    c = build_directions(theta, DirectionSpec(seed=2), 2)
    for name in theta:
        torch.testing.assert_close(a.vectors[0][name], b.vectors[0][name], rtol=0, atol=0)
    assert not torch.equal(a.vectors[0]["fc.weight"], c.vectors[0]["fc.weight"])
    assert not torch.equal(a.vectors[0]["fc.weight"], a.vectors[1]["fc.weight"])


def test_weights_direction_independent_of_ignore() -> None:
    theta = tiny_theta()
    a = build_directions(theta, DirectionSpec(seed=4, ignore="biasbn"), 1).vectors[0]
    b = build_directions(theta, DirectionSpec(seed=4, ignore="none"), 1).vectors[0]
    torch.testing.assert_close(a["conv.weight"], b["conv.weight"], rtol=0, atol=0)


def test_zero_filter_stays_zero() -> None:
    theta = tiny_theta()
    theta["fc.weight"][2] = 0.0
    d = build_directions(theta, DirectionSpec(seed=0), 1).vectors[0]
    assert float(d["fc.weight"][2].abs().max()) == 0.0


def test_summary_records_cosine_and_norms() -> None:
    theta = tiny_theta()
    ds = build_directions(theta, DirectionSpec(seed=0), 2)
    s = summarize(ds)
    d1, d2 = ds.vectors
    manual = sum(float((d1[k] * d2[k]).sum()) for k in d1) / (
        sum(float((d1[k] ** 2).sum()) for k in d1) ** 0.5
        * sum(float((d2[k] ** 2).sum()) for k in d2) ** 0.5
    )
    assert s["method"] == "filter-norm"
    assert s["cosine"] == pytest.approx(manual, rel=1e-6)
    assert s["norm_x"] == pytest.approx(sum(float((d1[k] ** 2).sum()) for k in d1) ** 0.5, rel=1e-6)


def test_degenerate_and_unknown() -> None:
    only_biases = OrderedDict([("b", torch.ones(3))])
    with pytest.raises(DirectionError, match="zero on every tensor"):
        build_directions(only_biases, DirectionSpec(), 1)
    with pytest.raises(DirectionError, match="unknown direction 'nope'"):
        build_directions(tiny_theta(), DirectionSpec(name="nope"), 1)


def test_reference_direction_file_is_filter_normalized(li_fixture) -> None:
    """Li et al.'s own direction file obeys the same formula against their checkpoint."""
    import h5py

    state = torch.load(li_fixture / "model_20.t7", weights_only=True)["state_dict"]
    weights = [
        v
        for k, v in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    with h5py.File(li_fixture / "directions_2d.h5", "r") as f:
        for i, w in enumerate(weights):
            d = torch.from_numpy(f["xdirection"][str(i)][()])
            if w.ndim >= 2:
                torch.testing.assert_close(
                    params.filter_norms(d), params.filter_norms(w), rtol=1e-4, atol=1e-6
                )
            else:
                assert torch.count_nonzero(d) == 0


def test_every_config_direction_name_has_a_builder() -> None:
    from landscape.config import DIRECTION_NAMES
    from landscape.directions import REGISTRY

    assert set(DIRECTION_NAMES) == set(REGISTRY)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("family", ["filter-norm", "qr-orthogonal"])
def test_directions_do_not_replay_the_initialization_stream(
    tmp_path: Path, tiny_npz: Path, family: str, seed: int
) -> None:
    """Without --checkpoint the model is initialized after torch.manual_seed(seed); a direction
    drawn from torch's own stream for that seed replayed those draws (cos(d1, θ) = -0.35 on this
    MLP). From the derived stream it is as unrelated to θ as any random direction: |cos| about
    1/sqrt(4,672 moved weights) = 0.015. Every repeat records how its stream came from its seed."""
    out = tmp_path / "s.h5"
    result = CliRunner().invoke(main, [
        "compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg",
        "num_classes=3", "--data", f"npz:{tiny_npz}", "--direction", family, "--seed", str(seed),
        "--repeat", "2", "--x=-1:1:3", "--y=-1:1:3", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        for group in (f["directions"], f["repeats/1/directions"]):
            assert abs(group.attrs["cos_theta_x"]) < 0.05, group.attrs["cos_theta_x"]
            assert abs(group.attrs["cos_theta_y"]) < 0.05, group.attrs["cos_theta_y"]
            assert group.attrs["seed_derivation"] == (
                "int.from_bytes(sha256(b'landscape.directions:%d' % seed).digest()[:8], 'big')"
            )
