"""Benchmark: landscape's Hessian spectrum against PyHessian's algorithm (issue 26, item 4).

    python scripts/bench_hessian.py                          # mlp on 1000 digits, CPU
    python scripts/bench_hessian.py --model resnet20 --samples 200 --device cuda --json out.json

On one model (trained for ``--train-steps`` full-batch Adam steps on the samples first), one set
of samples and one device, in one run:

1. the truth: the two top eigenvalues from landscape's Lanczos at tol 1e-10, and the trace
   exactly, ``Σ_i (H e_i)_i`` from n products, up to ``EXACT_TRACE_MAX`` parameters (else from
   Hutch++ with ``--truth-products`` products, its standard error printed with it);
2. PyHessian's algorithm at its defaults, on the samples as one batch (its gradient graph built
   once and reused, its fastest mode): top-2 eigenvalues by power iteration with deflation
   (``maxIter=100, tol=1e-3``) and the Hutchinson trace (``maxIter=100, tol=1e-3``): seconds
   (graph building included), values, relative errors. ``pyhessian_algorithm`` writes both from
   their description (Yao et al., "PyHessian", 2020) on landscape's own Hessian-vector product,
   so the two sides differ by algorithm only; the ``pyhessian`` package itself runs too where it
   is installed (its 0.1 release calls ``torch.eig``, which torch 2 removed from its density);
3. landscape at eigsh tolerances 1e-2, 1e-3, 1e-4: seconds and the largest relative error of the
   two eigenvalues; "time to equal accuracy" is the first tolerance whose error is at most
   PyHessian's. The trace with Hutchinson and Hutch++ at the products PyHessian's stop rule
   spent, each with its standard error;
4. one Hessian-vector product with the gradient graphs kept (``graph="reuse"``) and rebuilt
   (``"recompute"``), seconds each (mean of ``--products``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from landscape.config import DataSpec
from landscape.data import load_data
from landscape.directions.eigen import eigenpairs
from landscape.engine import eval_mode
from landscape.models import build_model
from landscape.spectrum.operator import SpectrumOperator
from landscape.spectrum.trace import estimate_trace

TOLERANCES = (1e-2, 1e-3, 1e-4)
EXACT_TRACE_MAX = 20000  # up to this many parameters the true trace is summed from n products


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """A few full-batch Adam steps: a trained network's Hessian (a few outliers over a bulk near
    0), not an initialization's."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    model.eval()


def model_and_data(name: str, samples: int, device: torch.device):
    """A seeded model and its samples: the mlp on digits, or a ResNet-20 on synthetic CIFAR."""
    torch.manual_seed(0)
    model = build_model(name).to(device).eval()
    if name == "mlp":
        x, y = load_data(DataSpec("digits", max_samples=samples)).tensors("cpu")
    else:
        g = torch.Generator().manual_seed(0)
        x, y = (
            torch.randn(samples, 3, 32, 32, generator=g),
            torch.randint(0, 10, (samples,), generator=g),
        )
    return model, x.to(device), y.to(device)


def operator(model, x, y, graph: str) -> SpectrumOperator:
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    state = {k: v.detach() for k, v in state.items()}
    names = [k for k, _ in model.named_parameters()]

    def loss(o, t):
        return torch.nn.functional.cross_entropy(o, t, reduction="none")

    return SpectrumOperator(model, state, names, lambda: [(x, y)], loss, x.device, graph)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def truth(model, x, y, products: int) -> dict:
    with eval_mode(model):
        op = operator(model, x, y, "auto")
        eig = eigenpairs(op.matvec, op.n, 2, "top", 1e-10, 1000, 12345)  # a start of its own
        if op.n <= EXACT_TRACE_MAX:
            basis = np.zeros(op.n)
            value = 0.0
            for i in range(op.n):  # trace(H) = Σ_i e_iᵀ H e_i
                basis[i] = 1.0
                value += float(op.matvec(basis)[i])
                basis[i] = 0.0
            return {"eigenvalues": eig.values.tolist(), "trace": value, "trace_se": 0.0, "n": op.n}
        tr = estimate_trace("hutch++", op.matvec, op.n, products, 1)
    return {"eigenvalues": eig.values.tolist(), "trace": tr.value, "trace_se": tr.se, "n": op.n}


