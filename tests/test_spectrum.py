"""The Hessian spectrum (landscape.hessian, `landscape hessian`) against independent oracles:
the dense Hessian of a tiny network (torch.autograd.functional.hessian on the flattened
parameters, numpy.linalg.eigh), and, needing no oracle, the mean curvature of random directions
measured from the loss alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call

import landscape
from landscape.errors import ConfigError
from landscape.spectrum.lanczos import lanczos
from landscape.spectrum.operator import SpectrumOperator
from tests.test_cli import TINY, assert_one_line_error, run


def tiny_mlp(
    features: int = 5, hidden: int = 7, classes: int = 3, seed: int = 0
) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, classes)]
    return torch.nn.Sequential(*layers).double()


def tiny_data(
    n: int, features: int = 5, classes: int = 3, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=g)


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def mean_loss(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]):
    """L(w) on the flattened parameters: the mean cross-entropy, by functional_call."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    x, y = data

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = flat.split([s.numel() for s in shapes])
        point = {k: p.view(s) for k, p, s in zip(names, parts, shapes, strict=True)}
        return torch.nn.functional.cross_entropy(functional_call(model, point, (x,)), y)

    return loss


def dense_hessian(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """The oracle: the n x n Hessian of the mean loss, by autograd, in float64."""
    return torch.autograd.functional.hessian(mean_loss(model, data), flat_params(model)).numpy()


def flat_vector(vector: dict[str, torch.Tensor], names: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(vector[k], dtype=np.float64).reshape(-1) for k in names])


@pytest.fixture(scope="module")
def mlp_case():
    model, data = tiny_mlp(), tiny_data(60)
    return model, data, dense_hessian(model, data)


def test_top_and_bottom_eigenpairs_match_the_dense_hessian(mlp_case) -> None:
    model, data, h = mlp_case
    exact, vecs = np.linalg.eigh(h)  # ascending
    s = landscape.hessian(model, data, k=3, which="extreme", tol=1e-10, trace="none", device="cpu")
    assert s.ends == ["top"] * 3 + ["bottom"] * 3
    expected = np.concatenate([exact[::-1][:3], exact[:3]])
    np.testing.assert_allclose(s.eigenvalues, expected, rtol=1e-5, atol=1e-8 * exact[-1])
    names = [k for k, _ in model.named_parameters()]
    order = [len(exact) - 1, len(exact) - 2, len(exact) - 3, 0, 1, 2]
    for vector, j in zip(s.eigenvectors, order, strict=True):
        got = flat_vector(vector, names)
        assert abs(np.linalg.norm(got) - 1) < 1e-6
        assert abs(got @ vecs[:, j]) > 1 - 1e-6  # the same vector up to sign


def test_default_tolerance_still_gives_eigenvalues_to_1e5(mlp_case) -> None:
    model, data, h = mlp_case
    exact = np.linalg.eigvalsh(h)
    s = landscape.hessian(model, data, k=2, which="bottom", trace="none", device="cpu")
    np.testing.assert_allclose(s.eigenvalues, exact[:2], rtol=1e-5)


def test_params_subset_and_per_layer_give_the_blocks_spectra(mlp_case) -> None:
    model, data, h = mlp_case
    sizes = [p.numel() for p in model.parameters()]  # 0.weight, 0.bias, 2.weight, 2.bias
    first = slice(0, sizes[0] + sizes[1])
    second = slice(first.stop, sum(sizes))
    s = landscape.hessian(
        model, data, params="0.*", k=2, trace="none", per_layer=True, tol=1e-10, device="cpu"
    )
    block = np.linalg.eigvalsh(h[first, first])
    np.testing.assert_allclose(s.eigenvalues, block[::-1][:2], rtol=1e-6)
    assert set(s.eigenvectors[0]) == {"0.weight", "0.bias"}
    assert s.provenance["parameters"] == first.stop
    assert list(s.per_layer) == ["0"]
    full = landscape.hessian(
        model, data, k=1, trace="hutch++", per_layer=True, tol=1e-10, device="cpu"
    )
    for module, part in (("0", first), ("2", second)):
        row = full.per_layer[module]
        assert row["parameters"] == part.stop - part.start
        np.testing.assert_allclose(
            row["eigenvalues"][0], np.linalg.eigvalsh(h[part, part])[-1], rtol=1e-6
        )
        assert abs(row["trace"] - np.trace(h[part, part])) <= 3 * row["trace_se"] + 1e-9


