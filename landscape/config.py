"""Typed, frozen run configs. YAML files and CLI flags fill the same objects.

A config is a tree of small dataclasses (one per concern, each with a ``name``). ``from_dict``
rejects unknown keys and bad values naming the key, so a typo never silently does nothing.
Flags are applied over the YAML as dotted overrides (``direction.seed=3``): flags win.

Every setting's default is written once, here, as its dataclass field's default (the runs of
``compute``, ``inspect``, ``curvature`` and ``sweep --slurm`` alike; a direction family's own
options in their declaration in landscape.families, from which ``DirectionSpec`` is made): the CLI's help and option
defaults and the Python API's keyword defaults read it (``default_of``), and
tests/test_settings.py checks that each flag and keyword has its field and agrees with it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_type_hints

import yaml

from landscape import families
from landscape.engine.registry import ENGINES
from landscape.errors import ConfigError

# the families' names and facets come from their registry (landscape.families)
DIRECTION_NAMES = families.NAMES
IGNORE_CHOICES = ("biasbn", "none")
STORE_CHOICES = ("auto", "full", "seed")  # how a file keeps its directions (direction.store)
STORE_BY_SEED_BYTES = 1 << 30  # auto: directions above 1 GiB are kept as their seed
# the spec a config records for an object handed to the Python API (provenance, never resolved)
IN_MEMORY = "in-memory:"
NORM_CHOICES = ("filter", "layer", "none")
SPLIT_CHOICES = ("train", "test")
ENGINE_CHOICES = ("auto", *ENGINES)  # auto times the registered engines
BN_CHOICES = ("eval", "recalibrate", "train")
DTYPE_CHOICES = ("float32", "bfloat16", "float16")
COMPILE_CHOICES = ("auto", "on", "off")
FUSE_CHOICES = ("auto", "on", "off")
SPLIT_FORWARD_CHOICES = ("auto", "on", "off")
MEMORY_FORMAT_CHOICES = ("auto", "contiguous", "channels-last")
# bounds of the settings a flag or a file can set to anything: what the libraries take
SEED_RANGE = (-(2**63), 2**64 - 1)  # torch.manual_seed's (numpy's data permutation: from 0)
THREADS_MAX = 1024  # more intra-op threads than any machine has cores (100,000 crash torch)
DEFAULT_TEXT_WINDOW = 128  # text: data's tokens per window when data.seq_len is not given
BN_BATCHES_MAX = 2**63 - 1  # the most batches itertools.islice takes (more: all of them)
SEEDED_DIRECTIONS = families.SEEDED  # another seed gives other directions
WEIGHT_DERIVED = families.FROM_WEIGHTS  # built from the weights themselves


@dataclass(frozen=True)
class ModelSpec:
    """Which network: a built-in name, ``hf:DIR``, ``pkg.module:factory``, ``file.py:factory`` or
    a TorchScript file. ``adapter``: a peft adapter folder (LoRA, ...) applied to an hf: model."""

    name: str
    checkpoint: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    unsafe_pickle: bool = False
    adapter: str | None = None


@dataclass(frozen=True)
class DataSpec:
    """Which samples: ``digits``, ``cifar10:DIR``, ``mnist:DIR``, ``npz:FILE``, ``pt:FILE``,
    ``tokens:FILE``, ``text:FILE``, ``hf-dataset:DIR`` or a factory."""

    name: str
    split: str = "train"
    max_samples: int | None = None
    seed: int = 0  # seeds the permutation whose first max_samples samples are kept
    batch_size: int = 500
    normalize: bool = True  # per-channel normalization of image sets (Li et al.'s CIFAR constants)
    # token data (tokens:, text:, hf-dataset:): the window a flat token stream is cut into, the
    # tokenizer folder text is encoded with (default: the hf: model's folder), and the column of
    # an hf-dataset folder to read (text, or token ids)
    seq_len: int | None = None
    tokenizer: str | None = None
    column: str | None = None
    labels: str | None = None  # hf-dataset: a column of class labels (sequence classifiers)


@dataclass(frozen=True)
class _Directions:
    """The settings every family shares (``DirectionSpec`` adds each family's own options)."""

    name: str = "filter-norm"
    seed: int = 0
    ignore: str = "biasbn"
    norm: str = "filter"
    file: str | None = None
    # R surfaces in one file, repeat r along directions drawn with seed ``seed + r`` (random
    # families only)
    repeat: int = 1
    # which tensors the directions move: names matching any ``params`` glob (all when empty) and
    # no ``exclude`` glob, e.g. ``model.layers.11.*``, ``*.self_attn.*``, ``*lora_*``
    params: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    # how the file keeps the directions: ``full`` (every tensor), ``seed`` (regenerated from the
    # seed on resume; seeded families only), ``auto`` (seed above STORE_BY_SEED_BYTES)
    store: str = "auto"


def _option_field(opt: families.Option) -> tuple[str, Any, Any]:
    """A family option as a dataclass field: its name, type and default (``families.KINDS``)."""
    kind = families.KINDS[opt.kind]
    hint = {list: list[str], str: str | None}.get(kind, kind)
    if kind is list:
        return opt.field, hint, field(default_factory=list)
    return opt.field, hint, field(default=opt.initial)


# How to build the directions, or ``file`` to reuse those stored in an earlier file: the shared
# settings and every family's own options, each a field made from its declaration in
# landscape.families (the field's default, YAML key ``direction.<field>``).
DirectionSpec = dataclasses.make_dataclass(
    "DirectionSpec",
    [_option_field(opt) for opt, _ in families.options()],
    bases=(_Directions,),
    frozen=True,
)
DirectionSpec.__module__ = (
    __name__  # pickled by name (to --workers processes): config.DirectionSpec
)
DirectionSpec.__doc__ = (
    "How to build the directions, or ``file`` to reuse directions stored in an earlier file: the "
    "settings all families share and each family's own options (landscape.families): "
    + "; ".join(
        f"``{opt.field}`` ({', '.join(names)}): {opt.help}" for opt, names in families.options()
    )
)


@dataclass(frozen=True)
class GridSpec:
    """Axes as ``MIN:MAX:NUM``; no ``y`` means a 1-D surface, ``z`` a third axis (3-D). ``axes``:
    the k ranges of a k-D grid (k ≤ MAX_AXES) in one list, instead of ``x``/``y``/``z``.
    ``z`` and ``axes`` are left out of the config's text while unset, so a 1-D or 2-D config
    reads, writes and fingerprints as before they existed (its files resume)."""

    x: str = "-1:1:51"
    y: str | None = None
    z: str | None = None
    axes: list[str] | None = None

    def ranges(self) -> list[tuple[str, str]]:
        """Each axis' ``MIN:MAX:NUM`` text with its config key, in axis order."""
        if self.axes is not None:
            return [(text, f"grid.axes[{i}]") for i, text in enumerate(self.axes)]
        named = [(self.x, "grid.x"), (self.y, "grid.y"), (self.z, "grid.z")]
        return [(text, key) for text, key in named if text is not None]


@dataclass(frozen=True)
class EvalSpec:
    """How each point is evaluated.

    ``bn``: BatchNorm statistics at each point (eval: the checkpoint's; recalibrate: re-estimated
    from ``bn_batches`` training batches; train: each batch's own). ``dtype``: autocast precision of
    the forward pass (the loss is summed in float64). ``tf32``: allow TF32 matmuls on CUDA. The rest
    changes speed, not values: ``engine``, ``compile``, ``fuse`` (fold eval-mode BatchNorm into
    the convolution before it, with a following add and ReLU; auto: on the per-point path that
    ``engine: auto`` picks), ``memory_format``, ``memory_budget`` (bytes
    the batched path may use for activations, e.g. 2GB; auto: half the free GPU memory, 2GB on a
    CPU), ``threads`` (intra-op threads; null: PyTorch's default) and ``split_forward`` (compute the part
    of the forward pass that no moved tensor reaches once per batch, on either engine; auto:
    when it pays).
    """

    loss: str = "cross-entropy"
    device: str = "auto"
    engine: str = "auto"
    bn: str = "eval"
    bn_batches: int = 10
    dtype: str = "float32"
    tf32: bool = False
    compile: str = "auto"
    fuse: str = "auto"
    memory_format: str = "auto"
    memory_budget: str | None = None
    threads: int | None = None
    split_forward: str = "auto"


@dataclass(frozen=True)
class ComputeConfig:
    """Everything one ``landscape compute`` run needs."""

    model: ModelSpec
    data: DataSpec
    out: str
    direction: DirectionSpec = field(default_factory=DirectionSpec)
    grid: GridSpec = field(default_factory=GridSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)

    def __post_init__(self) -> None:
        _check_choice("direction.name", self.direction.name, DIRECTION_NAMES)
        _check_choice("direction.ignore", self.direction.ignore, IGNORE_CHOICES)
        _check_choice("direction.store", self.direction.store, STORE_CHOICES)
        if self.direction.store == "seed" and (
            self.direction.file or self.direction.name not in SEEDED_DIRECTIONS
        ):
            raise ConfigError(
                f"--store-directions seed regenerates directions from their seed, which only the "
                f"random families draw from ({', '.join(SEEDED_DIRECTIONS)}); use full"
            )
        _check_choice("direction.norm", self.direction.norm, NORM_CHOICES)
        _check_choice("data.split", self.data.split, SPLIT_CHOICES)
        _check_choice("eval.engine", self.eval.engine, ENGINE_CHOICES)
        _check_choice("eval.bn", self.eval.bn, BN_CHOICES)
        _check_choice("eval.dtype", self.eval.dtype, DTYPE_CHOICES)
        _check_choice("eval.compile", self.eval.compile, COMPILE_CHOICES)
        _check_choice("eval.fuse", self.eval.fuse, FUSE_CHOICES)
        _check_choice("eval.split_forward", self.eval.split_forward, SPLIT_FORWARD_CHOICES)
        _check_choice("eval.memory_format", self.eval.memory_format, MEMORY_FORMAT_CHOICES)
        if not 1 <= self.eval.bn_batches <= BN_BATCHES_MAX:
            raise ConfigError(
                f"eval.bn_batches (--bn-batches) must be 1..{BN_BATCHES_MAX}, got "
                f"{self.eval.bn_batches}"
            )
        if self.eval.threads is not None and not 1 <= self.eval.threads <= THREADS_MAX:
            raise ConfigError(
                f"eval.threads (--threads) must be 1..{THREADS_MAX}, got {self.eval.threads}"
            )
        parse_bytes(self.eval.memory_budget)
        check_seed("direction.seed (--seed)", self.direction.seed, self.direction.repeat - 1)
        check_seed("data.seed (--data-seed)", self.data.seed, low=0)
        self._check_direction_inputs()
        if self.data.batch_size < 1:
            raise ConfigError(f"data.batch_size must be at least 1, got {self.data.batch_size}")
        if self.data.max_samples is not None and self.data.max_samples < 1:
            raise ConfigError(f"data.max_samples must be at least 1, got {self.data.max_samples}")
        if self.data.seq_len is not None and self.data.seq_len < 2:
            raise ConfigError(
                f"data.seq_len must be at least 2 (a token and the next one), got "
                f"{self.data.seq_len}"
            )
        check_grid(self.grid)
        if self.grid.axes is not None and len(self.grid.axes) <= 3:
            # one grid, one text: --axes A B C is --x A --y B --z C (and resumes its file)
            object.__setattr__(self, "grid", GridSpec(*self.grid.axes))

    @property
    def dims(self) -> int:
        return len(self.grid.ranges())

    def _check_direction_inputs(self) -> None:
        d = self.direction
        _check_repeat(d)
        for opt, names in families.options():
            value = getattr(d, opt.field)
            if opt.choices is not None:
                _check_choice(f"direction.{opt.field}", value, opt.choices)
            if opt.kind == "count" and value < 1:
                raise ConfigError(
                    f"direction.{opt.field} ({opt.flag}) must be at least 1, got {value}"
                )
            if opt.exclusive and opt.given(value) and d.name not in names and not d.file:
                raise ConfigError(
                    f"direction.{opt.field} ({opt.flag}) is for {opt.exclusive} "
                    f"({', '.join(names)}); {d.name}'s are not, drop it"
                )
        if d.file:
            return  # directions come from the file; the family's own inputs are not needed
        if self.dims > 2 and d.name not in SEEDED_DIRECTIONS:
            raise ConfigError(
                f"direction {d.name} builds 1 or 2 directions, not the {self.dims} of this grid; "
                f"use {' or '.join(SEEDED_DIRECTIONS)} (any number) or --directions FILE"
            )
        families.family(d.name).check(d, self.dims, bool(self.model.checkpoint))

    # --- conversion -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = d.pop("out")  # groups first, the output last, as in DESIGN §10
        for key in NEW_GRID_KEYS:  # unset: the text (and fingerprint) of a 1-D/2-D config as ever
            if d["grid"][key] is None:
                d["grid"].pop(key)
        if self.grid.axes is not None:  # axes name every axis; x's default is not one of them
            d["grid"].pop("x")
            d["grid"].pop("y")
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComputeConfig:
        grid = data.get("grid") if isinstance(data, dict) else None
        named = [k for k in ("x", "y", "z") if isinstance(grid, dict) and grid.get(k) is not None]
        if isinstance(grid, dict) and grid.get("axes") is not None and named:
            raise ConfigError(
                f"grid.axes (--axes) gives every axis; drop grid.{named[0]} (--{named[0]}), or "
                "drop --axes"
            )
        if isinstance(grid, dict) and grid.get("y") is not None and grid.get("x") is None:
            raise ConfigError(
                "grid.y (--y) is given without grid.x (--x); give both axes, e.g. "
                "--x=-1:1:51 --y=-1:1:51 (or only --x for a 1-D surface)"
            )
        return _build(cls, data, prefix="")

    @classmethod
    def from_yaml(cls, text: str) -> ComputeConfig:
        return cls.from_dict(_load_yaml_mapping(text, "config"))

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> ComputeConfig:
        """Load a YAML config and apply dotted ``overrides`` (flags) on top of it."""
        raw = load_yaml_file(path)
        return cls.from_dict(apply_overrides(raw, overrides or {}))

    def value_fingerprint(self) -> dict[str, Any]:
        """The part of the config that determines the surface's values.

        Two runs with equal fingerprints write the same numbers, so one may resume the other.
        Where and how fast the points are evaluated (output path, device, engine, and under
        ``bn: eval`` the data batch size) changes only float rounding and is left out, so a run
        may resume on another machine. Under ``bn: train`` and ``bn: recalibrate`` the batch size
        decides which samples make each batch's statistics, so it is kept.
        The checkpoint's path is information only: its content is compared by hash (the file's
        ``checkpoint_sha256``), so the same file by another path (absolute, moved) resumes.
        """
        d = self.to_dict()
        d.pop("out")
        if self.eval.bn == "eval":  # under train and recalibrate the batches are the statistics
            d["data"].pop("batch_size")
        d["model"].pop("checkpoint")
        speed = ("device", "engine", "compile", "fuse", "memory_format", "memory_budget", "threads",
                 "split_forward")  # fmt: skip
        for key in speed:
            d["eval"].pop(key)
        d["direction"].pop("store")  # how the directions are kept, not which they are
        return d


# --- the settings of the other runs -----------------------------------------------------------


@dataclass(frozen=True)
class InspectConfig:
    """What to inspect: a model (at a checkpoint or at its seeded initialization) on data.

    ``checkpoints``: checkpoints saved during training, in order (files, folders or globs); the
    last is inspected when ``model.checkpoint`` is not given. ``epsilon``: a softmax output
    within epsilon of 0 or 1 is saturated. ``seed``: seeds the initialization.
    """

    model: ModelSpec
    data: DataSpec
    checkpoints: tuple[str, ...] = ()
    epsilon: float = 1e-3
    seed: int = 0
    device: str = "auto"
    tensorboard: str | None = None  # a folder for TensorBoard histogram events
    # inspect's own defaults of settings it shares with compute (``default_of`` reads them
    # first): a seeded thousand samples are plenty for activation statistics
    DEFAULTS: ClassVar[dict[str, Any]] = {"data.max_samples": 1000}

    def __post_init__(self) -> None:
        if not 0 < self.epsilon < 0.5:
            raise ConfigError(f"epsilon must be in (0, 0.5), got {self.epsilon}")
        check_seed("--seed", self.seed)
        check_seed("--data-seed", self.data.seed, low=0)


@dataclass(frozen=True)
class Given:
    """What the user said on the command line about a config read from a file (landscape.trust
    says what runs code and when a given spec is needed)."""

    model: str | None = None
    data: str | None = None
    loss: str | None = None
    trust_config: bool = False  # honour the file's code references as they are
    unsafe_pickle: bool = False  # allow a pickled whole model (the command's own flag)


CURVATURE_GRID_POINTS = 11  # curvature's points per axis by default, over the surface's range


@dataclass(frozen=True)
class CurvatureSpec:
    """One ``landscape curvature`` run: which surface, which grid, how accurately."""

    surface: str
    x: str | None = None  # MIN:MAX:NUM; None: CURVATURE_GRID_POINTS over the surface's x range
    y: str | None = None
    samples: int = 500  # at most this many of the surface's samples (a seeded subset)
    tol: float = 1e-3  # eigsh: relative accuracy of λmax and of λmax − λmin
    ignore: str = "none"  # none: every parameter; biasbn: tensors with filters only
    checkpoint: str | None = None  # the surface's checkpoint, if it has moved
    device: str | None = None  # None: the surface's
    out: str | None = None  # None: <surface stem>_curvature.h5 beside the surface
    # specs given again on the command line, and the opt-ins: the file's config runs no code
    given: Given = field(default_factory=Given)


@dataclass(frozen=True)
class SlurmSpec:
    """The job-array script ``landscape sweep --slurm`` writes: GPUs (and MPI ranks) per run,
    the SLURM partition (None: the cluster's default) and the time limit per run."""

    gpus_per_task: int = 1
    partition: str | None = None
    time: str = "24:00:00"


REQUIRED = dataclasses.MISSING  # default_of's answer for a setting that has no default


def default_of(key: str, root: type = ComputeConfig) -> Any:
    """The default of the setting ``key`` of the config class ``root`` (dotted: ``data.batch_size``
    of ComputeConfig is 500), read from the dataclass field that declares it, or from
    ``root.DEFAULTS`` where a run sets a shared field's default its own way (inspect's
    ``data.max_samples``). REQUIRED for a field without a default; KeyError for no such key."""
    own = getattr(root, "DEFAULTS", {})
    if key in own:
        return own[key]
    head, _, rest = key.partition(".")
    declared = {f.name: f for f in fields(root)}  # type: ignore[arg-type]
    if head not in declared:
        raise KeyError(f"{root.__name__} has no setting {key!r}")
    if rest:
        return default_of(rest, get_type_hints(root)[head])
    f = declared[head]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def surface_identity(config: ComputeConfig) -> dict[str, Any]:
    """``value_fingerprint`` less the settings that cannot change this config's values: the
    direction seed of a family that does not draw from it (zca, pca, trajectory, interpolate,
    hessian up to its eigensolver's start, directions read from a file), and the data seed
    when every sample is used. Two configs with equal identities compute the same surface."""
    d = config.value_fingerprint()
    if config.direction.file or config.direction.name not in SEEDED_DIRECTIONS:
        d["direction"].pop("seed")
    if config.data.max_samples is None:
        d["data"].pop("seed")
    return d


def _check_repeat(d: DirectionSpec) -> None:
    """``repeat`` > 1 only where another seed gives other directions."""
    if d.repeat < 1:
        raise ConfigError(f"direction.repeat must be at least 1, got {d.repeat}")
    if d.repeat == 1:
        return
    why = None
    family = families.FAMILIES.get(d.name)
    if d.file:
        why = "directions read from --directions do not depend on the seed"
    elif family is not None and not family.seeded:
        why = family.seed_note or f"{d.name}'s directions do not depend on the seed"
    if why:
        raise ConfigError(
            f"--repeat {d.repeat} needs random directions ({' or '.join(SEEDED_DIRECTIONS)}): "
            f"{why}, so every repeat would be the same surface; drop --repeat"
        )


# --- axes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One grid axis: ``num`` evenly spaced values from ``lo`` to ``hi`` inclusive."""

    lo: float
    hi: float
    num: int


MAX_AXES = 5  # a grid's most directions: 21^5 points is already four million evaluations
# each axis' name in a surface file: /<name>coordinates, /directions/<name> (DESIGN §6)
AXIS_NAMES = ("x", "y", "z", "u", "v")
NEW_GRID_KEYS = ("z", "axes")  # grid keys a config's text holds only when set


def check_grid(grid: GridSpec) -> None:
    """Every axis a valid ``MIN:MAX:NUM``; ``z`` only with ``y``; ``axes`` alone (not with
    ``y``/``z``), 1..MAX_AXES of them."""
    if grid.axes is not None and (grid.y is not None or grid.z is not None):
        raise ConfigError(
            "grid.axes (--axes) gives every axis; drop grid.y/grid.z (--y/--z), or drop --axes"
        )
    if grid.z is not None and grid.y is None:
        raise ConfigError("grid.z (--z) is the third axis; give grid.y (--y) as well")
    ranges = grid.ranges()
    if not 1 <= len(ranges) <= MAX_AXES:
        raise ConfigError(
            f"a grid has 1 to {MAX_AXES} axes, got {len(ranges)} (--axes takes one MIN:MAX:NUM "
            "per direction); drop some"
        )
    for text, key in ranges:
        parse_axis(text, key)


# the largest |coordinate| of a grid: its squares and fourth powers (the analysis' quadratic fit)
# stay finite; a surface file holding a larger one is refused when read (store.validate)
MAX_COORDINATE = 1e12


def parse_axis(text: str, key: str = "axis") -> Axis:
    """Parse ``MIN:MAX:NUM`` (e.g. ``-1:1:51``); raise ConfigError naming ``key`` if malformed."""
    hint = f"{key} must be MIN:MAX:NUM with MIN < MAX and NUM >= 2, e.g. -1:1:51; got {text!r}"
    parts = str(text).split(":")
    if len(parts) != 3:
        raise ConfigError(hint)
    try:
        lo, hi = float(parts[0]), float(parts[1])
        num = int(parts[2])
    except ValueError:
        raise ConfigError(hint) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or num < 2 or not lo < hi:
        raise ConfigError(hint)
    if not math.isfinite(hi - lo):  # linspace would give inf steps and NaN coordinates
        raise ConfigError(
            f"{key} spans {lo:g} to {hi:g}, wider than float64 can hold (MAX - MIN overflows); "
            "use a narrower range"
        )
    if max(abs(lo), abs(hi)) > MAX_COORDINATE:
        raise ConfigError(
            f"{key} reaches {max(abs(lo), abs(hi)):g}; coordinates are at most "
            f"{MAX_COORDINATE:g} in size (the file's readers refuse larger): use a narrower range"
        )
    return Axis(lo, hi, num)


# --- YAML and overrides --------------------------------------------------------------------------


# What one YAML text may hold: configs are a few dozen values a few levels deep, so these bounds
# refuse only crafted files, before they cost memory or a RecursionError.
YAML_MAX_CHARS = 4 << 20  # the text itself
YAML_MAX_DEPTH = 64  # nesting of mappings and lists, aliases written out
YAML_MAX_VALUES = 100_000  # nodes, aliases written out (the "billion laughs" file expands to 10^9)
YAML_MAX_INT_DIGITS = 64  # an integer literal's digits (Python refuses str() beyond 4300)


class YAMLRefused(yaml.YAMLError):
    """Valid YAML that a config may not be: a duplicate key, or beyond one of the bounds above.
    Its text is a whole sentence naming the line (``_load_yaml_mapping`` prefixes the file)."""


class ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without YAML 1.1's surprises, as YAML 1.2 reads plain scalars, and
    with bounds: the one loader for every YAML text landscape reads.

    YAML 1.1 reads an unquoted grid ``x: -1:1:51`` as the base-60 integer -3711, ``on``/``off``/
    ``yes``/``no`` as booleans (so ``compile: off`` would be False, not the choice "off"), ``010``
    as 8 and ``1e-3`` as a string. Here a plain scalar is a boolean only when it is true or
    false, an integer only in decimal (or 0x/0o/0b), a float in decimal or exponent notation
    (and .inf, .nan), and a string otherwise. A key given twice in one mapping is refused (YAML
    would keep the last silently), and so is a text beyond the ``YAML_MAX_*`` bounds.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # the composer recurses once per level: bounded here, before Python's recursion limit
        self._depth += 1
        try:
            if self._depth > YAML_MAX_DEPTH:
                line = _line(self.peek_event())
                raise YAMLRefused(
                    f"nesting deeper than {YAML_MAX_DEPTH} levels at line {line}; a config is a "
                    "few levels deep: flatten it"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # ``<<: *base`` may be overridden by design; other keys YAML refuses
            key = self.construct_object(key_node)
            if key in seen:
                raise YAMLRefused(
                    f"key {key!r} is given twice in one mapping (lines {seen[key]} and "
                    f"{_line(key_node)}); keep one"
                )
            seen[key] = _line(key_node)
        return super().construct_mapping(node, deep)


def _line(item: yaml.Node | yaml.Event) -> int:
    return item.start_mark.line + 1


def _check_expansion(root: yaml.Node | None) -> None:
    """Refuse a document whose aliases, written out, make more than YAML_MAX_VALUES nodes or
    more than YAML_MAX_DEPTH levels, or one that contains itself. An alias is the same node
    object as its anchor, so a walk over distinct nodes, with each node's expanded size and
    depth computed once from its children's (post-order, no recursion), stays linear in the
    text."""
    if root is None:
        return
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()  # the nodes whose subtree the walk is in
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        kids = _children(node)
        if finished:
            size[id(node)] = min(1 + sum(size[id(k)] for k in kids), YAML_MAX_VALUES + 1)
            depth[id(node)] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(id(node))
            continue
        if id(node) in size:
            continue
        if any(id(k) in on_path or k is node for k in kids):
            raise YAMLRefused(
                f"an alias at line {_line(node)} or below refers to a value holding it; "
                "remove the alias"
            )
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)
    if size[id(root)] > YAML_MAX_VALUES:
        raise YAMLRefused(
            f"aliases expand it to more than {YAML_MAX_VALUES:,} values; write the values out"
        )
    if depth[id(root)] > YAML_MAX_DEPTH:
        raise YAMLRefused(
            f"aliases nest it deeper than {YAML_MAX_DEPTH} levels; write the values out"
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":int", ":float"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RESOLVE = (
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (
        "tag:yaml.org,2002:int",
        r"[-+]?[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+",
        "-+0123456789",
    ),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+0123456789.",
    ),
)
for _tag, _pattern, _first in _RESOLVE:
    ConfigLoader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), list(_first))

