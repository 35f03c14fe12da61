"""``landscape curvature``: the extreme eigenvalues of the Hessian over a surface's plane.

Li et al. (2018, §6 and Fig. 7) map the principal curvatures of the loss over the plane of a
2-D surface: at each point ``p = θ + a·d1 + b·d2`` of a coarse grid, the largest and smallest
eigenvalues of the Hessian of the loss in the full parameter space,

    L(w) = (1/N) Σ_i ℓ(f(x_i; w), y_i)        H(p) = ∇²_w L(w) at w = p        (n × n, never formed)

and the ratio ``|λmin / λmax|``. A convex region has ``λmin ≥ 0`` or ``λmin ≈ 0`` next to ``λmax``
(ratio ≈ 0, blue in their figure); a ratio well above 0 means significant negative curvature
(yellow), i.e. the surface's convex look in the plane hides non-convexity in other directions.

Everything is rebuilt from the surface file: its stored config gives the model, checkpoint, data
and loss (read as data: a spec in it that runs code must be given again, ``landscape.trust``),
its ``/directions`` the plane, and the checkpoint is checked against the file's weights hash.
The Hessian is taken over a seeded subset of ``samples`` of the surface's own samples, in eval
mode (BatchNorm uses the checkpoint's statistics, as ``--bn eval`` surfaces do), with respect to
every parameter (``ignore="none"``) or, as the reference code does, the tensors with filters only
(``ignore="biasbn"``; the others stay at the point). Buffers move only where the surface's
directions move them.

Eigenvalues come from Hessian-vector products (``directions.hessian.HessianOperator``, double
backward) fed to ``scipy.sparse.linalg.eigsh`` (Lanczos), two runs per point:

    λmax = top eigenvalue of H                             (which="LA", relative tolerance ``tol``)
    λmin = λmax − μ,  μ = top eigenvalue of S = λmax·I − H  (S ⪰ 0, its top is λmax − λmin)

Lanczos on S builds the same Krylov space as on H (K(H − sI, v) = K(H, v)), so this is the
bottom of H's spectrum; the shift only changes the stopping rule. eigsh stops when a residual is
below ``tol·|eigenvalue|``: asked for λmin of H directly, that bound is ``tol·|λmin|``, which is
out of reach of float32 products when λmin ≈ 0 (the convex regions of interest); on S it is
``tol·(λmax − λmin)``, so ``λmin / λmax`` comes out to about ``tol`` absolute. The start vector is
``N(0, I)`` seeded with ``seed``, so a point gives the same numbers on every run. A Hessian of at
most ``DENSE_MAX`` parameters is assembled from n products instead (one Lanczos restart costs
about as many).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, LinearOperator, eigsh

from landscape import grid, params
from landscape._files import MemoryFile, MemoryOutput, Output, result_file
from landscape.config import (
    CURVATURE_GRID_POINTS,
    IGNORE_CHOICES,
    ComputeConfig,
    CurvatureSpec,
    GridSpec,
)
from landscape.data import EvalData
from landscape.directions import load_directions
from landscape.directions.base import moved_names
from landscape.directions.hessian import MAX_RESTARTS, HessianOperator
from landscape.engine import eval_mode
from landscape.errors import CheckpointError, ConfigError, DirectionError, SurfaceFileError
from landscape.losses import get_loss
from landscape.runs.surface import ProgressFactory
from landscape.session import Session, centre_checkpoint, weights_sha256
from landscape.store import read_surface, stored_config
from landscape.store.codec import parsed as _json
from landscape.store.curvature import CurvatureHeader, CurvatureStore, PointCurvature
from landscape.store.values import SurfaceValues
from landscape.trust import from_stored

SEED = 0  # seeds eigsh's start vector
DENSE_MAX = 20  # up to this many parameters the Hessian is assembled and diagonalized

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class CurvatureResult:
    path: str | MemoryFile  # a MemoryFile when the map was kept in memory
    total: int
    computed: int  # points computed by this run
    resumed: bool
    failed: int  # points stored as NaN (no convergence, or a non-finite loss)
    hvps: int  # Hessian-vector products spent by this run
    seconds: float
    device: str


def default_out(surface: str | Path) -> Path:
    """``<stem>_curvature.h5`` beside the surface file."""
    path = Path(surface)
    return path.with_name(f"{path.stem}_curvature.h5")


@dataclass
class Plane:
    """A run's inputs, loaded and checked: the model at θ, the plane, the Hessian's samples."""

    session: Session
    vectors: list[dict[str, torch.Tensor]]  # d1 (and d2), on the device
    names: list[str]  # the parameters the Hessian is taken over
    batches: list[Batch]  # the Hessian's samples, on the device
    loss_fn: LossFn
    header: CurvatureHeader  # the output file's grid, settings and provenance


def run_curvature(
    spec: CurvatureSpec, *, overwrite: bool = False, progress: ProgressFactory | None = None
) -> CurvatureResult:
    """Compute (or resume) the curvature map of ``spec.surface`` into ``spec.out``.

    Everything is loaded and checked before the output file is touched, so bad input never
    harms an existing file.
    """
    return run_curvature_on(spec, None, overwrite=overwrite, progress=progress)


def run_curvature_on(
    spec: CurvatureSpec,
    session: Session | None,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    in_memory: bool = False,
) -> CurvatureResult:
    """``run_curvature`` with the surface's model and data given as a loaded ``session`` (the
    Python API's in-memory objects) instead of rebuilt from the file's config; ``None``: rebuilt.
    ``in_memory``: the map is kept in a ``MemoryFile`` (``CurvatureResult.path``), no file."""
    start = time.perf_counter()
    # the output is checked and locked before any work, and held until its last write
    output = MemoryOutput("curvature") if in_memory else Output(output_path(spec), overwrite)
    with contextlib.closing(output):
        plane = load_plane(spec, session)
        with CurvatureStore.open_for_run(output, plane.header) as store:
            pending = store.pending()
            failed_before = store.failed_count()
            total = int(np.prod(store.shape))
            bar = progress(total, total - len(pending)) if progress else None
            try:
                hvps = _compute_points(store, pending, plane, spec.tol, bar)
            finally:
                if bar is not None:
                    bar.close()
            failed = store.failed_count() - failed_before
            resumed = store.resumed
    seconds = time.perf_counter() - start
    device = str(plane.session.device)
    path = result_file(store.path).result_path
    return CurvatureResult(path, total, len(pending), resumed, failed, hvps, seconds, device)


def output_path(spec: CurvatureSpec) -> Path:
    """``spec.out``, or ``<surface stem>_curvature.h5`` beside the surface; never the surface."""
    out = Path(spec.out) if spec.out is not None else default_out(spec.surface)
    if str(out).strip() and out.resolve() == result_file(spec.surface).resolved():
        raise ConfigError("--out is the surface file itself; choose another --out")
    return out


def load_plane(spec: CurvatureSpec, session: Session | None = None) -> Plane:
    """Rebuild the surface's model, checkpoint, data, loss and plane (or take the model, data
    and loss from ``session``), checking they fit."""
    _check_spec(spec)
    source = read_source(spec.surface)
    if session is None:
        config = rebuild_config(source, spec)
        session = Session.from_config(config)
    else:  # the stored config is only read for its settings (batch size, BN policy, names)
        config = ComputeConfig.from_dict(stored_config(source))
    x, y = curvature_grid(source, spec)
    check_same_weights(source, session, config.model.checkpoint)
    check_bn(config, session)
    directions = load_directions(spec.surface, session.theta, session.centre, source.dims)
    vectors = directions.to(session.device).vectors
    session.probe(
        vectors, config.data.batch_size, (config.model.name, config.data.name, config.eval.loss)
    )
    names = moved_names(session.theta, spec.ignore)
    data = hessian_data(config, session, spec.samples)
    settings = {
        "samples": len(data),
        "tol": float(spec.tol),
        "ignore": spec.ignore,
        "seed": SEED,
        "weights_sha256": session.weights_sha256,
        "directions_sha256": weights_sha256(_keyed(vectors)),
        "source_fingerprint": source_fingerprint(config),
    }
    provenance = {
        "source": result_file(spec.surface).identity,
        "source_created": source.attrs.get("created", ""),
        "source_config": source.attrs.get("config", ""),
        "checkpoint_sha256": session.checkpoint_sha256,
        "data": data.describe(),
        "moved_parameters": sum(session.theta[k].numel() for k in names),
        "device": str(session.device),
    }
    batches = list(data.batches(config.data.batch_size, session.device))  # read once, reused
    header = CurvatureHeader(x, y, settings, provenance)
    return Plane(session, vectors, names, batches, get_loss(config.eval.loss), header)


def _compute_points(
    store: CurvatureStore, pending: np.ndarray, plane: Plane, tol: float, bar: Any
) -> int:
    """Compute and write the pending points in order; return the Hessian-vector products spent."""
    session, h = plane.session, plane.header
    hvps = 0
    for flat in pending:
        # the point θ + a·d1 + b·d2, every other tensor (buffers included) as at θ
        state = params.combine(
            session.centre, plane.vectors, grid.point_coords(int(flat), h.x, h.y)
        )
        point = point_curvature(
            session.model,
            state,
            plane.names,
            lambda: plane.batches,
            plane.loss_fn,
            session.device,
            tol,
        )
        store.write_point(int(flat), point)
        hvps += point.hvps
        if bar is not None:
            bar.update(1)
    return hvps


def _check_spec(spec: CurvatureSpec) -> None:
    if spec.samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {spec.samples}")
    if not 0 < spec.tol < 1:
        raise ConfigError(f"--tol must be between 0 and 1 (exclusive), got {spec.tol}")
    if spec.ignore not in IGNORE_CHOICES:
        raise ConfigError(
            f"--ignore must be one of {', '.join(IGNORE_CHOICES)}; got {spec.ignore!r}"
        )


def _keyed(vectors: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Both directions in one dict (``x/<name>``, ``y/<name>``), for one hash of the plane."""
    return {f"{axis}/{k}": v for axis, d in zip("xy", vectors, strict=False) for k, v in d.items()}


