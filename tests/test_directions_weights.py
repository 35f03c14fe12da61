"""qr-orthogonal, zca and pca directions (DESIGN §3) against oracles written from the formulas.

The oracles use numpy only (np.linalg.qr, np.linalg.svd, and for zca the explicit Σ^(-1/2) from
np.linalg.eigh of the m × m covariance), on a tiny θ: a conv weight, a linear weight, a weight with
more filters than half its fan-in (qr's per-filter branch), and biases / a BN weight.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape import params
from landscape.cli import main
from landscape.config import DirectionSpec
from landscape.directions import build_directions, summarize
from landscape.errors import DirectionError
from landscape.store import read_surface

FAMILIES = ["qr-orthogonal", "zca", "pca"]


def tiny_theta() -> OrderedDict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return OrderedDict(
        [
            ("conv.weight", torch.randn(4, 3, 3, 3, generator=g)),  # (4, 27): qr joint
            ("conv.bias", torch.randn(4, generator=g)),
            ("bn.weight", torch.rand(4, generator=g) + 0.5),
            ("fc.weight", torch.randn(5, 36, generator=g)),  # (5, 36): qr joint
            ("fc.bias", torch.randn(5, generator=g)),
            ("wide.weight", torch.randn(6, 4, generator=g)),  # 2·6 > 4: qr per filter
        ]
    )


def build(name: str, theta=None, count: int = 2, **spec):
    theta = tiny_theta() if theta is None else theta
    return build_directions(theta, DirectionSpec(name=name, **spec), count)


# --- oracles, from DESIGN §3 ----------------------------------------------------------------------


def as_matrix(w: np.ndarray) -> np.ndarray:
    return w.reshape(w.shape[0], -1) if w.ndim >= 2 else w.reshape(1, -1)


def scale(d: np.ndarray, w: np.ndarray, norm: str) -> np.ndarray:
    """(n, m) rows → per filter ‖w_i‖/‖d_i‖ (filter), whole tensor (layer), as is (none)."""
    if norm == "filter":
        return d * (np.linalg.norm(w, axis=1) / (np.linalg.norm(d, axis=1) + 1e-10))[:, None]
    if norm == "layer":
        return d * np.linalg.norm(w) / (np.linalg.norm(d) + 1e-10)
    return d


def oracle(name: str, theta, seed: int, ignore: str, norm: str) -> list[dict[str, np.ndarray]]:
    # G1 for every tensor in order, then G2, from the generator seeded with the first 8 bytes
    # (big-endian) of sha256("landscape.directions:<seed>")
    digest = hashlib.sha256(f"landscape.directions:{seed}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big"))
    gauss = [{k: torch.randn(w.shape, generator=gen).double().numpy() for k, w in theta.items()}]
    gauss.append(
        {k: torch.randn(w.shape, generator=gen).double().numpy() for k, w in theta.items()}
    )
    out: list[dict[str, np.ndarray]] = [{}, {}]
    for k, t in theta.items():
        w = as_matrix(t.double().numpy())
        if t.ndim <= 1 and ignore == "biasbn":
            pair = [np.zeros_like(w), np.zeros_like(w)]
        elif name == "qr-orthogonal":
            pair = oracle_qr(as_matrix(gauss[0][k]), as_matrix(gauss[1][k]))
        elif name == "zca":
            pair = oracle_zca(w)
        else:
            pair = oracle_pca(w)
        for o, d in zip(out, pair, strict=True):
            o[k] = scale(d, w, norm).reshape(t.shape)
    return out


def qr_pos(a: np.ndarray) -> np.ndarray:
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))  # the convention diag(R) > 0


def oracle_qr(g1: np.ndarray, g2: np.ndarray) -> list[np.ndarray]:
    n, m = g1.shape
    if 2 * n <= m:
        q = qr_pos(np.concatenate([g1.T, g2.T], axis=1))  # (m, 2n)
        return [q[:, :n].T, q[:, n:].T]
    qs = [qr_pos(np.stack([g1[i], g2[i]], axis=1)) for i in range(n)]  # each (m, 2)
    return [np.stack([q[:, 0] for q in qs]), np.stack([q[:, 1] for q in qs])]


def inv_sqrt(sigma: np.ndarray) -> np.ndarray:
    eps = 1e-5 * np.trace(sigma) / len(sigma)
    lam, v = np.linalg.eigh(sigma)
    return v @ np.diag(1 / np.sqrt(lam + eps)) @ v.T


def oracle_zca(w: np.ndarray) -> list[np.ndarray]:
    n, m = w.shape
    wc = w - w.mean(axis=0, keepdims=True)
    d1 = wc @ inv_sqrt(wc.T @ wc / n)  # filters as samples, Σ is m × m
    wr = w - w.mean(axis=1, keepdims=True)
    d2 = inv_sqrt(wr @ wr.T / m) @ wr  # columns as samples, Σ' is n × n
    for i in range(n):
        d2[i] -= (d2[i] @ d1[i]) / (d1[i] @ d1[i]) * d1[i]
    return [d1, d2]


def oracle_pca(w: np.ndarray) -> list[np.ndarray]:
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    second = s[1] * np.outer(u[:, 1], vt[1]) if len(s) > 1 else np.zeros_like(w)
    return [s[0] * np.outer(u[:, 0], vt[0]), second]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("ignore", ["biasbn", "none"])
@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_matches_oracle(name: str, ignore: str, norm: str) -> None:
    theta = tiny_theta()
    if name == "zca" and ignore == "none":
        # a 1-D tensor is one filter: its centred W_c is zero, so d1 is zero there (documented);
        # the oracle's projection would divide by ‖d1[i]‖ = 0, so compare the weights only
        theta = OrderedDict((k, v) for k, v in theta.items() if v.ndim >= 2)
    ds = build(name, theta, seed=7, ignore=ignore, norm=norm)
    want = oracle(name, theta, 7, ignore, norm)
    for got, exp in zip(ds.vectors, want, strict=True):
        assert list(got) == list(theta)
        for k in theta:
            assert got[k].dtype == torch.float32 and got[k].device.type == "cpu"
            np.testing.assert_allclose(got[k].numpy(), exp[k], rtol=1e-4, atol=1e-5, err_msg=k)


# --- properties from the definitions -------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("ignore", ["biasbn", "none"])
def test_pair_is_orthogonal_globally_and_per_filter(name: str, ignore: str) -> None:
    theta = tiny_theta()
    d1, d2 = build(name, ignore=ignore).vectors
    assert abs(params.cosine(d1, d2)) < 1e-6
    for k in theta:
        a, b = as_matrix(d1[k].double().numpy()), as_matrix(d2[k].double().numpy())
        dots = np.abs((a * b).sum(1))
        assert (dots <= 1e-6 * np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).all(), k


@pytest.mark.parametrize("name", FAMILIES)
def test_filter_norms_equal_weight_filter_norms_and_biasbn_is_zero(name: str) -> None:
    theta = tiny_theta()
    for d in build(name).vectors:
        for k, w in theta.items():
            if w.ndim >= 2:
                torch.testing.assert_close(
                    params.filter_norms(d[k]), params.filter_norms(w), rtol=1e-5, atol=0
                )
            else:
                assert torch.count_nonzero(d[k]) == 0, k


def test_qr_rows_are_orthonormal_before_scaling() -> None:
    d1, d2 = build("qr-orthogonal", norm="none").vectors
    joint = torch.cat([d1["fc.weight"], d2["fc.weight"]]).double()  # 2·5 ≤ 36: one QR
    torch.testing.assert_close(
        joint @ joint.T, torch.eye(10, dtype=torch.float64), atol=1e-6, rtol=0
    )
    a, b = d1["wide.weight"].double(), d2["wide.weight"].double()  # per filter
    torch.testing.assert_close((a * a).sum(1), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(
        (a * b).sum(1), torch.zeros(6, dtype=torch.float64), atol=1e-7, rtol=0
    )


def test_qr_records_branches_and_one_direction_is_filter_norm() -> None:
    attrs = build("qr-orthogonal").attrs
    assert (attrs["qr_joint_tensors"], attrs["qr_per_filter_tensors"]) == (2, 1)
    assert attrs["seed"] == 0
    one = build("qr-orthogonal", count=1, seed=3).vectors[0]
    fn = build("filter-norm", count=1, seed=3).vectors[0]
    for k in one:
        torch.testing.assert_close(one[k], fn[k], rtol=0, atol=0)


def test_qr_single_column_tensor_has_no_second_direction() -> None:
    theta = OrderedDict(col=torch.tensor([[2.0], [-1.0], [0.5]]), fc=tiny_theta()["fc.weight"])
    ds = build("qr-orthogonal", theta)
    d1, d2 = ds.vectors
    torch.testing.assert_close(d1["col"].abs(), theta["col"].abs())  # m == 1: d1 = ±‖w_i‖
    assert torch.count_nonzero(d2["col"]) == 0 and ds.attrs["qr_per_filter_tensors"] == 1


@pytest.mark.parametrize("name", FAMILIES)
def test_deterministic(name: str) -> None:
    a, b = build(name, seed=1), build(name, seed=1)
    for da, db in zip(a.vectors, b.vectors, strict=True):
        for k in da:
            torch.testing.assert_close(da[k], db[k], rtol=0, atol=0)


def test_qr_differs_by_seed_zca_pca_do_not_use_it() -> None:
    a, c = build("qr-orthogonal", seed=1), build("qr-orthogonal", seed=2)
    assert not torch.equal(a.vectors[0]["fc.weight"], c.vectors[0]["fc.weight"])
    for name in ("zca", "pca"):
        x, y = build(name, seed=1), build(name, seed=2)
        assert x.attrs["seed_used"] is False
        assert torch.equal(x.vectors[1]["fc.weight"], y.vectors[1]["fc.weight"])


@pytest.mark.parametrize("name", FAMILIES)
def test_built_on_cpu_whatever_the_input(name: str) -> None:
    """The same direction from a copy, from float64 weights, and (when there is one) on a GPU."""
    theta = tiny_theta()
    ref = build(name, theta, seed=5)
    copies = [OrderedDict((k, v.clone()) for k, v in theta.items())]
    if torch.cuda.is_available():
        copies.append(OrderedDict((k, v.cuda()) for k, v in theta.items()))
    for other in copies:
        got = build(name, other, seed=5)
        for dr, dg in zip(ref.vectors, got.vectors, strict=True):
            for k in dr:
                assert dg[k].device.type == "cpu" and dg[k].dtype == torch.float32
                torch.testing.assert_close(dg[k], dr[k], rtol=0, atol=0)
    for k, v in theta.items():  # the caller's tensors are untouched
        assert torch.equal(v, tiny_theta()[k])


@pytest.mark.parametrize("name", FAMILIES)
def test_zero_weight_filter_gives_zero_direction_filter(name: str) -> None:
    theta = tiny_theta()
    theta["fc.weight"][2] = 0.0
    for d in build(name, theta).vectors:
        assert float(d["fc.weight"][2].abs().max()) == 0.0


def test_pca_component_near_zero_stays_zero() -> None:
    """Orthogonal filters: filter 0 lies along v_1 only, so its d2 filter is 0, not round-off
    scaled up to the filter's norm."""
    rot = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0)))[0]
    theta = OrderedDict(w=torch.diag(torch.tensor([3.0, 2.0, 1.0])) @ rot[:3])  # (3, 5)
    d1, d2 = build("pca", theta).vectors
    assert float(d1["w"][1:].abs().max()) == 0.0 and float(d2["w"][[0, 2]].abs().max()) == 0.0
    torch.testing.assert_close(d1["w"][0].abs(), theta["w"][0].abs())