def pyhessian_side(model, x, y, true: dict) -> dict | None:
    try:
        from pyhessian import hessian as pyhessian_hessian
    except ImportError:
        return None
    criterion = torch.nn.CrossEntropyLoss()
    cuda = x.device.type == "cuda"
    comp, build = timed(lambda: pyhessian_hessian(model, criterion, data=(x, y), cuda=cuda))
    (values, _), eig_s = timed(lambda: comp.eigenvalues(maxIter=100, tol=1e-3, top_n=2))
    samples, trace_s = timed(lambda: comp.trace(maxIter=100, tol=1e-3))
    model.zero_grad(set_to_none=True)
    err = max(abs(v - t) / abs(t) for v, t in zip(values, true["eigenvalues"], strict=True))
    return {
        "build_seconds": build, "eigen_seconds": eig_s + build, "eigenvalues": values,
        "eigen_rel_error": err, "trace_seconds": trace_s + build,
        "trace": float(np.mean(samples)), "trace_products": len(samples),
        "trace_se": float(np.std(samples, ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else None,
        "trace_rel_error": abs(float(np.mean(samples)) - true["trace"]) / abs(true["trace"]),
    }  # fmt: skip


def pyhessian_algorithm(model, x, y, true: dict, max_iter: int = 100, tol: float = 1e-3) -> dict:
    """PyHessian's two estimators, as its paper and defaults describe them, on our product:

    eigenvalues: for j = 1, 2, power iteration from a Gaussian start, each iterate
    orthonormalized against the eigenvectors found before (deflation); λ = vᵀHv, v ← Hv/‖Hv‖;
    stop when |λ − λ_prev| / (|λ_prev| + 1e-6) < tol, or after ``max_iter`` products.
    trace: Hutchinson, vᵀHv for Rademacher v, averaged; stop when the running mean changes by
    less than ``tol`` relatively (same rule), or after ``max_iter`` products."""
    rng = np.random.default_rng(0)

    def eigen() -> list[float]:
        op = operator(model, x, y, "reuse")
        found: list[np.ndarray] = []
        values = []
        for _ in range(2):
            v, value = _deflated(rng.standard_normal(op.n), found), None
            for _ in range(max_iter):
                hv = op.matvec(v)
                new = float(v @ hv)
                v = _deflated(hv, found)
                if value is not None and abs(new - value) / (abs(value) + 1e-6) < tol:
                    value = new
                    break
                value = new
            found.append(v)
            values.append(value)
        return values

    def trace() -> list[float]:
        op = operator(model, x, y, "reuse")
        samples: list[float] = []
        for _ in range(max_iter):
            v = rng.choice([-1.0, 1.0], size=op.n)
            samples.append(float(v @ op.matvec(v)))
            mean, before = np.mean(samples), np.mean(samples[:-1]) if len(samples) > 1 else None
            if before is not None and abs(mean - before) / (abs(before) + 1e-6) < tol:
                break
        return samples

    with eval_mode(model):
        values, eig_s = timed(eigen)
        samples, trace_s = timed(trace)
    err = max(abs(v - t) / abs(t) for v, t in zip(values, true["eigenvalues"], strict=True))
    mean = float(np.mean(samples))
    return {
        "eigen_seconds": eig_s, "eigenvalues": values, "eigen_rel_error": err,
        "trace_seconds": trace_s, "trace": mean, "trace_products": len(samples),
        "trace_rel_error": abs(mean - true["trace"]) / abs(true["trace"]),
    }  # fmt: skip


def _deflated(v: np.ndarray, found: list[np.ndarray]) -> np.ndarray:
    """``v`` without its components along the unit vectors ``found``, normalized."""
    for u in found:
        v = v - (u @ v) * u
    return v / np.linalg.norm(v)


def landscape_side(model, x, y, true: dict, trace_products: int) -> dict:
    rows = []
    for tol in TOLERANCES:

        def run(tol=tol):
            with eval_mode(model):
                op = operator(model, x, y, "auto")
                return eigenpairs(op.matvec, op.n, 2, "top", tol, 1000, 0), op.products

        (eig, products), seconds = timed(run)
        err = max(abs(v - t) / abs(t) for v, t in zip(eig.values, true["eigenvalues"], strict=True))
        rows.append({"tol": tol, "seconds": seconds, "products": products,
                     "eigenvalues": eig.values.tolist(), "rel_error": err})  # fmt: skip
    traces = {}
    for method in ("hutchinson", "hutch++"):

        def run_trace(method=method):
            with eval_mode(model):
                op = operator(model, x, y, "auto")
                return estimate_trace(method, op.matvec, op.n, trace_products, 2)

        tr, seconds = timed(run_trace)
        traces[method] = {"trace": tr.value, "se": tr.se, "seconds": seconds, "products": tr.products,
                          "rel_error": abs(tr.value - true["trace"]) / abs(true["trace"])}  # fmt: skip
    return {"eigen": rows, "trace": traces}


def hvp_seconds(model, x, y, products: int) -> dict:
    out = {}
    v = np.random.default_rng(0).standard_normal(sum(p.numel() for p in model.parameters()))
    for graph in ("reuse", "recompute"):
        with eval_mode(model):
            op, build = timed(lambda g=graph: operator(model, x, y, g))
            op.matvec(v)  # warm-up
            _, seconds = timed(lambda op=op: [op.matvec(v) for _ in range(products)])
        out[graph] = {
            "build_seconds": build,
            "per_product": seconds / products,
            "plan": op.plan.text(),
        }
    return out


def bench(
    name: str,
    samples: int,
    device: torch.device,
    truth_products: int,
    products: int,
    train_steps: int,
) -> dict:
    """Every comparison of the module docstring on one model, printed as it goes; the figures."""
    model, x, y = model_and_data(name, samples, device)
    train(model, x, y, train_steps)
    true = truth(model, x, y, truth_products)
    print(
        f"{name} on {samples} samples ({device}), {true['n']} parameters, trained "
        f"{train_steps} steps"
    )
    print(
        f"truth: λ1, λ2 = {true['eigenvalues'][0]:.6g}, {true['eigenvalues'][1]:.6g}; trace "
        f"{true['trace']:.6g} ± {true['trace_se']:.2g} (s.e.; 0: summed exactly)"
    )
    py = pyhessian_algorithm(model, x, y, true)
    package = pyhessian_side(model, x, y, true)
    for label, side in (("PyHessian's algorithm", py), ("the pyhessian package", package)):
        if side is None:
            print("the pyhessian package: not installed; its algorithm above stands for it")
            continue
        print(
            f"{label} (one batch, graph reused): top-2 {side['eigen_seconds']:.2f} s, rel error "
            f"{side['eigen_rel_error']:.1e}; trace {side['trace']:.6g} after "
            f"{side['trace_products']} products ({side['trace_seconds']:.2f} s), rel error "
            f"{side['trace_rel_error']:.1e}"
        )
    ours = landscape_side(model, x, y, true, max(py["trace_products"], 6))
    for row in ours["eigen"]:
        print(
            f"landscape eigsh tol {row['tol']:g}: {row['seconds']:.2f} s, {row['products']} products, "
            f"rel error {row['rel_error']:.1e}"
        )
    equal = next((r for r in ours["eigen"] if r["rel_error"] <= py["eigen_rel_error"]), None)
    if equal is not None:
        print(
            f"time to PyHessian's eigenvalue accuracy: landscape {equal['seconds']:.2f} s "
            f"(tol {equal['tol']:g}) vs PyHessian's algorithm {py['eigen_seconds']:.2f} s: "
            f"ratio {py['eigen_seconds'] / equal['seconds']:.2f}x"
        )
    for method, t in ours["trace"].items():
        print(
            f"landscape {method}: {t['trace']:.6g} ± {t['se']:.2g} (s.e.) from {t['products']} "
            f"products, {t['seconds']:.2f} s, rel error {t['rel_error']:.1e}"
        )
    tight = pyhessian_algorithm(model, x, y, true, max_iter=5000, tol=1e-8)  # towards ours
    best = min(ours["eigen"], key=lambda r: r["seconds"])
    print(
        f"PyHessian's algorithm pushed (tol 1e-8, up to 5000 products): top-2 "
        f"{tight['eigen_seconds']:.2f} s, rel error {tight['eigen_rel_error']:.1e}, against "
        f"landscape's {best['seconds']:.2f} s at {best['rel_error']:.1e}"
    )
    hvp = hvp_seconds(model, x, y, products)
    print(
        f"one Hessian-vector product: graph reused {hvp['reuse']['per_product']:.4f} s, rebuilt "
        f"{hvp['recompute']['per_product']:.4f} s"
    )
    print(hvp["reuse"]["plan"])
    return {"truth": true, "pyhessian": py, "pyhessian_tight": tight,
            "pyhessian_package": package, "landscape": ours,
            "hvp": hvp, "model": name, "samples": samples, "device": str(device)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "resnet20"])
    parser.add_argument(
        "--samples", type=int, default=1000, help="samples the Hessian is over [1000]"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--truth-products", type=int, default=600, help="Hutch++ products of the true trace"
    )
    parser.add_argument("--products", type=int, default=10, help="products timed per HVP mode [10]")
    parser.add_argument("--train-steps", type=int, default=200, help="Adam steps first [200]")
    parser.add_argument("--threads", type=int, help="torch threads [torch's default]")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # this script's own process
    figures = bench(args.model, args.samples, torch.device(args.device), args.truth_products,
                    args.products, args.train_steps)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