# --- the source surface -------------------------------------------------------------------------


def read_source(path: str) -> SurfaceValues:
    """The surface file, which must be ours: its config is how the model is rebuilt."""
    source = read_surface(path)
    if source.source_format != "landscape" or stored_config(source) is None:
        raise SurfaceFileError(
            f"{path!r} is a Li et al. reference surface file, which holds no model or data "
            "settings; compute its surface with landscape compute (--directions DIR_FILE to keep "
            "its directions), then run curvature on that file"
        )
    return source


def rebuild_config(source: SurfaceValues, spec: CurvatureSpec) -> ComputeConfig:
    """The surface's config, at its centre checkpoint, with its directions read from the file.

    The stored config is data: a model, data or loss spec in it that runs code is refused
    unless the user gives it again or trusts the file (``landscape.trust``).
    """
    config = from_stored(ComputeConfig.from_dict(stored_config(source)), spec.given, spec.surface)
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise CheckpointError(f"--checkpoint {spec.checkpoint!r} does not exist; check the path")
    checkpoint = spec.checkpoint or centre_checkpoint(config)
    if checkpoint and not Path(checkpoint).is_file():
        raise CheckpointError(
            f"the surface's checkpoint {checkpoint!r} does not exist (a relative path is read "
            "from the current folder); pass it with --checkpoint PATH"
        )
    return replace(
        config,
        model=replace(config.model, checkpoint=checkpoint),
        direction=replace(config.direction, file=str(spec.surface)),
        eval=replace(config.eval, device=spec.device or config.eval.device),
    )