_BASES = ("0x", "0o", "0b")


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    unsigned = text.lstrip("+-")
    digits = len(unsigned) - (2 if unsigned[:2].lower() in _BASES else 0)
    if digits > YAML_MAX_INT_DIGITS:
        raise YAMLRefused(
            f"the integer at line {_line(node)} has {digits:,} digits, more than the "
            f"{YAML_MAX_INT_DIGITS} a config value may have; quote it if it is text"
        )
    return int(text, 0) if text[:2].lower() in _BASES else int(text, 10)


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (safe: plain data only, never objects);
    ``YAMLRefused`` (a ``yaml.YAMLError``) for a text beyond its bounds or a duplicate key."""
    if len(text) > YAML_MAX_CHARS:
        raise YAMLRefused(
            f"it is {len(text):,} characters long, more than the {YAML_MAX_CHARS:,} a config "
            "may have"
        )
    return yaml.load(text, Loader=ConfigLoader)


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; check the path")
    try:
        size = file.stat().st_size
        if size > YAML_MAX_CHARS * 4:  # UTF-8: at most 4 bytes a character; not read whole
            raise ConfigError(
                f"config file {str(path)!r} is {size:,} bytes, more than a config may have "
                f"({YAML_MAX_CHARS:,} characters); check the path"
            )
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text (byte {exc.start:,}); check the path"
        ) from None
    return _load_yaml_mapping(text, str(path))


def _load_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = load_yaml(text)
    except YAMLRefused as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"{where} is not valid YAML ({first}); fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a YAML mapping of groups (model:, data:, ...)")
    return data


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``"group.key": value`` set (flags over YAML)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"config key {part!r} must be a mapping to set {dotted!r}")
            else:
                child = node[part] = dict(child)
            node = child
        node[leaf] = value
    return out


T = TypeVar("T")


def _build(cls: type[T], data: Any, prefix: str) -> T:
    """Construct dataclass ``cls`` from a mapping, recursing into nested dataclasses."""
    where = prefix.rstrip(".") or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; known keys of {where}: {', '.join(sorted(known))}"
        )
    missing = [
        f.name
        for f in fields(cls)  # type: ignore[arg-type]
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        key = f"{prefix}{missing[0]}"
        nested = dataclasses.is_dataclass(hints[missing[0]])
        raise ConfigError(
            f"missing required config key {key + ('.name' if nested else '')!r}; give it in the YAML "
            f"file or as a flag (e.g. --{missing[0]})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix=f"{key}.")
        else:
            kwargs[name] = _coerce(key, value, hint)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the unknown-key check
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check a leaf value against its annotation; YAML already gives the scalar types."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"config key {key!r} must not be empty")
    if hint is bool or text.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if "int" in text and "str" not in text:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if text.startswith("list"):
        if isinstance(value, str):
            return [value]  # one path is a list of one
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(
                f"config key {key!r} must be a list of strings, got {value!r}; quote entries "
                "that YAML reads as numbers"
            )
        return list(value)
    if "dict" in text:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if "str" in text:
        if isinstance(value, (bool, int, float)):  # never silently a number's spelling
            raise ConfigError(
                f"config key {key!r} must be a string, but YAML read {value!r} as a "
                f'{type(value).__name__}; quote it, e.g. {key.rsplit(".", 1)[-1]}: "..."'
            )
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return value
    return value


def check_seed(key: str, seed: int, extra: int = 0, *, low: int = SEED_RANGE[0]) -> None:
    """``seed`` (and ``seed + extra``, a repeat's last seed) within what torch and numpy take."""
    high = SEED_RANGE[1] - max(extra, 0)
    if not low <= seed <= high:
        raise ConfigError(f"{key} must be an integer {low}..{high}, got {seed}")


def parse_bytes(text: str | None) -> int | None:
    """``2GB``, ``512MB``, ``1.5G`` or a plain number of bytes; None for auto. A size must be
    positive and finite (a negative budget would pass for none)."""
    if text is None or str(text).strip() in ("", "auto"):
        return None
    s = str(text).strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    unit = scale.get(s[-1:], 1)
    try:
        value = float(s[:-1] if unit > 1 else s) * unit
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise ConfigError(
            f"memory budget must look like 2GB, 512MB or a positive number of bytes "
            f"(--memory-budget, eval.memory_budget); got {text!r}"
        )
    return int(value)


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
