"""Principal directions of a training trajectory (Li et al. 2018, §7).

Given checkpoints ``θ_0 … θ_n`` saved during training, in order, with the final ``θ_n`` as the
centre, stack the differences to the centre as the rows of a matrix::

    M[i] = flatten(θ_i − θ_n)        i = 0 … n    (shape (n+1, P); the last row is zero)

over the tensors a direction may move (``ignore=biasbn``: those with filters, as the reference
code does; ``ignore=none``: every parameter). Centre the columns (``M_c = M − mean row``, as PCA
and the reference code do) and take the top right singular vectors of ``M_c`` as unit-norm
directions ``d1, d2`` (zero on every other tensor). ``norm`` does not apply: the directions are
unit vectors and the grid is in parameter units.

The final checkpoint's zero row is part of ``M``, exactly as in the reference code (its PCA is
fitted on every saved model, the last one included). Since PCA is translation invariant this is
the PCA of the checkpoint positions themselves, and ``k`` principal directions need ``k + 1``
checkpoints: 2 for a 1-D curve, 3 for a plane.

``P`` may be large and ``n`` is small, so the SVD goes through the ``(n+1) × (n+1)`` Gram matrix
``G = M_c M_cᵀ = U Λ Uᵀ`` (accumulated in float64, column block by column block): the right
singular vectors are ``v_k = M_cᵀ u_k / √λ_k = Mᵀ u_k / √λ_k`` (``u_k ⊥ 1`` for ``λ_k > 0``) and
the explained variance ratios ``λ_k / Σλ``.

Sign convention (deterministic): each direction is oriented so that the first checkpoint ``θ_0``
projects to a negative coordinate, i.e. training runs towards +x, +y into the centre at the
origin. Where ``θ_0`` projects to (numerically) zero, the entry of ``d`` largest in magnitude is
made positive instead.

Every checkpoint is projected as ``(θ_i − θ_n)·d`` (the last lands on the origin) and, when the
context carries the model, data and loss, evaluated in full (parameters and buffers, eval mode)
so the path can be drawn on the surface with its losses.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch

from landscape.checkpoint_paths import Checkpoint, checkpoint_name, expand_checkpoints
from landscape.directions.base import DirectionContext, DirectionSet, moved_names
from landscape.engine import ReferenceEvaluator
from landscape.errors import DirectionError

BLOCK = 1 << 20  # columns per float64 block of the Gram products (bounds the extra memory)
RANK_TOL = 1e-10  # an eigenvalue below RANK_TOL · λ_1 counts as zero (no such component)
SIGN_TOL = 1e-9  # |x_0| below SIGN_TOL · max|x| is "zero" for the sign convention


def build_trajectory(ctx: DirectionContext) -> DirectionSet:
    paths = expand_checkpoints(ctx.spec.trajectory)
    need = ctx.count + 1
    if len(paths) < need:
        raise DirectionError(
            f"trajectory needs at least {need} checkpoints for a {ctx.count}-D surface "
            f"(got {len(paths)}); save more checkpoints during training"
        )
    names = moved_names(ctx.theta, ctx.spec.ignore)
    if not names:
        raise DirectionError(
            "trajectory: no tensor may move (no weight matrices under --ignore biasbn); "
            "use --ignore none"
        )
    rows, losses, accs = _path_rows(ctx, paths, names)
    lam, vecs, total = _principal_directions(rows, ctx.count)
    vecs = [_orient(v, rows[0]) for v in vecs]
    directions = [_unflatten(v, ctx.theta, names) for v in vecs]
    # project with the float32 directions as stored, so the path sits exactly where they put it
    coords = [_project(rows, v.to(torch.float32).double()) for v in vecs]
    trajectory: dict[str, np.ndarray] = dict(zip("xy", coords, strict=False))  # no y in 1-D
    trajectory["labels"] = np.array([checkpoint_name(p) for p in paths])
    if losses is not None:
        trajectory["loss"] = np.asarray(losses, dtype=np.float64)
        trajectory["acc"] = np.asarray(accs, dtype=np.float64)
    return DirectionSet(
        "trajectory", directions, _attrs(ctx, paths, lam, total, coords), trajectory
    )


def _path_rows(
    ctx: DirectionContext, paths: list[Checkpoint], names: list[str]
) -> tuple[torch.Tensor, list[float] | None, list[float] | None]:
    """Rows ``flatten(θ_i − θ_n)`` (float32, shape (n+1, P)) and each checkpoint's loss/accuracy.

    The last checkpoint is the centre: its state is ``ctx.state``, not read again.
    """
    centre = ctx.state
    flat_centre = _flatten(centre, names)
    load = ctx.require("load_state")
    rows = torch.empty((len(paths), flat_centre.numel()), dtype=torch.float32)
    evaluate = _checkpoint_evaluator(ctx)
    losses, accs = [], []
    for i, path in enumerate(paths):
        state = centre if i == len(paths) - 1 else load(path)
        rows[i] = (_flatten(state, names) - flat_centre).to(torch.float32)
        if evaluate is not None:
            loss, acc = evaluate(state)
            losses.append(loss)
            accs.append(acc)
    if evaluate is None:
        return rows, None, None
    return rows, losses, accs


def _flatten(state: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([state[k].detach().reshape(-1).to(torch.float64) for k in names])


def _checkpoint_evaluator(ctx: DirectionContext):
    """``state → (loss, acc)`` over ``ctx.batches()``, or None when the context has no model."""
    if ctx.model is None or ctx.batches is None or ctx.loss_fn is None:
        return None

    def evaluate(state: dict[str, torch.Tensor]) -> tuple[float, float]:
        on_device = OrderedDict((k, v.to(ctx.device)) for k, v in state.items())
        # the reference engine: functional_call, eval mode, inference mode, exact mean over samples
        evaluator = ReferenceEvaluator(ctx.model, on_device, [{}], ctx.batches, ctx.loss_fn)
        result = evaluator.evaluate((0.0,))
        return result.loss, result.acc

    return evaluate


def _principal_directions(
    rows: torch.Tensor, count: int
) -> tuple[np.ndarray, list[torch.Tensor], float]:
    """Top ``count`` eigenvalues of the centred Gram matrix, the unit right singular vectors
    (float64, shape (P,)) and the total variance ``trace(G_c)``."""
    m = rows.shape[0]
    gram = torch.zeros((m, m), dtype=torch.float64)
    for s in range(0, rows.shape[1], BLOCK):
        block = rows[:, s : s + BLOCK].double()
        gram += block @ block.T
    centring = torch.eye(m, dtype=torch.float64) - 1.0 / m  # C = I − 11ᵀ/m
    gram_c = centring @ gram @ centring  # M_c M_cᵀ with M_c = C M
    lam, u = torch.linalg.eigh(gram_c)  # ascending
    lam, u = lam.flip(0)[:count], u.flip(1)[:, :count]
    total = float(torch.trace(gram_c))
    for k in range(count):
        if not (lam[k] > 0 and lam[k] > RANK_TOL * lam[0]):
            what = "all checkpoints are identical" if k == 0 else "the checkpoints lie on a line"
            raise DirectionError(
                f"trajectory: {what} on the moved tensors, so principal direction {k + 1} is "
                "undefined; use checkpoints from further apart (or a 1-D grid)"
            )
    vecs = []
    for k in range(count):
        v = torch.zeros(rows.shape[1], dtype=torch.float64)
        for s in range(0, rows.shape[1], BLOCK):
            v[s : s + BLOCK] = rows[:, s : s + BLOCK].double().T @ u[:, k]  # Mᵀ u_k
        vecs.append(v / v.norm())  # = Mᵀ u_k / √λ_k, renormalized against rounding
    return lam.numpy(), vecs, total


def _orient(v: torch.Tensor, first_row: torch.Tensor) -> torch.Tensor:
    """Flip ``v`` so that θ_0 projects below zero; if it projects to ~0, largest |entry| > 0."""
    x0 = float(first_row.double() @ v)
    if abs(x0) > SIGN_TOL * float(first_row.double().norm()):
        return -v if x0 > 0 else v
    return -v if float(v[int(v.abs().argmax())]) < 0 else v


def _unflatten(
    v: torch.Tensor, theta: dict[str, torch.Tensor], names: list[str]
) -> OrderedDict[str, torch.Tensor]:
    """Tensors shaped like θ: slices of ``v`` on the moved tensors, zeros on every other one."""
    out = OrderedDict((k, torch.zeros_like(t, dtype=torch.float32)) for k, t in theta.items())
    offset = 0
    for k in names:
        n = theta[k].numel()
        out[k] = v[offset : offset + n].reshape(theta[k].shape).to(torch.float32)
        offset += n
    return out


def _project(rows: torch.Tensor, v: torch.Tensor) -> np.ndarray:
    """``(θ_i − θ_n)·d`` for every row, in float64."""
    out = torch.zeros(rows.shape[0], dtype=torch.float64)
    for s in range(0, rows.shape[1], BLOCK):
        out += rows[:, s : s + BLOCK].double() @ v[s : s + BLOCK]
    return out.numpy()


def _attrs(
    ctx: DirectionContext,
    paths: list[Checkpoint],
    lam: np.ndarray,
    total: float,
    coords: list[np.ndarray],
) -> dict[str, object]:
    """Explained variance, the files, and the path's extent with a grid that covers it."""
    attrs: dict[str, object] = {
        "ignore": ctx.spec.ignore,
        "explained_variance_ratio": [float(v / total) for v in lam],
        "checkpoints": len(paths),
        "files": [str(p) for p in paths],
    }
    for axis, c in zip("xy", coords, strict=False):
        lo, hi = float(c.min()), float(c.max())
        attrs[f"path_{axis}_range"] = [lo, hi]
        attrs[f"suggested_{axis}"] = suggested_axis(lo, hi)
    return attrs


def suggested_axis(lo: float, hi: float, num: int = 31, margin: float = 0.25) -> str:
    """A ``MIN:MAX:NUM`` axis covering ``[lo, hi]`` and 0 with ``margin`` of the span each side,
    about ``num`` points, with 0 one of them (the centre θ is then a grid point).

    The step is a round number (1, 2, 2.5 or 5 × 10^k) and both ends are whole multiples of it,
    so ``linspace(MIN, MAX, NUM)`` passes through 0.
    """
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    pad = margin * (hi - lo) if hi > lo else 1.0
    step = _round_step((hi - lo + 2 * pad) / (num - 1))
    first, last = math.floor((lo - pad) / step), math.ceil((hi + pad) / step)
    return f"{_text(first * step)}:{_text(last * step)}:{last - first + 1}"


def _round_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 (× 10^k) at least ``raw``."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def _text(v: float) -> str:
    return f"{v:.6g}"