def curvature_grid(
    source: SurfaceValues, spec: CurvatureSpec
) -> tuple[np.ndarray, np.ndarray | None]:
    """The coarse grid: ``spec.x``/``spec.y``, or CURVATURE_GRID_POINTS per axis over the surface's range."""
    if source.dims == 1 and spec.y is not None:
        raise ConfigError(f"{spec.surface!r} is a 1-D surface; drop --y")
    if source.dims > 2:
        raise ConfigError(
            f"{spec.surface!r} is {source.dims}-D: curvature maps a 1-D or 2-D surface's grid; "
            "compute a 2-D surface with the same --seed (its plane is this grid's z=0 slice)"
        )

    def axis(given: str | None, coords: np.ndarray) -> str:
        return (
            given or f"{float(np.min(coords))!r}:{float(np.max(coords))!r}:{CURVATURE_GRID_POINTS}"
        )

    y = None if source.y is None else axis(spec.y, source.y)
    return grid.coordinates(GridSpec(x=axis(spec.x, source.x), y=y))


def check_same_weights(source: SurfaceValues, session: Session, checkpoint: str | None) -> None:
    """Refuse a checkpoint whose weights are not those the surface was computed at."""
    stored = _json(source.attrs.get("weights_sha256"))
    if stored:
        same, now = stored == session.weights_sha256, session.weights_sha256
    else:  # files without a weights hash: compare the checkpoint file's own hash
        stored = str(source.attrs.get("checkpoint_sha256") or "")
        same, now = stored == session.checkpoint_sha256, session.checkpoint_sha256
    if not same:
        what = f"checkpoint {checkpoint!r}" if checkpoint else "the seeded initialization"
        raise CheckpointError(
            f"{what} holds other weights than {source.path!r} was computed at "
            f"(sha256 {now[:12] or '-'} here, {stored[:12] or '-'} in the file); pass the "
            "surface's own checkpoint with --checkpoint PATH"
        )