def test_pca_explained_variance_and_rank_one() -> None:
    theta = tiny_theta()
    ds = build("pca", theta)
    ev = ds.attrs["pca_explained_variance"]
    assert set(ev) == {"conv.weight", "fc.weight", "wide.weight"}
    s = np.linalg.svd(theta["fc.weight"].double().numpy(), compute_uv=False)
    np.testing.assert_allclose(ev["fc.weight"], (s[:2] ** 2) / (s**2).sum(), rtol=1e-9)
    total = ds.attrs["pca_explained_variance_total"]
    assert 0 < total[1] <= total[0] < 1
    json.dumps(ds.attrs)  # stored as JSON in the surface file
    # a rank-1 tensor (one output unit) has no second component: d2 is zero there ...
    theta["head.weight"] = torch.randn(1, 7)
    d2 = build("pca", theta).vectors[1]
    assert torch.count_nonzero(d2["head.weight"]) == 0
    # ... and a model made only of such tensors has no d2 at all
    with pytest.raises(DirectionError, match="rank < 2"):
        build("pca", OrderedDict(head=torch.randn(1, 7)))


def test_zca_records_eps_and_refuses_identical_filters() -> None:
    theta = tiny_theta()
    attrs = build("zca", theta).attrs
    assert "1e-5" in attrs["zca_eps_rule"]
    w = theta["fc.weight"].double()
    wc = w - w.mean(0)
    assert attrs["zca_eps"]["fc.weight"][0] == pytest.approx(1e-5 * float((wc**2).sum()) / 5 / 36)
    same = OrderedDict(w=torch.randn(1, 6).repeat(4, 1))  # symmetric net: W_c = 0
    with pytest.raises(DirectionError, match=r"x direction is zero.*identical filters"):
        build("zca", same)