def test_hutchinson_trace_is_within_three_standard_errors(mlp_case) -> None:
    model, data, h = mlp_case
    s = landscape.hessian(model, data, k=1, trace="hutchinson", trace_samples=200, device="cpu")
    assert s.trace["method"] == "hutchinson" and s.trace["products"] == 200
    assert s.trace["se"] > 0 and abs(s.trace["value"] - np.trace(h)) <= 3 * s.trace["se"]


def test_hutchpp_beats_hutchinson_on_a_low_rank_hessian() -> None:
    # softmax regression on 4 samples: H = Σ_i (diag(p_i) − p_i p_iᵀ) ⊗ x̃_i x̃_iᵀ / N has rank
    # at most N·(C − 1) = 8 of n = 63: Hutch++'s sketch captures all of it
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 3).double()
    data = tiny_data(4, features=20)
    exact = np.trace(dense_hessian(model, data))
    plain = landscape.hessian(model, data, k=1, trace="hutchinson", trace_samples=60, device="cpu")
    sketched = landscape.hessian(model, data, k=1, trace="hutch++", trace_samples=60, device="cpu")
    for t in (plain.trace, sketched.trace):
        assert abs(t["value"] - exact) <= 3 * t["se"] + 1e-9 * exact
    assert sketched.trace["se"] < 0.01 * plain.trace["se"]
    assert abs(sketched.trace["value"] - exact) < 1e-8 * exact


def test_slq_density_integrates_to_one_and_its_mean_is_trace_over_n(mlp_case) -> None:
    model, data, h = mlp_case
    n = h.shape[0]
    s = landscape.hessian(
        model, data, k=1, trace="none", density=True, lanczos_steps=20, density_runs=30,
        density_points=4000, device="cpu",
    )  # fmt: skip
    d = s.density
    assert abs(np.trapezoid(d["values"], d["grid"]) - 1) < 1e-3
    assert d["grid"][0] < np.linalg.eigvalsh(h)[0] and d["grid"][-1] > np.linalg.eigvalsh(h)[-1]
    per_run = np.nansum(d["nodes"] * d["weights"], axis=1)  # each start's qᵀHq
    first_moment = np.trapezoid(d["grid"] * d["values"], d["grid"])
    np.testing.assert_allclose(first_moment, per_run.mean(), rtol=1e-3)
    se = per_run.std(ddof=1) / np.sqrt(len(per_run))
    assert abs(per_run.mean() - np.trace(h) / n) <= 3 * se


def test_lanczos_with_full_steps_recovers_every_eigenvalue() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 30))
    a = a + a.T
    alpha, beta = lanczos(lambda v: a @ v, rng.standard_normal(30), 30)
    t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    np.testing.assert_allclose(np.linalg.eigvalsh(t), np.linalg.eigvalsh(a), atol=1e-9)