def check_bn(config: ComputeConfig, session: Session) -> None:
    """The Hessian is taken in eval mode: a BatchNorm model's surface must be ``--bn eval``."""
    has_bn = any(k.endswith("running_mean") for k in session.centre)
    if has_bn and config.eval.bn != "eval":
        raise ConfigError(
            f"the surface was computed with --bn {config.eval.bn}, but curvature takes the Hessian "
            "with the checkpoint's BatchNorm statistics (--bn eval); compute a --bn eval surface"
        )


def hessian_data(config: ComputeConfig, session: Session, samples: int) -> EvalData:
    """The first ``samples`` of the surface's seeded permutation: a subset of its own samples."""
    n = min(samples, len(session.data))
    return session.subset(n)


def source_fingerprint(config: ComputeConfig) -> dict[str, Any]:
    """What of the surface's config fixes the curvature's values: model, data, loss, BN policy.

    Its grid, its output and where it ran do not matter; the weights and the plane are compared
    by hash (``weights_sha256``, ``directions_sha256``), not by the files' paths.
    """
    d = config.value_fingerprint()
    for key in ("grid", "direction"):
        d.pop(key, None)
    d["model"].pop("checkpoint", None)
    d["eval"] = {"loss": d["eval"]["loss"], "bn": d["eval"]["bn"]}
    return d


# --- one point ----------------------------------------------------------------------------------


def point_curvature(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    names: list[str],
    batches: Callable[[], Iterable[Batch]],
    loss_fn: LossFn,
    device: torch.device,
    tol: float = CurvatureSpec.tol,
    seed: int = SEED,
) -> PointCurvature:
    """λmin, λmax of the Hessian of the mean loss w.r.t. ``names``, at the point ``state``.

    ``state`` holds every parameter and buffer at the point. A point whose loss or Hessian is
    not finite, or where eigsh does not converge, gives NaN eigenvalues (never an error).
    """
    with eval_mode(model):
        op = HessianOperator(model, state, names, batches, loss_fn, device)
        loss = mean_loss(op, batches, loss_fn)
        if not np.isfinite(loss):
            return PointCurvature(np.nan, np.nan, loss, 0)
        try:
            lam_max, lam_min = extreme_eigenvalues(op, tol, seed)
        except (ArpackError, DirectionError):  # no convergence, or a non-finite product
            lam_max = lam_min = np.nan
    return PointCurvature(lam_min, lam_max, loss, op.products)


def mean_loss(
    op: HessianOperator, batches: Callable[[], Iterable[Batch]], loss_fn: LossFn
) -> float:
    """The exact mean loss over the samples at the operator's point (float64 sum)."""
    total = 0.0
    with torch.no_grad():
        for x, y in batches():
            total += float(loss_fn(op.forward(x), y).double().sum())
    return total / op.samples


def extreme_eigenvalues(op: HessianOperator, tol: float, seed: int) -> tuple[float, float]:
    """``(λmax, λmin)`` of the operator's Hessian (see the module docstring for the method)."""
    if op.n <= DENSE_MAX:
        h = np.stack([op.matvec(e) for e in np.eye(op.n)], axis=1)
        w = np.linalg.eigvalsh((h + h.T) / 2)  # ascending
        return float(w[-1]), float(w[0])
    v0 = np.random.default_rng(seed).standard_normal(op.n)
    lam_max = _top_eigenvalue(op.n, op.matvec, tol, v0)
    mu = _top_eigenvalue(op.n, lambda v: lam_max * v - op.matvec(v), tol, v0)
    return lam_max, lam_max - mu


def _top_eigenvalue(
    n: int, matvec: Callable[[np.ndarray], np.ndarray], tol: float, v0: np.ndarray
) -> float:
    linear = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    values = eigsh(
        linear, k=1, which="LA", tol=tol, v0=v0, maxiter=MAX_RESTARTS, return_eigenvectors=False
    )
    return float(values[0])
