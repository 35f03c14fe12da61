"""``landscape hessian``: the Hessian spectrum of the loss at θ, as a command and a result.

H is the Hessian of the mean loss over a seeded subset of ``samples`` samples (model in eval
mode: BatchNorm uses its running statistics), with respect to the parameter tensors ``params``
selects (every one by default; buffers never move). From Hessian-vector products alone
(``spectrum.operator``) the run gives:

- the ``top_k`` largest and/or smallest eigenvalues with their unit eigenvectors
  (``directions.eigen``: Lanczos via eigsh);
- ``trace(H)`` by Hutchinson or Hutch++ with its standard error (``spectrum.trace``);
- the spectral density by stochastic Lanczos quadrature (``spectrum.lanczos``);
- per module (``per_layer``): the top eigenvalues and trace of its diagonal block of H.

``Spectrum`` holds the numbers with their provenance, saves and reads the spectrum file
(``store.spectrum``) and draws its figures (``plot.spectrum``).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape import params
from landscape._files import check_output
from landscape.directions.eigen import eigenpairs
from landscape.directions.hessian import unflatten_direction
from landscape.engine import eval_mode
from landscape.errors import ConfigError
from landscape.plot.spectrum import spectrum_figures, write_figures
from landscape.session import Session
from landscape.spectrum.lanczos import density, slq
from landscape.spectrum.operator import SpectrumOperator
from landscape.spectrum.settings import HessianConfig, SpectrumSettings
from landscape.spectrum.trace import estimate_trace
from landscape.store.spectrum import SpectrumData
from landscape.version import __version__


class Spectrum(SpectrumData):
    """The Hessian spectrum at θ: ``eigenvalues`` (numpy; ``ends`` says top or bottom for
    each), ``eigenvectors`` (one dict tensor name → tensor per eigenvalue, unit norm over the
    selected tensors), ``trace`` (``value``, ``se``, ``method``, ``products``) or None,
    ``density`` (``grid``, ``values``, the Lanczos ``nodes``/``weights``, ``sigma2``) or None,
    ``per_layer`` ({module: its block's ``eigenvalues``, ``trace``, ``trace_se``, ...}),
    ``settings`` and ``provenance``. ``save(path)`` / ``Spectrum.read(path)``; ``plot()``."""

    def plot(self, out_dir: str | None = None, fmt: str = "png") -> Any:
        """``{name: Figure}`` (eigenvalues, density, layers); with ``out_dir``, the figures
        are written there instead (``<stem>_<name>.png``) and their paths returned. Changes no
        matplotlib setting."""
        if out_dir is None:
            return spectrum_figures(self)
        stem = "spectrum" if self.path is None else Path(self.path).stem
        return [str(p) for p in write_figures(self, out_dir, stem, fmt)]

    def summary(self) -> list[str]:
        """A few lines for a terminal: what H is of, its eigenvalues, trace and density."""
        p = self.provenance
        lines = [
            f"Hessian of the mean {p.get('loss')} over {p.get('samples')} samples, "
            f"{p.get('parameters')} parameters ({len(p.get('tensors', []))} tensors), on "
            f"{p.get('device')}"
        ]
        for end in ("top", "bottom"):
            values = [v for v, e in zip(self.eigenvalues, self.ends, strict=True) if e == end]
            if values:
                lines.append(f"{end} eigenvalues: {', '.join(f'{v:.6g}' for v in values)}")
        if self.trace is not None:
            t, n = self.trace, p.get("parameters") or 1
            lines.append(
                f"trace ({t['method']}, {t['products']} products): {t['value']:.6g} ± "
                f"{t['se']:.3g} (s.e.); mean curvature trace/n = {t['value'] / n:.4g}"
            )
        if self.density is not None:
            runs, steps = np.asarray(self.density["nodes"]).shape
            lines.append(f"density: {steps} Lanczos steps x {runs} start(s), σ² = "
                         f"{self.density['sigma2']:.3g}")  # fmt: skip
        for name, row in self.per_layer.items():
            trace = "" if row.get("trace") is None else f", trace {row['trace']:.4g}"
            lines.append(f"  {name}: λmax {row['eigenvalues'][0]:.4g}{trace}")
        lines.append(p.get("graph_text", ""))
        lines.append(f"{p.get('hvps')} Hessian-vector products in {p.get('seconds', 0):.1f} s")
        return [line for line in lines if line]

    def __repr__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return "\n".join([f"<landscape.Spectrum{where}>", *self.summary()])


def run_hessian(config: HessianConfig, *, overwrite: bool = False) -> Spectrum:
    """Load the model, data and loss a config names, compute the spectrum, write ``config.out``
    (refused before any work when it exists and ``overwrite`` is not given)."""
    if config.out is not None:
        _check_out(config.out, overwrite)
    session = Session.from_specs(config.model, config.data, loss=config.loss, device=config.device)
    result = hessian_of(
        session, config.spectrum, model_name=config.model.name, loss_name=config.loss,
        batch_size=config.data.batch_size, checkpoint=config.model.checkpoint,
    )  # fmt: skip
    if config.out is not None:
        result.save(config.out, overwrite=overwrite)
    return result


def hessian_of(
    session: Session,
    settings: SpectrumSettings,
    *,
    model_name: str,
    loss_name: str,
    batch_size: int,
    checkpoint: str | None = None,
) -> Spectrum:
    """The spectrum of ``session``'s loss at its θ, as ``settings`` ask."""
    names = selected_tensors(list(session.theta), settings)
    data = session.subset(settings.samples) if settings.samples else session.data
    start = time.perf_counter()
    with eval_mode(session.model):
        op = SpectrumOperator(
            session.model, session.centre, names, lambda: data.batches(batch_size, session.device),
            session.loss_fn, session.device, settings.graph,
        )  # fmt: skip
        eig = eigenpairs(op.matvec, op.n, settings.top_k, settings.which, settings.tol,
                         settings.max_restarts, settings.seed)  # fmt: skip
        trace = _trace(op.matvec, op.n, settings)
        dens = _density(op.matvec, op.n, settings)
        layers = _per_layer(op, names, settings) if settings.per_layer else {}
    vectors = [_only(unflatten_direction(session.theta, names, eig.vectors[:, j]), names)
               for j in range(eig.vectors.shape[1])]  # fmt: skip
    provenance = {
        "model": model_name, "checkpoint": checkpoint,
        "checkpoint_sha256": session.checkpoint_sha256 or None,
        "weights_sha256": session.weights_sha256, "data": data.describe(), "loss": loss_name,
        "device": str(session.device), "samples": op.samples, "parameters": op.n,
        "tensors": names, "graph": op.plan.to_dict(), "graph_text": op.plan.text(),
        "hvps": op.products, "seconds": time.perf_counter() - start,
        "landscape_version": __version__, "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }  # fmt: skip
    return Spectrum(
        eig.values, eig.ends, vectors, trace, dens, layers,
        dataclasses.asdict(settings), provenance,
    )  # fmt: skip


def selected_tensors(names: list[str], settings: SpectrumSettings) -> list[str]:
    """The parameter tensors H is taken over: ``params`` globs (all when none), less ``exclude``."""
    try:
        chosen = params.select(names, list(settings.params), list(settings.exclude))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not chosen:
        raise ConfigError(
            "--exclude leaves no parameter tensor to take the Hessian over; exclude fewer"
        )
    return chosen


def module_groups(names: list[str]) -> dict[str, list[int]]:
    """Tensor indices by module (``fc1.weight`` and ``fc1.bias`` → ``fc1``), in order."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.rpartition(".")[0] or name, []).append(i)
    return groups


def _trace(matvec: Any, n: int, settings: SpectrumSettings) -> dict[str, Any] | None:
    if settings.trace == "none":
        return None
    return estimate_trace(
        settings.trace, matvec, n, settings.trace_samples, settings.seed
    ).to_dict()


def _density(matvec: Any, n: int, settings: SpectrumSettings) -> dict[str, Any] | None:
    if not settings.density:
        return None
    nodes, weights = slq(matvec, n, settings.lanczos_steps, settings.density_runs, settings.seed)
    d = density(nodes, weights, settings.sigma2, settings.density_points)
    return {"grid": d.grid, "values": d.values, "nodes": d.nodes, "weights": d.weights,
            "sigma2": d.sigma2}  # fmt: skip


def _per_layer(
    op: SpectrumOperator, names: list[str], settings: SpectrumSettings
) -> dict[str, dict[str, Any]]:
    """Each module's diagonal block of H: its top eigenvalues and trace."""
    rows = {}
    for module, block in module_groups(names).items():
        sub = op.block(block)
        eig = eigenpairs(sub.matvec, sub.n, settings.top_k, "top", settings.tol,
                         settings.max_restarts, settings.seed)  # fmt: skip
        trace = _trace(sub.matvec, sub.n, settings)
        rows[module] = {
            "tensors": [names[i] for i in block],
            "parameters": sub.n,
            "eigenvalues": [float(v) for v in eig.values],
            "trace": None if trace is None else trace["value"],
            "trace_se": None if trace is None else trace["se"],
        }
    return rows


def _only(direction: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    return {k: direction[k] for k in names}


def _check_out(out: str, overwrite: bool) -> None:
    """Refuse a bad or existing --out before the model is loaded."""
    if check_output(out).exists() and not overwrite:
        raise ConfigError(
            f"{out!r} exists; choose another --out, or pass --overwrite to replace it"
        )