@pytest.mark.parametrize("name", FAMILIES)
def test_degenerate_without_weight_matrices(name: str) -> None:
    with pytest.raises(DirectionError, match="zero on every tensor"):
        build(name, OrderedDict(b=torch.ones(3)), count=1)


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_compute_cli(name: str, tmp_path: Path, tiny_npz: Path) -> None:
    """The built-in mlp at its seeded initialization: (64, 6) and (64, 64) take qr's per-filter
    QR, (3, 64) the joint one."""
    out = tmp_path / "s.h5"
    args = ["compute", "--model", "mlp", "--model-arg", "in_features=6"]
    args += ["--model-arg", "num_classes=3", "--data", f"npz:{tiny_npz}", "--direction", name]
    result = CliRunner().invoke(
        main, [*args, "--x=-1:1:3", "--y=-1:1:3", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    s = read_surface(out)
    assert s.done.all() and np.isfinite(s.values["train_loss"]).all()
    assert s.direction_attrs["method"] == name
    assert abs(s.direction_attrs["cosine"]) < 1e-6
    assert s.direction_attrs["norm_x"] == pytest.approx(s.direction_attrs["norm_y"], rel=1e-5)
    attrs = s.direction_attrs
    if name == "qr-orthogonal":
        assert (attrs["qr_joint_tensors"], attrs["qr_per_filter_tensors"]) == (1, 2)
    elif name == "pca":
        assert len(json.loads(attrs["pca_explained_variance"])) == 3
    else:
        assert "trace(Sigma)" in attrs["zca_eps_rule"]


def test_summary_cosine_is_zero() -> None:
    for name in FAMILIES:
        assert abs(summarize(build(name))["cosine"]) < 1e-6


# --- alignment with the weights ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["zca", "pca"])
def test_orthogonal_to_weights_removes_each_filters_component(name: str) -> None:
    theta = tiny_theta()
    ds = build(name, theta, orthogonal_to_weights=True)
    for k, w in theta.items():
        if w.ndim < 2:
            continue
        rows = w.reshape(w.shape[0], -1).double()
        d1, d2 = (d[k].reshape(w.shape[0], -1).double() for d in ds.vectors)
        for d in (d1, d2):
            np.testing.assert_allclose((d * rows).sum(1), 0.0, atol=1e-5)  # ⊥ each own filter
            live = d.norm(dim=1) > 0
            np.testing.assert_allclose(d.norm(dim=1)[live], rows.norm(dim=1)[live], rtol=1e-5)
        np.testing.assert_allclose((d1 * d2).sum(1), 0.0, atol=1e-5)  # the pair still ⊥
    assert ds.attrs["orthogonal_to_weights"] is True


BN_ALIGNED = """
import torch
def make():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    with torch.no_grad():  # weights dominated by one rank-1 pattern, as trained layers often are
        for layer in (net[0], net[3]):
            u, v = torch.randn(layer.weight.shape[0]), torch.randn(layer.weight.shape[1])
            layer.weight.copy_(torch.outer(u, v) + 0.05 * torch.randn_like(layer.weight))
    return net
"""


def test_info_warns_when_a_direction_is_aligned_with_the_weights(
    tmp_path: Path, tiny_npz: Path
) -> None:
    (tmp_path / "bn.py").write_text(BN_ALIGNED)
    base = ["compute", "--model", f"{tmp_path / 'bn.py'}:make", "--data", f"npz:{tiny_npz}",
            "--x=-1:1:3", "--y=-1:1:3", "--quiet"]  # fmt: skip

    def cos_and_info(out: str, *extra: str) -> tuple[dict, str, str]:
        result = CliRunner().invoke(main, [*base, "--out", str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        text = CliRunner().invoke(main, ["info", str(tmp_path / out)]).stdout
        return read_surface(tmp_path / out).direction_attrs, text, result.stderr

    attrs, text, err = cos_and_info("pca.h5", "--direction", "pca")
    assert attrs["cos_theta_x"] > 0.9  # d1 ≈ the weights' own rank-1 part
    assert "cos(d1,θ)=0.9" in text and "d1 (cos 0.9" in text
    assert "largely aligned with the weights θ" in text and "--orthogonal-to-weights" in text
    assert "largely aligned" in err  # compute says so too
    attrs, text, _ = cos_and_info("pca-orth.h5", "--direction", "pca", "--orthogonal-to-weights")
    assert abs(attrs["cos_theta_x"]) < 1e-5 and abs(attrs["cos_theta_y"]) < 1e-5
    assert "largely aligned" not in text
    attrs, text, _ = cos_and_info("fn.h5", "--direction", "filter-norm")
    assert abs(attrs["cos_theta_x"]) < 0.3 and "largely aligned" not in text
    result = CliRunner().invoke(
        main, [*base, "--out", str(tmp_path / "x.h5"), "--orthogonal-to-weights"]
    )
    assert result.exit_code == 1 and "derived from the weights (zca, pca)" in result.stderr


def test_paths_between_networks_are_not_warned_about_their_alignment() -> None:
    """B − A between two networks trained from one initialization points along θ by nature:
    an interpolation or a curve is what it is, a chosen family is warned."""
    from landscape.directions.base import alignment_warning

    aligned = {"cos_theta_x": 0.93, "cos_theta_y": 0.1}
    assert alignment_warning({"method": "pca", **aligned}) is not None
    assert alignment_warning({"method": "interpolate", **aligned}) is None
    assert alignment_warning({"method": "curve", **aligned}) is None
