"""The settings of a Hessian-spectrum run, each default declared once (API, CLI help and file
read them from here).

Agreement with PyHessian (Yao et al. 2020) and how to ask for its settings:

- eigenvalues: PyHessian's power iteration stops after ``maxIter=100`` products per eigenvalue or
  when the eigenvalue's relative change falls below ``tol=1e-3``. Ours are Ritz values of
  implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``), stopped when each residual is below
  ``tol·|λ|`` (default ``1e-5``; a residual r bounds the eigenvalue's error by r²/gap, so 1e-3
  already gives eigenvalues to better than PyHessian's 1e-3). ``tol=1e-3`` (``--tol 1e-3``) is
  the cheap setting; ``max_restarts`` caps the work as ``maxIter`` does.
- trace: PyHessian's Hutchinson draws up to ``maxIter=100`` Rademacher vectors and stops early
  when the running mean changes by less than ``tol=1e-3`` (relatively). Ours draws exactly
  ``trace_samples=100`` and reports the standard error instead of stopping early (an early stop
  on a small change says little about the error); ``trace="hutch++"`` spends the same products
  with a lower variance when a few eigenvalues dominate.
- density: PyHessian's ``density(iter=100, n_v=1)``: 100 Lanczos steps from one Rademacher start,
  Gaussians of variance ``1e-5·max(1, λmax − λmin)`` on 10 000 grid points. Ours are the same
  defaults (``lanczos_steps=100``, ``density_runs=1``, ``sigma2=1e-5``, ``density_points=10000``),
  with full reorthogonalization (PyHessian reorthogonalizes too) and without renormalizing the
  density (its integral is 1 by construction; it is checked instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from landscape import families
from landscape.config import DataSpec, DirectionSpec, ModelSpec, check_seed
from landscape.errors import ConfigError

WHICH_CHOICES = families.EIGEN_ENDS  # as the hessian direction family's --which
TRACE_CHOICES = ("hutchinson", "hutch++", "none")
GRAPH_CHOICES = ("auto", "reuse", "recompute")


@dataclass(frozen=True)
class SpectrumSettings:
    """What to compute and how accurately.

    ``top_k``: eigenpairs at each asked end (``which``: the largest, the smallest, or both);
    ``tol``/``max_restarts``: eigsh's stopping rule. ``trace``: the estimator (``none``: no trace),
    over ``trace_samples`` Hessian-vector products. ``density``: the spectral density by SLQ,
    ``lanczos_steps`` steps from each of ``density_runs`` random starts, broadened by Gaussians of
    variance ``sigma2·max(1, λmax − λmin)`` on ``density_points`` grid points. ``per_layer``: the
    top eigenvalues and trace of each module's block of H too. ``samples``: the Hessian is that of
    the mean loss over this many samples (a seeded subset; None: all). ``graph``: keep one
    gradient graph per chunk between products (``reuse``), rebuild it per product
    (``recompute``), or let the memory plan choose (``auto``). ``params``/``exclude``: globs of the
    parameter tensors H is taken over (default: all). ``seed``: the random start vectors.
    """

    top_k: int = 5
    which: str = "top"
    tol: float = 1e-5
    max_restarts: int = 200
    trace: str = "hutchinson"
    trace_samples: int = 100
    density: bool = False
    lanczos_steps: int = 100
    density_runs: int = 1
    sigma2: float = 1e-5
    density_points: int = 10000
    per_layer: bool = False
    samples: int | None = DirectionSpec.hessian_samples  # as the hessian directions take
    graph: str = "auto"
    params: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for key, value, low in (
            ("top_k", self.top_k, 1),
            ("max_restarts", self.max_restarts, 1),
            ("lanczos_steps", self.lanczos_steps, 1),
            ("density_runs", self.density_runs, 1),
            ("density_points", self.density_points, 2),
        ):
            if int(value) < low:
                raise ConfigError(f"{_flag(key)} must be at least {low}, got {value}")
        _check_choice("which", self.which, WHICH_CHOICES)
        _check_choice("trace", self.trace, TRACE_CHOICES)
        _check_choice("graph", self.graph, GRAPH_CHOICES)
        least = 6 if self.trace == "hutch++" else 2  # Hutch++: 2 residual samples for an s.e.
        if self.trace != "none" and self.trace_samples < least:
            raise ConfigError(
                f"--trace-samples must be at least {least} for {self.trace} (a standard error "
                f"needs it), got {self.trace_samples}"
            )
        if not 0 < self.tol < 1 or not self.sigma2 > 0:
            raise ConfigError(
                f"--tol must be in (0, 1) and --sigma2 above 0, got {self.tol} and {self.sigma2}"
            )
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {self.samples}")
        check_seed("--seed", self.seed, low=0)


@dataclass(frozen=True)
class HessianConfig:
    """A ``landscape hessian`` run: the model (at its checkpoint), the data, the loss, the
    spectrum's settings and the file to write (``out``; None: none)."""

    model: ModelSpec
    data: DataSpec
    spectrum: SpectrumSettings = field(default_factory=SpectrumSettings)
    loss: str = "cross-entropy"
    device: str = "auto"
    out: str | None = None


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{_flag(key)} must be one of {', '.join(choices)}; got {value!r}")


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")