def test_graph_reuse_gives_the_recomputed_products() -> None:
    model, data = tiny_mlp(), tiny_data(300)  # three chunks of at most 128 samples
    h = dense_hessian(model, data)
    names = [k for k, _ in model.named_parameters()]
    state = {k: v.detach() for k, v in model.state_dict().items()}
    v = np.random.default_rng(0).standard_normal(h.shape[0])
    products = {}
    for mode in ("reuse", "recompute"):
        op = SpectrumOperator(
            model, state, names, lambda: [data], lambda o, t: torch.nn.functional.cross_entropy(
                o, t, reduction="none"), torch.device("cpu"), mode,
        )  # fmt: skip
        assert op.plan.mode == mode and op.plan.chunks == 3
        assert (op.graphs is not None) == (mode == "reuse")
        products[mode] = [op.matvec(v), op.matvec(2 * v)]  # reused graphs stay valid
    np.testing.assert_allclose(products["reuse"][0], h @ v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(products["reuse"][1], 2 * (h @ v), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        products["reuse"][0], products["recompute"][0], rtol=1e-12, atol=1e-14
    )


def test_auto_keeps_graphs_that_fit_and_says_so(mlp_case) -> None:
    model, data, _ = mlp_case
    s = landscape.hessian(model, data, k=1, trace="none", device="cpu")
    plan = s.provenance["graph"]
    assert plan["asked"] == "auto" and plan["mode"] == "reuse" and plan["chunks"] == 1
    assert "reuse (they fit)" in s.provenance["graph_text"]


def test_auto_rebuilds_graphs_that_do_not_fit(mlp_case, monkeypatch) -> None:
    import landscape.spectrum.operator as operator

    monkeypatch.setattr(operator, "GRAPH_SHARE", 1e-12)  # no graph fits in so little
    model, data, h = mlp_case
    s = landscape.hessian(model, data, k=1, trace="none", tol=1e-10, device="cpu")
    assert s.provenance["graph"]["mode"] == "recompute"
    assert "recompute (they do not fit)" in s.provenance["graph_text"]
    np.testing.assert_allclose(s.eigenvalues[0], np.linalg.eigvalsh(h)[-1], rtol=1e-8)


def test_random_directions_mean_curvature_is_trace_over_n(mlp_case) -> None:
    """No oracle: for d uniform on the unit sphere E[dᵀHd] = trace(H)/n; dᵀHd is measured from
    the loss alone, (L(θ + εd) − 2L(θ) + L(θ − εd)) / ε², over many Gaussian directions."""
    model, data, _ = mlp_case
    loss, theta = mean_loss(model, data), flat_params(model)
    rng = np.random.default_rng(3)
    eps, centre = 1e-3, float(loss(theta))
    curvatures = []
    for _ in range(400):
        d = torch.from_numpy(rng.standard_normal(theta.numel()))
        d /= d.norm()
        curvatures.append(
            (float(loss(theta + eps * d)) - 2 * centre + float(loss(theta - eps * d))) / eps**2
        )
    mean, se = np.mean(curvatures), np.std(curvatures, ddof=1) / np.sqrt(len(curvatures))
    s = landscape.hessian(model, data, k=1, trace="hutchinson", trace_samples=400, device="cpu")
    n = theta.numel()
    combined = np.hypot(se, s.trace["se"] / n)
    assert abs(mean - s.trace["value"] / n) <= 3 * combined


def test_save_read_round_trip_and_no_clobbering(tmp_path: Path, mlp_case) -> None:
    model, data, _ = mlp_case
    s = landscape.hessian(model, data, k=2, trace="hutch++", trace_samples=12, density=True,
                          lanczos_steps=8, density_points=200, per_layer=True, device="cpu")  # fmt: skip
    path = tmp_path / "spectrum.h5"
    s.save(path)
    back = landscape.Spectrum.read(path)
    np.testing.assert_array_equal(back.eigenvalues, s.eigenvalues)
    assert back.ends == s.ends and back.trace == s.trace and back.per_layer == s.per_layer
    np.testing.assert_allclose(
        back.eigenvectors[1]["2.weight"], s.eigenvectors[1]["2.weight"].numpy(), rtol=1e-6
    )
    np.testing.assert_array_equal(back.density["values"], s.density["values"])
    assert (
        back.settings["top_k"] == 2
        and back.provenance["weights_sha256"] == s.provenance["weights_sha256"]
    )
    assert "top eigenvalues" in repr(back)
    with pytest.raises(ConfigError, match="exists"):
        s.save(path)
    s.save(path, overwrite=True)
    link = tmp_path / "link.h5"
    link.symlink_to(tmp_path / "elsewhere.h5")
    with pytest.raises(ConfigError, match="symbolic link"):
        s.save(link)
    assert not (tmp_path / "elsewhere.h5").exists()
    figures = back.plot()
    assert set(figures) == {"eigenvalues", "density", "layers"}


def test_cli_hessian_as_a_subprocess(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    out, plots = tmp_path / "spectrum.h5", tmp_path / "plots"
    args = [*TINY, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}", "--top-k", "2",
            "--trace", "hutch++", "--trace-samples", "30", "--density", "--lanczos-steps", "20",
            "--per-layer", "--out", str(out), "--plot", str(plots)]  # fmt: skip
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "landscape", "hessian", *args], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "top eigenvalues:" in done.stdout and "trace (hutch++, 30 products)" in done.stdout
    s = landscape.Spectrum.read(out)
    assert s.provenance["samples"] == 40 and len(s.eigenvalues) == 2
    assert sorted(p.name for p in plots.iterdir()) == [
        "spectrum_density.png", "spectrum_eigenvalues.png", "spectrum_layers.png"
    ]  # fmt: skip
    code, text, _ = run("info", str(out))
    assert code == 0 and "top eigenvalues:" in text and "gradient graphs:" in text
    # the same numbers as the API on the same weights and data
    from landscape.models import build_model

    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    model.load_state_dict(torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"])
    arrays = np.load(tiny_npz)
    api = landscape.hessian(model, (arrays["x"], arrays["y"]), k=2, trace="none", device="cpu")
    np.testing.assert_allclose(s.eigenvalues, api.eigenvalues, rtol=1e-4)


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--params", "nothing.*"], 1, "--params 'nothing.*' matches none"),
        (["--exclude", "*"], 1, "--exclude leaves no parameter tensor"),
        (["--top-k", "0"], 2, "--top-k"),
        (["--trace", "hutch++", "--trace-samples", "4"], 1, "--trace-samples must be at least 6"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path, tiny_npz, tiny_mlp_ckpt, extra, code, fragment
) -> None:
    args = [*TINY, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
            "--out", str(tmp_path / "s.h5"), *extra]  # fmt: skip
    status, _, stderr = run("hessian", *args)
    assert_one_line_error(status, stderr, code, fragment)
    assert not (tmp_path / "s.h5").exists()


def test_cli_refuses_an_existing_output(tmp_path, tiny_npz, tiny_mlp_ckpt) -> None:
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    args = [
        *TINY,
        "--checkpoint",
        str(tiny_mlp_ckpt),
        "--data",
        f"npz:{tiny_npz}",
        "--out",
        str(out),
    ]
    status, _, stderr = run("hessian", *args, "--trace", "none", "--top-k", "1")
    assert_one_line_error(status, stderr, 1, "exists")
    assert out.read_bytes() == b"precious"


@pytest.mark.slow
def test_the_hessian_bench_reports_both_sides(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parents[1] / "scripts" / "bench_hessian.py"
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(bench), "--samples", "100", "--train-steps", "20", "--products", "2",
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads(out.read_text())
    assert row["truth"]["trace_se"] == 0.0  # summed exactly: n ≤ EXACT_TRACE_MAX
    assert [r["tol"] for r in row["landscape"]["eigen"]] == [1e-2, 1e-3, 1e-4]
    assert row["landscape"]["eigen"][-1]["rel_error"] < 1e-6
    assert set(row["landscape"]["trace"]) == {"hutchinson", "hutch++"}
    assert row["hvp"]["reuse"]["per_product"] > 0 and "reuse" in row["hvp"]["reuse"]["plan"]
