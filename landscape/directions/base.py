"""What every direction family receives (a context) and returns (a DirectionSet)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from landscape import params
from landscape.config import AXIS_NAMES, WEIGHT_DERIVED, DirectionSpec
from landscape.errors import DirectionError

# How a seeded family's generator is seeded from its seed: the formula itself is recorded as the
# ``seed_derivation`` attribute of the file's ``/directions``. Files without it used LEGACY_SEED:
# ``manual_seed(seed)``, the very stream ``torch.manual_seed(seed)`` gives a network's
# initialization, so with equal seeds d1 replayed θ's own draws (cos(d1, θ) ≈ -0.35 on an MLP at
# initialization). SEED_DERIVATION hashes a domain string with the seed instead: 64 bits that no
# ``torch.manual_seed(s)`` of a user (or of the model's initialization) replays.
SEED_DERIVATION = "int.from_bytes(sha256(b'landscape.directions:%d' % seed).digest()[:8], 'big')"
LEGACY_SEED = "seed"


def direction_generator(seed: int, derivation: str = SEED_DERIVATION) -> torch.Generator:
    """The CPU generator a seeded family draws its Gaussians from, seeded by ``derivation``."""
    if derivation == LEGACY_SEED:
        return torch.Generator(device="cpu").manual_seed(seed)
    if derivation != SEED_DERIVATION:
        raise DirectionError(
            f"unknown seed derivation {derivation!r} (this landscape knows {SEED_DERIVATION!r} "
            f"and {LEGACY_SEED!r}); upgrade landscape to resume this file"
        )
    digest = hashlib.sha256(b"landscape.directions:%d" % seed).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "big"))


@dataclass
class DirectionContext:
    """Everything a builder may use. Tensors are on the CPU, float32, in parameter order.

    ``theta`` holds the centre's parameters; ``state`` its parameters and buffers (``state_dict``
    order). ``load_state(path)`` reads another checkpoint of the same architecture (trajectory,
    interpolation targets) as a CPU state dict checked name by name and shape by shape against
    ``state``. ``model``, ``batches`` and ``loss_fn`` are there for families that need the loss
    itself (hessian): ``batches()`` yields ``(x, y)`` on ``device``. ``align_target`` permutes
    an interpolation target's hidden units to match the centre (``--align``).
    """

    theta: Mapping[str, torch.Tensor]  # read-only; float32 views of the moved weights
    spec: DirectionSpec
    count: int  # 1 to config.MAX_AXES directions (only the seeded families build more than 2)
    state: OrderedDict[str, torch.Tensor] | None = None
    load_state: Callable[[str], OrderedDict[str, torch.Tensor]] | None = None
    model: torch.nn.Module | None = None
    batches: Callable[[], Any] | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # how the seeded families' generator is seeded from ``spec.seed`` (``direction_generator``):
    # a file's own derivation when its seed-kept directions are regenerated on resume
    seed_derivation: str = SEED_DERIVATION
    # ``align_target(state, method)``: a target's state permuted to match the centre and the
    # alignment's summary (interpolate --align); given by the run, which holds the data and model
    align_target: Callable[[Any, str], tuple[Any, dict[str, Any]]] | None = None

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = OrderedDict(self.theta)

    def require(self, what: str) -> Any:
        """A context member a family cannot work without (e.g. ``load_state`` for trajectory)."""
        value = getattr(self, what)
        if value is None:
            raise DirectionError(
                f"direction {self.spec.name!r} needs {what}, which this caller did not provide"
            )
        return value


@dataclass
class DirectionSet:
    """One or two directions (``vectors[0]`` is x, ``vectors[1]`` is y), each ``name → tensor``.

    A direction may cover any subset of the model's tensors (buffers too, for "states"); tensors it
    does not name stay at the centre. ``attrs`` holds the method's own figures (explained variance,
    eigenvalues, ...), stored as attributes of ``/directions``. ``trajectory`` (projected training
    path: arrays ``x``, ``y`` and ``labels``) and ``landmarks`` (named points such as interpolation
    end points: ``names``, ``x``, ``y``) are stored beside the surface and drawn on its plots.
    """

    method: str
    vectors: list[OrderedDict[str, torch.Tensor]]
    attrs: dict[str, Any] = field(default_factory=dict)
    trajectory: dict[str, np.ndarray] | None = None
    landmarks: dict[str, np.ndarray] | None = None
    # the grid point → coefficients along ``vectors`` when they are not the identity: the kind
    # of curve (``landscape.curves.chart``) a 1-D surface runs along, on two vectors
    chart: str | None = None

    def to(self, device: torch.device) -> DirectionSet:
        moved = [OrderedDict((k, v.to(device)) for k, v in d.items()) for d in self.vectors]
        return DirectionSet(
            self.method, moved, dict(self.attrs), self.trajectory, self.landmarks, self.chart
        )


def summarize(ds: DirectionSet) -> dict[str, Any]:
    """Attributes stored with the directions: method, norms, cosine, and the method's figures."""
    out: dict[str, Any] = {"method": ds.method, "count": len(ds.vectors)}
    # what d1 really moves: the tensors with a nonzero entry, and their weights (info's "moved")
    moving = [t for t in ds.vectors[0].values() if bool(t.count_nonzero())]
    out["moving_tensors"] = len(moving)
    out["moving_weights"] = sum(t.numel() for t in moving)
    out["norm_x"] = params.global_norm(ds.vectors[0])
    if len(ds.vectors) > 1:
        out["norm_y"] = params.global_norm(ds.vectors[1])
        out["cosine"] = params.cosine(ds.vectors[0], ds.vectors[1])
    for axis, d in zip(AXIS_NAMES[2:], ds.vectors[2:], strict=False):  # an n-D grid's others
        out[f"norm_{axis}"] = params.global_norm(d)
    out.update(ds.attrs)
    return out


