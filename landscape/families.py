"""The direction families, each declaring everything about itself in one place (DESIGN §3).

A :class:`Family` says where its builder lives (imported on first use), whether its directions
are drawn from the seed, whether they come from the weights themselves (so that
``orthogonal_to_weights`` applies), which inputs it needs and how a config is checked for them,
which checkpoint is its centre, which files it reads (so that a sweep can say a run cannot start),
how many of the evaluation samples it takes over (the Hessian's subset) and its own typed options.
``config``, ``session``, ``compute``, ``sweep`` and the CLI derive their lists, flags and special
cases from ``FAMILIES``. An option, declared once in its family's entry, becomes the field
``direction.<field>`` of ``DirectionSpec`` (so a YAML key) with its default, the CLI flag whose
help shows that default, the keyword of ``landscape.compute`` and a part of ``info``'s directions
line; adding a family is one module with its builder and one entry here.

This module imports nothing heavy (no torch): the config layer reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from landscape.errors import ConfigError

Check = Callable[[Any, int, bool], None]  # (direction spec, dims, has a checkpoint) → raise


def _no_check(spec: Any, dims: int, has_checkpoint: bool) -> None:
    return None


# an option's kind → the type of its field and its default: ``files`` (one or more checkpoints:
# ``--trajectory A B C``; from the API also state dicts and models), ``flag`` (on when given),
# ``count`` (an integer ≥ 1, its default given by the option) or ``value`` (a string)
KINDS: dict[str, type] = {"files": list, "flag": bool, "count": int, "value": str}


@dataclass(frozen=True)
class Option:
    """One of a family's own settings, declared once: the field ``direction.<field>`` it fills
    (YAML), its flag, its help, its kind (``KINDS``) and its default, and the keyword
    ``landscape.compute`` takes it by (``keyword``; default: the field's name).

    Families that share a setting declare the same option; the flag's help names them all.
    ``to_centre``: a list of checkpoints that ends at the centre (a trajectory: the API appends
    the model itself when the last one given is not it). ``exclusive``: what its families' directions
    are (the reason it is theirs); set for another family, the option is then refused (else it
    is ignored there, so that a sweep may share it)."""

    field: str
    flag: str
    help: str
    kind: str = "value"
    metavar: str | None = None
    default: Any = None  # files: [], flag: False; count and value: as given here
    choices: tuple[str, ...] | None = None  # a value's allowed strings
    keyword: str | None = None
    to_centre: bool = False
    exclusive: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AssertionError(f"option {self.field}: kind {self.kind!r} is none of {KINDS}")

    @property
    def initial(self) -> Any:
        """The field's default: an empty list, off, or the declared value."""
        return {"files": [], "flag": False}.get(self.kind, self.default)

    @property
    def api_keyword(self) -> str:
        return self.keyword or self.field

    def given(self, value: Any) -> bool:
        """Whether ``value`` is other than the default (a setting the user made)."""
        return value != self.initial


@dataclass(frozen=True)
class Family:
    name: str
    builder: str  # "module:function", imported on first use
    summary: str  # one line, for --help and the README table
    seeded: bool = False  # another seed gives other directions (so --repeat makes sense)
    from_weights: bool = False  # derived from θ itself: orthogonal_to_weights applies
    check: Check = _no_check  # the config gives what the family needs
    # the checkpoint at the centre, when the family's inputs fix it (a trajectory's last)
    centre: Callable[[Any], str | None] | None = None
    # (what, path) of the files it reads besides the centre
    files: Callable[[Any], list[tuple[str, str]]] = lambda spec: []
    subset: Callable[[Any], int | None] = lambda spec: None  # samples it takes over, if fewer
    seed_note: str | None = None  # why another seed is no other surface, when not seeded
    options: tuple[Option, ...] = ()  # its own settings (flags and direction.<field> in YAML)
    # builds tensor by tensor in the weights' dtype (no float32 copy of a half-precision model)
    builds_in_weights_dtype: bool = False


def _check_trajectory(spec: Any, dims: int, has_checkpoint: bool) -> None:
    if not spec.trajectory:
        raise ConfigError(
            "direction trajectory needs the training checkpoints: --trajectory CKPT (repeat it, "
            "or give a folder or a glob; the last is the centre)"
        )


def _trajectory_centre(spec: Any) -> str | None:
    from landscape.checkpoint_paths import expand_checkpoints

    return str(expand_checkpoints(spec.trajectory)[-1]) if spec.trajectory else None


# how interpolate's targets are permuted to match the centre first (--align): not at all, or by
# landscape.alignment's methods (tests check this list against alignment.METHODS)
ALIGN_CHOICES = ("none", "weights", "activations")

EIGEN_ENDS = ("top", "bottom", "extreme")  # the ends of the Hessian's spectrum (--which)


def _check_hessian(spec: Any, dims: int, has_checkpoint: bool) -> None:
    if spec.which == "extreme" and dims != 2:
        raise ConfigError(
            "direction hessian --which extreme spans λmax and λmin: it needs a 2-D grid (--y); "
            "in 1-D use --which top or bottom"
        )


def _check_interpolate(spec: Any, dims: int, has_checkpoint: bool) -> None:
    if len(spec.targets) != dims:
        raise ConfigError(
            f"direction interpolate on a {dims}-D grid needs {dims} --target "
            f"checkpoint{'s' if dims == 2 else ''} (got {len(spec.targets)}): "
            "1-D goes from --checkpoint A to --target B; 2-D spans A, B and C"
        )
    if not has_checkpoint:
        raise ConfigError("direction interpolate starts at --checkpoint A; give --checkpoint")


def _check_curve(spec: Any, dims: int, has_checkpoint: bool) -> None:
    if len(spec.curve) != 1:
        raise ConfigError(
            "direction curve needs the curve file `landscape connect` wrote: --curve FILE "
            f"(one file, got {len(spec.curve)})"
        )
    if not has_checkpoint:
        raise ConfigError(
            "direction curve starts at the curve's first end A; give --checkpoint A (the one "
            "`landscape connect` was given)"
        )


_ORTHOGONAL = Option(
    "orthogonal_to_weights",
    "--orthogonal-to-weights",
    "remove each filter's component along the weights before normalizing (info warns when a "
    "direction is aligned with them).",
    kind="flag",
    exclusive="the directions derived from the weights",
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "filter-norm",
            "landscape.directions.filter_norm:build_filter_norm",
            "Gaussians rescaled filter by filter to the weights' norms (Li et al. 2018)",
            seeded=True,
            builds_in_weights_dtype=True,
        ),
        Family(
            "qr-orthogonal",
            "landscape.directions.qr_orthogonal:build_qr_orthogonal",
            "Gaussians made orthonormal by QR, then filter-normalized",
            seeded=True,
        ),
        Family(
            "zca",
            "landscape.directions.zca:build_zca",
            "ZCA-whitened projections of the weights themselves",
            from_weights=True,
            options=(_ORTHOGONAL,),
        ),
        Family(
            "pca",
            "landscape.directions.pca:build_pca",
            "the first and second principal components of every weight matrix",
            from_weights=True,
            options=(_ORTHOGONAL,),
        ),
        Family(
            "trajectory",
            "landscape.directions.trajectory:build_trajectory",
            "PCA of a training trajectory; its last checkpoint is the centre",
            check=_check_trajectory,
            centre=_trajectory_centre,  # expanding the list also finds a missing checkpoint
            options=(
                Option(
                    "trajectory",
                    "--trajectory",
                    "checkpoints in training order (--trajectory A B C, a folder or a glob); the "
                    "last is the centre.",
                    kind="files",
                    metavar="CKPT...",
                    to_centre=True,
                ),
            ),
        ),
        Family(
            "interpolate",
            "landscape.directions.interpolate:build_interpolate",
            "from --checkpoint A to --target B (and the plane through A, B and C)",
            check=_check_interpolate,
            files=lambda spec: [("target", t) for t in spec.targets],
            options=(
                Option(
                    "targets",
                    "--target",
                    "B (1-D, a=0 is --checkpoint A, a=1 is B); --target B C for the plane "
                    "through A, B, C.",
                    kind="files",
                    metavar="CKPT...",
                    keyword="target",
                ),
                Option("states", "--states", "move BatchNorm buffers too.", kind="flag"),
                Option(
                    "align",
                    "--align",
                    "permute the hidden units of each target to match A first (weight matching, "
                    "or activation matching on the evaluation data), so the path runs to the "
                    "aligned B: the barrier after alignment.",
                    metavar="|".join(ALIGN_CHOICES),
                    default="none",
                    choices=ALIGN_CHOICES,
                    exclusive="the path between two checkpoints",
                ),
            ),
        ),
        Family(
            "curve",
            "landscape.directions.curve:build_curve",
            "along a curve trained by `landscape connect` (1-D, t in [0, 1]); with --y, the "
            "plane through its A, B and bend C",
            check=_check_curve,
            files=lambda spec: [("curve", str(c)) for c in spec.curve],
            options=(
                Option(
                    "curve",
                    "--curve",
                    "the curve file of `landscape connect` (1-D: t=0 is --checkpoint A, t=1 its "
                    "B; 2-D: the plane through A, B and the bend C). The API takes a Curve too.",
                    kind="files",
                    metavar="FILE",
                    exclusive="the points of a trained curve",
                ),
            ),
        ),
        Family(
            "hessian",
            "landscape.directions.hessian:build_hessian",
            "top Hessian eigenvectors from Hessian-vector products",
            subset=lambda spec: spec.hessian_samples,
            seed_note="hessian's eigenvectors depend on the seed only through the eigensolver's start",
            check=_check_hessian,
            options=(
                Option(
                    "which",
                    "--which",
                    "the eigenvectors: of the largest eigenvalues (top), the smallest (bottom: "
                    "the planes that show saddles) or λmax with λmin (extreme, 2-D).",
                    metavar="|".join(EIGEN_ENDS),
                    default="top",
                    choices=EIGEN_ENDS,
                ),
                Option(
                    "hessian_samples",
                    "--hessian-samples",
                    "samples the Hessian is taken over.",
                    kind="count",
                    metavar="N",
                    default=1000,
                ),
            ),
        ),
    )
}
NAMES: tuple[str, ...] = tuple(FAMILIES)
SEEDED: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.seeded)
FROM_WEIGHTS: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.from_weights)


def options() -> list[tuple[Option, tuple[str, ...]]]:
    """Every family option once, in registry order, with the families that declare it."""
    seen: dict[str, tuple[Option, list[str]]] = {}
    for name, fam in FAMILIES.items():
        for opt in fam.options:
            if opt.field in seen and seen[opt.field][0] != opt:
                raise AssertionError(f"families declare direction.{opt.field} differently")
            seen.setdefault(opt.field, (opt, []))[1].append(name)
    return [(opt, tuple(names)) for opt, names in seen.values()]


def family(name: str) -> Family:
    """The family named ``name``; ConfigError listing the others for an unknown one."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown direction {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None