ALIGNED = 0.3  # |cos(d, θ)| from which a direction mostly rescales the weights (info warns)


def weight_alignment(ds: DirectionSet, state: dict[str, torch.Tensor]) -> dict[str, float]:
    """``cos_theta_x`` (and ``_y``, ``_z``, ...): cos(d, θ) over the tensors each direction moves.

    A random filter-normalized direction is nearly orthogonal to θ (|cos| ~ 1/sqrt(n)); one
    derived from the weights can be largely aligned with them (zca, pca), and moving along θ
    itself only rescales the weights, which BatchNorm in eval mode turns into an exploding loss.
    """
    out = {}
    for axis, d in zip(AXIS_NAMES, ds.vectors, strict=False):
        theta = {k: state[k].detach().cpu() for k in d if k in state}
        moved = {k: v.detach().cpu() for k, v in d.items() if k in theta}
        out[f"cos_theta_{axis}"] = params.cosine(moved, theta)
    return out


def alignment_warning(attrs: dict[str, Any]) -> str | None:
    """A warning when d1 or d2 is largely aligned with the weights (|cos(d, θ)| ≥ ALIGNED);
    ``attrs`` are the directions' stored attributes (``method``, ``cos_theta_x``, ...)."""
    aligned = [
        (name, float(attrs[key]))
        for key, name in (("cos_theta_x", "d1"), ("cos_theta_y", "d2"))
        if key in attrs and np.isfinite(float(attrs[key])) and abs(float(attrs[key])) >= ALIGNED
    ]
    # the directions of an interpolation or a curve join networks (B − A, C − A): what they
    # are, not a choice a picture could be read against
    if not aligned or attrs.get("method") in ("interpolate", "curve"):
        return None
    which = " and ".join(f"{name} (cos {value:.2f})" for name, value in aligned)
    verb = "is" if len(aligned) == 1 else "are"
    fix = (
        "recompute with --orthogonal-to-weights"
        if attrs.get("method") in WEIGHT_DERIVED and not attrs.get("orthogonal_to_weights")
        else "compare with a filter-norm surface"
    )
    return (
        f"{which} {verb} largely aligned with the weights θ: moving along it mostly rescales "
        "them (which normalization layers undo, and eval-mode BatchNorm turns into an exploding "
        f"loss), so read the picture as a change of scale as much as the loss's shape; {fix}"
    )


def check_not_degenerate(direction: dict[str, torch.Tensor], label: str) -> None:
    """Raise DirectionError when a direction is zero everywhere (nothing would move)."""
    if all(float(t.abs().max()) == 0.0 for t in direction.values() if t.numel()):
        raise DirectionError(
            f"{label} direction is zero on every tensor (e.g. a model without weight matrices "
            f"under --ignore biasbn); use --ignore none or another model"
        )


def moved_names(theta: dict[str, torch.Tensor], ignore: str) -> list[str]:
    """The tensors a direction may move: those with filters under ``biasbn``, all under ``none``."""
    return [k for k, t in theta.items() if ignore == "none" or params.has_filters(t)]


def zero_direction(theta: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, torch.zeros_like(t, dtype=torch.float32)) for k, t in theta.items())
