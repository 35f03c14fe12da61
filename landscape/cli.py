"""The ``landscape`` command line: thin click commands over the library (DESIGN §9).

Each command parses options, builds a config, makes one library call and prints. Library errors
(``LandscapeError``) become one ``Error: ...`` line and exit 1; bad flags exit 2.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from landscape import __version__, alignment, families, tune_process
from landscape.config import (
    BN_CHOICES,
    COMPILE_CHOICES,
    CURVATURE_GRID_POINTS,
    DEFAULT_TEXT_WINDOW,
    DIRECTION_NAMES,
    DTYPE_CHOICES,
    ENGINE_CHOICES,
    FUSE_CHOICES,
    IGNORE_CHOICES,
    MAX_AXES,
    MEMORY_FORMAT_CHOICES,
    NORM_CHOICES,
    REQUIRED,
    SPLIT_CHOICES,
    SPLIT_FORWARD_CHOICES,
    STORE_CHOICES,
    ComputeConfig,
    CurvatureSpec,
    EvalSpec,
    InspectConfig,
    SlurmSpec,
    apply_overrides,
    default_of,
    load_yaml_file,
    parse_axis,
)
from landscape.errors import ConfigError, LandscapeError, LandscapeWarning
from landscape.models import sources as model_sources
from landscape.runs.study import DEFAULT_X as STUDY_X
from landscape.runs.study import DEFAULT_Y as STUDY_Y
from landscape.runs.study import PATHS as STUDY_PATHS
from landscape.runs.study import PLANE_X as STUDY_PLANE_X
from landscape.runs.study import PairStudy
from landscape.spectrum.settings import GRAPH_CHOICES as SPECTRUM_GRAPH
from landscape.spectrum.settings import TRACE_CHOICES as SPECTRUM_TRACE
from landscape.spectrum.settings import WHICH_CHOICES as SPECTRUM_WHICH
from landscape.spectrum.settings import HessianConfig


def _library_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into ``Error: ...`` (exit 1) without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", LandscapeWarning)
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except LandscapeError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a file problem no library check foresaw: still one line
            from landscape._files import os_error_text

            where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
            raise click.ClickException(
                f"cannot read or write{where} ({os_error_text(exc)}); check the paths given"
            ) from None
        except KeyboardInterrupt:
            click.echo("Interrupted; points written so far are kept, rerun to resume.", err=True)
            sys.exit(130)

    return wrapper


def _show_warning(
    message: Any,
    category: type,
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """The library's warnings as ``warning: ...`` lines on stderr (others as Python prints them)."""
    if issubclass(category, LandscapeWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        click.echo(text.rstrip(), err=True)


class Setting(click.Option):
    """An option that sets the setting ``key`` of the config class ``root`` (config.py), whose
    help ends with that setting's default, read from the dataclass: a default is written once.

    ``fill``: the option's own default is the setting's (commands without a YAML file; compute's
    stay None, so that its YAML fills what no flag gives). ``none``: what a None default means
    ("PyTorch's default"); no bracket without it. ``note``: how the default is decided.
    """

    def __init__(
        self,
        *args: Any,
        key: str,
        root: type = ComputeConfig,
        fill: bool = False,
        none: str | None = None,
        note: str | None = None,
        **kwargs: Any,
    ) -> None:
        value = default_of(key, root)
        if fill and value is not REQUIRED and not kwargs.get("multiple"):
            kwargs["default"] = value
        super().__init__(*args, **kwargs)
        self.key, self.root = key, root
        shown = _shown(value, none, pair=bool(self.secondary_opts))
        if shown is not None:
            text = (self.help or "").rstrip()
            end = "." if text.endswith(".") else ""
            note_text = f": {note}" if note else ""
            self.help = f"{text.removesuffix('.')} [{shown}{note_text}]{end}".lstrip()


def _shown(value: Any, none: str | None, pair: bool) -> str | None:
    """A default as the help's bracket shows it: None as ``none`` says, a --x/--no-x pair's as
    yes or no; none for a required setting, an empty list or an off flag."""
    if value is None:
        return none
    if isinstance(value, bool):
        return ("yes" if value else "no") if pair else None
    if value is REQUIRED or isinstance(value, (list, tuple, dict)):
        return None
    return str(value)


class FileList(click.Option):
    """A repeatable option that also takes several values at once: ``--trajectory A B C``.

    What a shell makes of ``--trajectory runs/*.pt``: every argument after the option up to the
    next one that starts with ``-`` is one of its values (``--trajectory A --trajectory B``
    still works).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("multiple", True)
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if option is not None:
                option.process = _greedy(option.process)


class FileListSetting(FileList, Setting):
    """A FileList option that sets a setting (``key``), as Setting does."""


AXIS_TEXT = re.compile(r"^(?!--)[^:]+:[^:]+:[^:]+$")  # MIN:MAX:NUM, a negative MIN included


class AxesSetting(Setting):
    """``--axes A1 A2 ... Ak``: every following argument of the form MIN:MAX:NUM is one more
    range, even one that starts with ``-`` (``--axes -1:1:21 -1:1:21 -1:1:21``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("multiple", True)
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name)
            if option is not None:
                option.process = _ranges(option.process)


def _ranges(process: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    def take_ranges(value: Any, state: Any) -> None:
        process(value, state)
        while state.rargs and AXIS_TEXT.match(state.rargs[0]):
            process(state.rargs.pop(0), state)

    return take_ranges


def _greedy(process: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    def take_all(value: Any, state: Any) -> None:
        process(value, state)
        while state.rargs and not state.rargs[0].startswith("-"):
            process(state.rargs.pop(0), state)

    return take_all


class AxisType(click.ParamType):
    """``MIN:MAX:NUM``, checked at parse time so a malformed grid is a usage error (exit 2)."""

    name = "MIN:MAX:NUM"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            parse_axis(value, f"--{param.name}" if param else "axis")
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="landscape")
def main() -> None:
    """Loss landscapes of trained PyTorch networks (Li et al. 2018 and beyond).

    \b
    Example:
      landscape demo --out results/demo
      landscape compute --model resnet20 --checkpoint model.t7 --data cifar10:DATA \\
          --direction filter-norm --x=-1:1:51 --y=-1:1:51 --out results/r20.h5
      landscape plot results/r20.h5 --out results/r20
    """
    tune_process()  # a command owns its process: its collector and allocator, before any run


def model_and_data_options(
    *,
    checkpoint: str,
    samples: str,
    batch: str,
    unset_checkpoint: str | None = None,
    root: type = ComputeConfig,
    required: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The model and data options that compute and inspect share, declared once: --model,
    --model-arg, --checkpoint, --unsafe-pickle, --data, --split, --max-samples, --data-seed,
    --batch-size. ``root``: the command's config class, whose defaults the options show; they
    are the options' defaults too except under compute (its YAML may fill them).
    ``unset_checkpoint``: what the command does without --checkpoint."""

    def option(*decls: str, key: str, **kwargs: Any) -> Callable[..., Any]:
        fill = root is not ComputeConfig
        return click.option(*decls, cls=Setting, key=key, root=root, fill=fill, **kwargs)

    options = [
        option("--model", key="model.name", required=required, help=MODEL_HELP),
        option(
            "--model-arg", "model_args", key="model.args", multiple=True, metavar="KEY=VALUE",
            help="Keyword argument for the model factory (repeatable).",
        ),
        option("--checkpoint", key="model.checkpoint", help=checkpoint, none=unset_checkpoint),
        option(
            "--adapter", key="model.adapter", metavar="DIR",
            help="A peft adapter folder (LoRA, ...) applied to the hf: model; move only its "
            "weights with --params '*lora_*'.",
        ),
        option(
            "--unsafe-pickle", key="model.unsafe_pickle", is_flag=True, default=False,
            help="Allow a pickled whole model (runs code from the file: trusted files only).",
        ),
        option("--data", key="data.name", required=required, help=DATA_HELP),
        option(
            "--split", key="data.split", type=click.Choice(SPLIT_CHOICES),
            help="Which split to evaluate on.",
        ),
        option("--max-samples", key="data.max_samples", type=click.IntRange(min=1), help=samples),
        option("--data-seed", key="data.seed", type=int, help="Seed of the --max-samples subset."),
        option("--batch-size", key="data.batch_size", type=click.IntRange(min=1), help=batch),
        option(
            "--seq-len", key="data.seq_len", type=click.IntRange(min=2), metavar="T",
            help="Token data: cut a flat token stream (tokens:, text:) into windows of T tokens; "
            "cut hf-dataset: rows to T.", none=f"text: {DEFAULT_TEXT_WINDOW}",
        ),
        option(
            "--tokenizer", key="data.tokenizer", metavar="DIR",
            help="Token data: the tokenizer folder text: and hf-dataset: text is encoded with.",
            none="the hf: model's folder",
        ),
        option(
            "--column", key="data.column", help="hf-dataset: the column to read.",
            none="input_ids, else text",
        ),
        option(
            "--labels", "label_column", key="data.labels", metavar="COLUMN",
            help="hf-dataset: a column of class labels, the targets of a sequence classifier.",
        ),
    ]  # fmt: skip

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def family_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A flag for each direction family's own option, as the registry declares it (families.py);
    its help starts with the families that use it."""
    kinds: dict[str, dict[str, Any]] = {
        "value": {},
        "files": {"cls": FileListSetting},
        "flag": {"is_flag": True, "default": None},
        "count": {"type": click.IntRange(min=1)},
    }
    decorators = [
        click.option(
            opt.flag,
            opt.field,
            **{"cls": Setting, **kinds[opt.kind]},
            **({"type": click.Choice(opt.choices)} if opt.choices else {}),
            key=f"direction.{opt.field}",
            metavar=opt.metavar,
            help=f"{', '.join(names)}: {opt.help}",
        )
        for opt, names in families.options()
    ]

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


MODEL_HELP = model_sources.model_help()  # every registered source's form
DATA_HELP = (
    "digits, cifar10:DIR, mnist:DIR, npz:FILE, pt:FILE, tokens:FILE (.npy/.pt token ids), "
    "text:FILE, hf-dataset:DIR or pkg.module:factory."
)


# --- compute ----------------------------------------------------------------------------------


def setting(flag: str, key: str, **kwargs: Any) -> Callable[..., Any]:
    """A compute option that sets the config key ``key``, its default shown from config.py."""
    return click.option(flag, cls=Setting, key=key, **kwargs)


def build_compute_config(
    ctx: click.Context, config_file: str | None, model_args: tuple[str, ...]
) -> ComputeConfig:
    """YAML (if any), then every flag the user actually gave, into one ComputeConfig."""
    raw = load_yaml_file(config_file) if config_file else {}
    overrides: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        source = ctx.get_parameter_source(flag)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            value = ctx.params[flag]
            overrides[key] = list(value) if isinstance(value, tuple) else value
    if model_args:
        from landscape.models import parse_model_args

        merged = dict((raw.get("model") or {}).get("args") or {})
        merged.update(parse_model_args(list(model_args)))
        overrides["model.args"] = merged
    return ComputeConfig.from_dict(apply_overrides(raw, overrides))


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML config; flags override it.",
)
@model_and_data_options(
    checkpoint="Weights: .pt/.pth/.t7/.ckpt state dict (wrapped or not) or .safetensors.",
    samples="Evaluate on N samples (a seeded subset).",
    batch="Samples per forward pass.",
)
@setting(
    "--direction", "direction.name", type=click.Choice(DIRECTION_NAMES), help="Direction family."
)
@setting("--seed", "direction.seed", type=int, help="Seed of the random directions.")
@setting(
    "--repeat",
    "direction.repeat",
    type=click.IntRange(min=1),
    metavar="R",
    help="R surfaces in one file, along directions of seeds SEED..SEED+R-1; info and plot show "
    "their mean and spread.",
)
@setting(
    "--ignore",
    "direction.ignore",
    type=click.Choice(IGNORE_CHOICES),
    help="biasbn: biases and BN parameters do not move.",
)
@setting(
    "--norm", "direction.norm", type=click.Choice(NORM_CHOICES), help="Direction normalization."
)
@setting(
    "--params",
    "direction.params",
    multiple=True,
    metavar="GLOB",
    help="Move only the parameter tensors whose names match (repeatable): 'model.layers.11.*', "
    "'*.self_attn.*', '*lora_*'. The others stay at θ.",
)
@setting(
    "--exclude",
    "direction.exclude",
    multiple=True,
    metavar="GLOB",
    help="Keep the tensors whose names match at θ (repeatable), e.g. '*embed*'.",
)
@setting(
    "--store-directions",
    "direction.store",
    type=click.Choice(STORE_CHOICES),
    help="How the file keeps the directions: full (every tensor), seed (regenerated from the "
    "seed on resume: a 1B-parameter run stores no 8 GB of them), auto (seed above 1 GiB).",
)
@setting(
    "--directions",
    "direction.file",
    type=click.Path(dir_okay=False),
    help="Reuse the directions of an earlier surface file or a Li et al. direction file.",
)
@family_options()
@setting("--x", "grid.x", type=AxisType(), help="x axis as MIN:MAX:NUM.")
@setting("--y", "grid.y", type=AxisType(), help="y axis as MIN:MAX:NUM; omit for a 1-D surface.")
@setting("--z", "grid.z", type=AxisType(), help="z axis as MIN:MAX:NUM: a 3-D grid (with --y).")
@click.option(
    "--axes",
    "axes",
    cls=AxesSetting,
    key="grid.axes",
    type=AxisType(),
    metavar="MIN:MAX:NUM...",
    help=f"An n-D grid, one range per direction (--axes A1 A2 ... Ak, k <= {MAX_AXES}), instead "
    "of --x/--y/--z; random families (filter-norm, qr-orthogonal) build the k directions.",
)
@setting("--loss", "eval.loss", help="cross-entropy, mse or pkg.module:fn.")
@setting("--device", "eval.device", help="auto, cpu, cuda, cuda:N or mps.")
@setting(
    "--engine",
    "eval.engine",
    type=click.Choice(ENGINE_CHOICES),
    help="Point evaluator: reference (one point per call), batched (K per call, vmap) or auto "
    "(timed).",
)
@setting(
    "--bn",
    "eval.bn",
    type=click.Choice(BN_CHOICES),
    help="BatchNorm statistics: eval (the checkpoint's), recalibrate (re-estimated at every "
    "point), train.",
)
@setting(
    "--bn-batches",
    "eval.bn_batches",
    type=click.IntRange(min=1),
    help="recalibrate: training batches per point.",
)
@setting(
    "--dtype",
    "eval.dtype",
    type=click.Choice(DTYPE_CHOICES),
    help="Forward-pass precision (autocast); an hf: folder's weights are loaded in it, halving "
    "a large model's memory.",
)
@setting("--tf32/--no-tf32", "eval.tf32", default=None, help="Allow TF32 matmuls on CUDA.")
@setting(
    "--compile",
    "eval.compile",
    type=click.Choice(COMPILE_CHOICES),
    help="torch.compile: auto pays it only on long runs.",
)
@setting(
    "--fuse",
    "eval.fuse",
    type=click.Choice(FUSE_CHOICES),
    note="with --engine auto",
    help="Fold eval-mode BatchNorm (and a following add and ReLU) into the convolution before "
    "it, per point; changes rounding only.",
)
@setting(
    "--split-forward",
    "eval.split_forward",
    type=click.Choice(SPLIT_FORWARD_CHOICES),
    help="Compute the part of the forward pass no moved tensor reaches once per batch, and only "
    "the rest at each point, its results kept in memory or, over --memory-budget, on disk "
    "(auto: when it pays; on: always); changes no value.",
)
@setting(
    "--memory-format",
    "eval.memory_format",
    type=click.Choice(MEMORY_FORMAT_CHOICES),
    note="timed",
    help="Layout of conv nets.",
)
@setting(
    "--memory-budget",
    "eval.memory_budget",
    metavar="BYTES",
    none="auto",
    help="Activation memory per forward, e.g. 2GB: sets K and caps the batch.",
)
@setting(
    "--threads",
    "eval.threads",
    type=click.IntRange(min=1),
    none="PyTorch's default",
    help="Intra-op threads.",
)
@setting("--out", "out", type=click.Path(dir_okay=False), help="Surface file to write (or resume).")
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing surface file of another config."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local processes sharing the grid (no MPI needed); under mpiexec every rank takes a share instead.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@click.pass_context
@_library_errors
def compute(
    ctx: click.Context,
    config_file: str | None,
    model_args: tuple[str, ...],
    overwrite: bool,
    workers: int,
    quiet: bool,
    **_: Any,
) -> None:
    """Compute a loss surface around a trained network: 1-D, 2-D, or n-D (--z, --axes).

    An existing --out file of the same config is resumed: only missing points are computed.

    \b
    Example:
      landscape compute --model mlp --checkpoint mlp.pt --data digits \\
          --direction filter-norm --x=-1:1:51 --y=-1:1:51 --out results/mlp.h5
    """
    from landscape.runs.surface import run_compute

    config = build_compute_config(ctx, config_file, model_args)
    progress = None if quiet else _progress_bar
    log = None if quiet else functools.partial(click.echo, err=True)
    result = run_compute(config, overwrite=overwrite, progress=progress, workers=workers, log=log)
    if quiet or result is None:  # ranks other than 0 print nothing
        return
    if result.extra.get("complete"):  # found before loading the model and data
        click.echo(
            f"{result.path} is complete: all {result.total} points were computed before, nothing "
            "to compute (same config, grid and checkpoint); --overwrite recomputes it"
        )
    else:
        verb = "resumed" if result.resumed else "wrote"
        repeats = config.direction.repeat
        each = f" ({repeats} repeats of {result.total // repeats})" if repeats > 1 else ""
        click.echo(
            f"{verb} {result.path}: {result.computed} of {result.total} points{each} computed in "
            f"{result.seconds:.1f} s ({result.points_per_second:.1f} points/s on {result.device})"
        )
    if result.nonfinite:
        click.echo(f"note: {result.nonfinite} points have a NaN or infinite loss (stored as such)")


# flag name → dotted config key, from the compute options themselves; a flag given on the
# command line wins over the YAML file (--model-arg KEY=VALUE pairs are merged into model.args)
FLAG_KEYS = {
    p.name: p.key for p in compute.params if isinstance(p, Setting) and p.key != "model.args"
}


def _progress_bar(total: int, initial: int, *, file: Any = None, force: bool = False) -> Any:
    """Points done, points/s and time left on stderr: a bar on a terminal, else (a Slurm log,
    nohup) a line every PROGRESS_SECONDS."""
    from tqdm import tqdm

    stream = file or sys.stderr
    if not (force or stream.isatty()):
        return LineProgress(total, initial, stream)
    return tqdm(
        total=total,
        initial=initial,
        unit="pt",
        desc="points",
        file=stream,
        dynamic_ncols=True,
        mininterval=0.5,
    )


PROGRESS_SECONDS = 30.0


class LineProgress:
    """Progress for a log file: ``points 120/441 (27%), 3.1 points/s, 1m44s left`` at most
    every ``every`` seconds (a bar's carriage returns make a log unreadable)."""

    def __init__(
        self,
        total: int,
        initial: int,
        stream: Any,
        every: float = PROGRESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done, self.stream, self.every, self.clock = (
            total,
            initial,
            stream,
            every,
            clock,
        )
        self.first = initial
        self.start = self.last = clock()

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        rate = (self.done - self.first) / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        share = 100.0 * self.done / max(self.total, 1)
        return (
            f"points {self.done}/{self.total} ({share:.0f}%), {rate:.3g} points/s, "
            f"{_duration(left)} left"
        )

    def close(self) -> None:
        return None  # the command's summary line follows


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown time"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# --- curvature --------------------------------------------------------------------------------


def curvature_setting(flag: str, key: str, **kwargs: Any) -> Callable[..., Any]:
    """A curvature option that sets ``key`` of CurvatureSpec, its default from config.py."""
    return click.option(flag, cls=Setting, key=key, root=CurvatureSpec, fill=True, **kwargs)


@main.command()
@click.argument("surface_file", type=click.Path(dir_okay=False))
@curvature_setting(
    "--x",
    "x",
    type=AxisType(),
    help="x axis as MIN:MAX:NUM.",
    none=f"{CURVATURE_GRID_POINTS} points over the surface's x range",
)
@curvature_setting(
    "--y",
    "y",
    type=AxisType(),
    help="y axis as MIN:MAX:NUM.",
    none=f"{CURVATURE_GRID_POINTS} points over the surface's y range",
)
@curvature_setting(
    "--samples",
    "samples",
    type=click.IntRange(min=1),
    help="Samples the Hessian is taken over (a seeded subset of the surface's own).",
)
@curvature_setting(
    "--tol",
    "tol",
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    help="eigsh tolerance: relative accuracy of λmax and of λmax − λmin.",
)
@curvature_setting(
    "--ignore",
    "ignore",
    type=click.Choice(IGNORE_CHOICES),
    help="none: Hessian over every parameter; biasbn: over weights with filters only (Li et "
    "al.'s code).",
)
@curvature_setting(
    "--checkpoint",
    "checkpoint",
    help="The surface's checkpoint, if it has moved (must hold the same weights).",
)
@curvature_setting(
    "--device", "device", help="auto, cpu, cuda, cuda:N or mps.", none="the surface's"
)
@curvature_setting(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    help="Curvature file to write (or resume).",
    none="SURFACE_curvature.h5 beside the surface",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing curvature file of other settings."
)
@curvature_setting(
    "--model",
    "given.model",
    help="The surface's model spec, given again: needed when the file names pkg.module:factory "
    "or file.py:factory (a file's config never runs code by itself).",
)
@curvature_setting(
    "--data", "given.data", help="The surface's data spec, given again (as --model, for a factory)."
)
@curvature_setting(
    "--loss",
    "given.loss",
    help="The surface's loss spec, given again (as --model, for pkg.module:fn).",
)
@curvature_setting(
    "--trust-config",
    "given.trust_config",
    is_flag=True,
    help="Run the code the file's stored config names (factories, losses): trusted files only.",
)
@curvature_setting(
    "--unsafe-pickle",
    "given.unsafe_pickle",
    is_flag=True,
    help="Allow a pickled whole model as the checkpoint (runs code from it: trusted files only).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@_library_errors
def curvature(
    surface_file: str,
    x: str | None,
    y: str | None,
    samples: int,
    tol: float,
    ignore: str,
    checkpoint: str | None,
    device: str | None,
    out: str | None,
    overwrite: bool,
    model: str | None,
    data: str | None,
    loss: str | None,
    trust_config: bool,
    unsafe_pickle: bool,
    quiet: bool,
) -> None:
    """Map |λmin/λmax| of the Hessian over a surface's plane (Li et al. 2018, Fig. 7).

    At each point of a coarse grid on the surface's plane, the largest and smallest eigenvalues
    of the Hessian of the loss, rebuilt from the surface file's model, checkpoint, data, loss and
    directions. Near 0: locally convex; large: significant negative curvature. An existing --out
    file of the same settings is resumed. Plot it with `landscape plot`.

    The file's stored config is read as data: a model, data or loss it names as
    pkg.module:name or file.py:name runs only when given again (--model, --data, --loss) or
    with --trust-config, and a pickled whole model only with --unsafe-pickle.

    \b
    Example:
      landscape curvature results/mlp.h5 --x=-1:1:11 --y=-1:1:11 --samples 500
      landscape plot results/mlp_curvature.h5
    """
    from landscape.config import Given
    from landscape.runs.curvature import run_curvature

    given = Given(model, data, loss, trust_config, unsafe_pickle)
    spec = CurvatureSpec(surface_file, x, y, samples, tol, ignore, checkpoint, device, out, given)
    progress = None if quiet else _progress_bar
    result = run_curvature(spec, overwrite=overwrite, progress=progress)
    if quiet:
        return
    verb = "resumed" if result.resumed else "wrote"
    click.echo(
        f"{verb} {result.path}: {result.computed} of {result.total} points computed in "
        f"{result.seconds:.1f} s ({result.hvps} Hessian-vector products on {result.device})"
    )
    if result.failed:
        click.echo(
            f"note: {result.failed} points have NaN eigenvalues (a non-finite loss, or eigsh did "
            "not converge: try a larger --tol)"
        )


# --- plot / info ------------------------------------------------------------------------------


@main.command()
@click.argument("surface_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--compare", is_flag=True, help="Draw the files side by side on one colour scale and level set."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder for the figures [beside the file].",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="1d, contour, contourf, heatmap, surface3d, barcode, mergetree (repeatable) [all].",
)
@click.option(
    "--log/--linear", "log", default=None, help="Only the log or only the linear scale [both]."
)
@click.option("--vmin", type=float, help="Lowest value on the colour scale / contour levels.")
@click.option("--vmax", type=float, help="Highest value on the colour scale / contour levels.")
@click.option("--levels", type=click.IntRange(min=2), help="Number of contour levels [30].")
@click.option("--format", "fmt", default="png", show_default=True, help="png, pdf or svg.")
@click.option(
    "--dpi",
    type=int,
    default=150,
    show_default=True,
    help="Resolution of png files, dots per inch.",
)
@_library_errors
def plot(
    surface_files: tuple[str, ...],
    compare: bool,
    out_dir: str | None,
    kinds: tuple[str, ...],
    log: bool | None,
    vmin: float | None,
    vmax: float | None,
    levels: int | None,
    fmt: str,
    dpi: int,
) -> None:
    """Draw curves, contours, heat maps and 3-D views of surface files.

    With gudhi installed (pip install 'landscape[topology]'), each loss of a complete grid also
    gets its persistence barcode and the merge tree of its basins, and its significant minima
    (persistence above 2 standard errors) are marked on the contour plots and 1-D curves.

    Reads landscape files and Li et al.'s reference surface files. With --compare, several
    surfaces are drawn side by side on one shared colour scale and level set. A curvature file
    (landscape curvature) gives heat maps of |λmin/λmax|, λmin and λmax.

    \b
    Example:
      landscape plot results/mlp.h5 --out results/mlp-plots --log
      landscape plot --compare results/filter-norm.h5 results/pca.h5 --out results/compare
    """
    import matplotlib

    matplotlib.use("Agg")
    from landscape.plot import render_all
    from landscape.store import read_surface

    curvature_files = _curvature_files(surface_files, compare, kinds, log, vmin, levels)
    surfaces = [read_surface(f) for f in surface_files if f not in curvature_files]
    scales = ("linear", "log") if log is None else (("log",) if log else ("linear",))
    options = {
        "scales": scales,
        "fmt": fmt,
        "vmin": vmin,
        "vmax": vmax,
        "levels": levels,
        "dpi": dpi,
    }
    target = Path(out_dir) if out_dir else Path(surface_files[0]).parent
    chosen = list(kinds) or None
    if compare:
        from landscape.plot.compare import render_compare

        written = render_compare(surfaces, target, kinds=chosen, **options)
    else:
        written = [
            path for s in surfaces for path in render_all(s, target, kinds=chosen, **options)
        ]
    if curvature_files:
        from landscape.plot.curvature import render_curvature
        from landscape.store.curvature import read_curvature

        for f in curvature_files:
            written += render_curvature(read_curvature(f), target, fmt=fmt, dpi=dpi, vmax=vmax)
    for path in written:
        click.echo(str(path))


class ThresholdType(click.ParamType):
    """A loss value, or ``+DELTA`` for the centre's loss plus DELTA."""

    name = "LOSS|+DELTA"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float | None, float | None]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            self.fail(f"{value!r} is neither a loss value nor +DELTA (e.g. 0.5 or +1)", param, ctx)
        return (None, number) if text.startswith("+") else (number, None)


def _curvature_files(
    files: tuple[str, ...],
    compare: bool,
    kinds: tuple[str, ...],
    log: bool | None,
    vmin: float | None,
    levels: int | None,
) -> list[str]:
    """The curvature files among ``files``; their figures take only --out/--format/--dpi/--vmax."""
    from landscape.store.curvature import is_curvature_file

    found = [f for f in files if is_curvature_file(f)]
    if found and (compare or kinds or log is not None or vmin is not None or levels is not None):
        raise click.UsageError(
            f"{found[0]} is a curvature file: its plots take --out, --format, --dpi and --vmax "
            "(the top of the |λmin/λmax| colour scale) only"
        )
    return found


@main.command()
@click.argument("surface_file", type=click.Path(dir_okay=False))
@click.option(
    "--epsilon",
    type=click.FloatRange(min=0, min_open=True),
    help="Half-width of the ε-sharpness box, in grid coordinates [0.2].",
)
@click.option(
    "--threshold",
    type=ThresholdType(),
    help="Basin level: a loss value, or +DELTA above the centre's loss [+1].",
)
@click.option(
    "--fit-radius",
    type=click.FloatRange(min=0, min_open=True),
    help="Half-width of the box the quadratic is fitted over [25% of each axis' half-range].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON instead.")
@_library_errors
def info(
    surface_file: str,
    epsilon: float | None,
    threshold: tuple[float | None, float | None] | None,
    fit_radius: float | None,
    as_json: bool,
) -> None:
    """Print a surface (or curvature) file's grid, completion, extremes, analysis and provenance;
    a spectrum file's eigenvalues, trace and density (``landscape hessian``).

    The analysis of each loss: ε-sharpness at the centre (Keskar et al. 2017), curvature from a
    quadratic fit, basin width at a loss threshold and the grid minimum. It is stored in the file
    when a compute run completes; other options compute it anew.

    \b
    Example:
      landscape info results/mlp.h5
      landscape info results/mlp.h5 --epsilon 0.1 --threshold=+0.5 --json
    """
    from landscape.analysis import AnalysisOptions, analysis_report
    from landscape.info import format_curvature_info, format_info
    from landscape.store import read_surface
    from landscape.store.curvature import is_curvature_file, read_curvature

    if is_curvature_file(surface_file):
        click.echo(format_curvature_info(read_curvature(surface_file)))
        return
    from landscape.store.spectrum import is_spectrum_file

    if is_spectrum_file(surface_file):  # a `landscape hessian` file: its summary
        from landscape.runs.hessian import Spectrum

        click.echo(repr(Spectrum.read(surface_file)))
        return

    chosen: dict[str, Any] = {"epsilon": epsilon, "fit_radius": fit_radius}
    if threshold is not None:
        chosen["threshold"], rise = threshold
        chosen["rise"] = rise
    options = AnalysisOptions(**{k: v for k, v in chosen.items() if v is not None})
    surface = read_surface(surface_file)
    if as_json:
        click.echo(json.dumps(analysis_report(surface, options), indent=2, sort_keys=True))
    else:
        click.echo(format_info(surface, options))


@main.command()
@click.argument("surface_file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="File to write: .vtp (ParaView), .html (interactive 3-D view, no network needed), "
    ".npz or .csv (every value as plain arrays) [SURFACE with the --format's extension].",
)
@click.option("--quantity", help="What the height is, e.g. test_loss [the first loss].")
@click.option("--log", is_flag=True, help="Height is log10 of the quantity.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["vtp", "html", "npz", "csv"]),
    help="Output format [from the --out extension].",
)
@_library_errors
def export(
    surface_file: str, out: str | None, quantity: str | None, log: bool, fmt: str | None
) -> None:
    """Export a surface as ParaView VTK PolyData (.vtp), a self-contained HTML 3-D view, or
    plain arrays (.npz for numpy, long-format .csv: one row per grid point).

    Reads landscape files and Li et al.'s reference surface files. Points not computed are left
    out of the 3-D views (cells with such a corner are skipped; null in the HTML's data) and are
    NaN in the arrays, which hold the coordinates, every quantity and the done flags under the
    file's own names.

    \b
    Example:
      landscape export results/mlp.h5 --out results/mlp.vtp --log
      landscape export results/mlp.h5 --out results/mlp.html --quantity train_loss
      landscape export results/mlp.h5 --format npz     # writes results/mlp.npz
    """
    from landscape.plot.export import export_surface
    from landscape.store import read_surface

    path = export_surface(read_surface(surface_file), out, quantity=quantity, log=log, fmt=fmt)
    click.echo(str(path))


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Folder to write into [results/demo; with --llm, results/llm].",
)
@click.option(
    "--llm",
    is_flag=True,
    help="A tiny GPT-2 trained for a minute on Python's own pydoc text (needs the hf extra).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_library_errors
def demo(out_dir: str | None, llm: bool, quiet: bool) -> None:
    """Train a small MLP on scikit-learn's digits (or, with --llm, a tiny GPT on Python's pydoc
    text), compute its surface and plot it.

    \b
    Example:
      landscape demo --out results/demo
      landscape demo --llm --out results/llm
    """
    import matplotlib

    matplotlib.use("Agg")
    progress = None if quiet else _progress_bar
    out_dir = out_dir or ("results/llm" if llm else "results/demo")
    if llm:
        from landscape.demo_llm import run_llm_demo

        lines = run_llm_demo(Path(out_dir), progress=progress, log=click.echo)
    else:
        from landscape.demo import run_demo

        lines = run_demo(Path(out_dir), progress=progress, log=click.echo)
    for line in lines:
        click.echo(line)


# --- inspect ----------------------------------------------------------------------------------


def inspect_setting(*decls: str, **kwargs: Any) -> Callable[..., Any]:
    """An inspect option: ``decls`` are its flag, its InspectConfig key and, if it differs from
    the key, its parameter's name; its default comes from config.py."""
    flag, key, *name = decls
    kwargs.setdefault("cls", Setting)
    return click.option(flag, *name, key=key, root=InspectConfig, fill=True, **kwargs)


@main.command()
@model_and_data_options(
    checkpoint="Weights to inspect.",
    unset_checkpoint="the initialization, seeded by --seed; with --checkpoints, the last",
    samples="Samples run through the model (a seeded subset).",
    batch="Samples per forward pass; saturation is measured on the first batch.",
    root=InspectConfig,
    required=True,
)
@inspect_setting("--seed", "seed", type=int, help="Seed of the initialization.")
@inspect_setting("--device", "device", help="auto, cpu, cuda, cuda:N or mps.")
@inspect_setting(
    "--checkpoints",
    "checkpoints",
    cls=FileListSetting,
    metavar="CKPT...",
    help="Checkpoints saved during training, in order (--checkpoints A B C, a folder or a glob): "
    "how far each layer moved from the first; flags layers that did not learn.",
)
@inspect_setting(
    "--epsilon",
    "epsilon",
    type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
    help="Saturation: a softmax output within epsilon of 0 or 1 is saturated.",
)
@click.option(
    "--json", "json_file", type=click.Path(dir_okay=False), help="Write the report as JSON."
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False),
    help="Folder for weight, activation and checkpoint figures (PNG).",
)
@inspect_setting(
    "--tensorboard",
    "tensorboard",
    "tensorboard_dir",
    type=click.Path(file_okay=False),
    help="Folder for TensorBoard events: weight histograms per layer (one step per checkpoint "
    "with --checkpoints) and activation histograms; needs landscape[tensorboard].",
)
@click.option("--no-fail", is_flag=True, help="Exit 0 even when an error is found.")
@click.pass_context
@_library_errors
def inspect(
    ctx: click.Context,
    model: str,
    model_args: tuple[str, ...],
    checkpoint: str | None,
    adapter: str | None,
    unsafe_pickle: bool,
    data: str,
    split: str,
    max_samples: int,
    data_seed: int,
    batch_size: int,
    seq_len: int | None,
    tokenizer: str | None,
    column: str | None,
    label_column: str | None,
    seed: int,
    device: str,
    checkpoints: tuple[str, ...],
    epsilon: float,
    json_file: str | None,
    plots_dir: str | None,
    tensorboard_dir: str | None,
    no_fail: bool,
) -> None:
    """Diagnose a network before or after training, like a linter.

    Per layer: weight statistics, activation scale and dead ReLU units. Checks: units that
    never break symmetry (symmetry), dead ReLUs (dead-units), a saturated softmax on the first
    batch (saturation), activations growing with depth (activation-growth) and, with
    --checkpoints, layers that did not move during training (not-learning). Exits 3 when a
    finding of severity error is present (--no-fail: always 0).

    \b
    Example:
      landscape inspect --model mlp --data digits --json report.json --plots plots/
      landscape inspect --model resnet20 --checkpoint r20.t7 --data cifar10:DATA --split test
      landscape inspect --model mlp --data digits --checkpoints 'runs/mlp/epoch*.pt'
      landscape inspect --model mlp --data digits --checkpoints e1.pt e5.pt e10.pt
      landscape inspect --model mlp --data digits --checkpoints 'runs/*.pt' --tensorboard tb/
    """
    from landscape.config import DataSpec, ModelSpec
    from landscape.diagnostics import format_report, write_json
    from landscape.models import parse_model_args
    from landscape.runs.inspect import run_inspect

    config = InspectConfig(
        model=ModelSpec(
            model, checkpoint, parse_model_args(list(model_args)), unsafe_pickle, adapter
        ),
        data=DataSpec(
            data,
            split,
            max_samples,
            data_seed,
            batch_size,
            seq_len=seq_len,
            tokenizer=tokenizer,
            column=column,
            labels=label_column,
        ),
        checkpoints=checkpoints,
        epsilon=epsilon,
        seed=seed,
        device=device,
        tensorboard=tensorboard_dir,
    )
    if json_file and Path(json_file).parent.is_dir():  # refused before the model is loaded
        from landscape._files import check_output

        check_output(json_file, "--json")
    report = run_inspect(config)
    click.echo(format_report(report))
    if json_file:
        click.echo(f"wrote {write_json(report, json_file)}")
    if plots_dir:
        import matplotlib

        matplotlib.use("Agg")
        from landscape.diagnostics.plots import render_plots

        for path in render_plots(report, plots_dir):
            click.echo(f"wrote {path}")
    if tensorboard_dir:
        click.echo(
            f"wrote TensorBoard events to {tensorboard_dir} (tensorboard --logdir {tensorboard_dir})"
        )
    if report.has_errors and not no_fail:
        ctx.exit(3)


# --- hessian ----------------------------------------------------------------------------------


def hessian_setting(*decls: str, **kwargs: Any) -> Callable[..., Any]:
    """A hessian option: ``decls`` are its flag, its HessianConfig key (``spectrum.top_k``) and,
    if it differs from the flag, its parameter's name; its default comes from spectrum.settings."""
    flag, key, *name = decls
    kwargs.setdefault("cls", Setting)
    return click.option(flag, *name, key=key, root=HessianConfig, fill=True, **kwargs)


@main.command()
@model_and_data_options(
    checkpoint="Weights at which the Hessian is taken.",
    unset_checkpoint="the initialization, seeded by 0",
    samples="Keep a seeded subset of this many samples of the data (--samples then picks from it).",
    batch="Samples per batch read (each Hessian pass covers at most 128).",
    root=HessianConfig,
    required=True,
)
@hessian_setting(
    "--params",
    "spectrum.params",
    "params_globs",
    multiple=True,
    metavar="GLOB",
    help="Take H over the parameter tensors matching this glob (repeatable; all by default).",
)
@hessian_setting(
    "--exclude",
    "spectrum.exclude",
    "exclude_globs",
    multiple=True,
    metavar="GLOB",
    help="Leave out the parameter tensors matching this glob (repeatable).",
)
@hessian_setting(
    "--top-k",
    "spectrum.top_k",
    type=click.IntRange(min=1),
    help="Eigenpairs at each end asked for.",
)
@hessian_setting(
    "--which",
    "spectrum.which",
    type=click.Choice(SPECTRUM_WHICH),
    help="The largest eigenvalues, the smallest, or both.",
)
@hessian_setting(
    "--tol",
    "spectrum.tol",
    type=float,
    help="Lanczos (eigsh) tolerance: residual below tol·|λ| (PyHessian's: 1e-3).",
)
@hessian_setting(
    "--max-restarts",
    "spectrum.max_restarts",
    type=click.IntRange(min=1),
    help="Lanczos restarts before giving up.",
)
@hessian_setting(
    "--trace",
    "spectrum.trace",
    type=click.Choice(SPECTRUM_TRACE),
    help="Trace estimator (Rademacher vectors), with its standard error.",
)
@hessian_setting(
    "--trace-samples",
    "spectrum.trace_samples",
    type=click.IntRange(min=2),
    help="Hessian-vector products the trace spends (PyHessian's maxIter: 100).",
)
@hessian_setting(
    "--density/--no-density",
    "spectrum.density",
    help="The spectral density by stochastic Lanczos quadrature.",
)
@hessian_setting(
    "--lanczos-steps",
    "spectrum.lanczos_steps",
    type=click.IntRange(min=1),
    help="--density: Lanczos steps per start (PyHessian's iter).",
)
@hessian_setting(
    "--density-runs",
    "spectrum.density_runs",
    type=click.IntRange(min=1),
    help="--density: random starts averaged (PyHessian's n_v).",
)
@hessian_setting(
    "--sigma2",
    "spectrum.sigma2",
    type=float,
    help="--density: Gaussian variance, times max(1, λmax − λmin).",
)
@hessian_setting(
    "--density-points",
    "spectrum.density_points",
    type=click.IntRange(min=2),
    help="--density: grid points.",
)
@hessian_setting(
    "--per-layer/--no-per-layer",
    "spectrum.per_layer",
    help="Also each module's block of H: its top eigenvalues and trace.",
)
@hessian_setting(
    "--samples",
    "spectrum.samples",
    type=click.IntRange(min=1),
    help="The Hessian is of the mean loss over a seeded subset of this many samples.",
    none="all",
)
@hessian_setting(
    "--graph",
    "spectrum.graph",
    type=click.Choice(SPECTRUM_GRAPH),
    help="Keep each chunk's gradient graph between products (reuse), rebuild it "
    "(recompute), or follow the memory plan (auto).",
)
@hessian_setting(
    "--seed", "spectrum.seed", type=click.IntRange(min=0), help="Seed of the random start vectors."
)
@hessian_setting("--loss", "loss", help="cross-entropy, mse or pkg.module:fn.")
@hessian_setting("--device", "device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--out", type=click.Path(dir_okay=False), help="Spectrum file to write (HDF5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False),
    help="Folder for the figures: eigenvalues, density, per-layer (PNG).",
)
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
@_library_errors
def hessian(
    model: str, model_args: tuple[str, ...], checkpoint: str | None, adapter: str | None,
    unsafe_pickle: bool, data: str, split: str, max_samples: int | None, data_seed: int,
    batch_size: int, seq_len: int | None, tokenizer: str | None, column: str | None,
    label_column: str | None, params_globs: tuple[str, ...], exclude_globs: tuple[str, ...],
    top_k: int, which: str, tol: float, max_restarts: int, trace: str, trace_samples: int,
    density: bool, lanczos_steps: int, density_runs: int, sigma2: float, density_points: int,
    per_layer: bool, samples: int | None, graph: str, seed: int, loss: str, device: str,
    out: str | None, overwrite: bool, plot_dir: str | None, quiet: bool,
) -> None:  # fmt: skip
    """The Hessian spectrum of the loss at the checkpoint's weights.

    Top (or bottom) eigenvalues and eigenvectors by Lanczos, the trace by Hutchinson or Hutch++
    with its standard error, the spectral density by stochastic Lanczos quadrature (--density),
    over all parameters or a --params subset, per module on request (--per-layer).

    \b
    Example:
      landscape hessian --model mlp --data digits --top-k 5 --density --out spectrum.h5
      landscape hessian --model resnet20 --checkpoint r20.t7 --data cifar10:DATA \\
          --samples 200 --trace hutch++ --density --plot plots/ --out r20_spectrum.h5
    """
    from landscape.config import DataSpec, ModelSpec
    from landscape.models import parse_model_args
    from landscape.runs.hessian import run_hessian
    from landscape.spectrum.settings import SpectrumSettings

    config = HessianConfig(
        model=ModelSpec(
            model, checkpoint, parse_model_args(list(model_args)), unsafe_pickle, adapter
        ),
        data=DataSpec(
            data, split, max_samples, data_seed, batch_size, seq_len=seq_len,
            tokenizer=tokenizer, column=column, labels=label_column,
        ),
        spectrum=SpectrumSettings(
            top_k=top_k, which=which, tol=tol, max_restarts=max_restarts, trace=trace,
            trace_samples=trace_samples, density=density, lanczos_steps=lanczos_steps,
            density_runs=density_runs, sigma2=sigma2, density_points=density_points,
            per_layer=per_layer, samples=samples, graph=graph, params=params_globs,
            exclude=exclude_globs, seed=seed,
        ),
        loss=loss,
        device=device,
        out=out,
    )  # fmt: skip
    if plot_dir:
        from landscape._files import writable_folder

        writable_folder(plot_dir, "--plot")  # refused before the model is loaded
    result = run_hessian(config, overwrite=overwrite)
    if not quiet:
        for line in result.summary():
            click.echo(line)
    if out:
        click.echo(f"wrote {out}")
    if plot_dir:
        import matplotlib

        matplotlib.use("Agg")
        for path in result.plot(plot_dir):
            click.echo(f"wrote {path}")


# --- align ------------------------------------------------------------------------------------


@main.command()
@model_and_data_options(
    checkpoint="Weights of model A, which B is aligned to.",
    unset_checkpoint="the weights an hf: folder or saved program carries",
    samples="Samples both models run on (a seeded subset): activations are matched on them; "
    "with either method the aligned B is checked on the first, and a model torch.fx cannot "
    "trace is traced on them by torch.export.",
    batch="Samples per forward pass.",
    root=InspectConfig,
)
@click.option(
    "--target",
    required=True,
    type=click.Path(dir_okay=False),
    help="Checkpoint of model B, the one permuted (same architecture as --checkpoint).",
)
@click.option(
    "--method",
    type=click.Choice(alignment.METHODS),
    default=alignment.DEFAULT_METHOD,
    show_default=True,
    help="weights: weight matching (no data); activations: correlation of unit activations "
    "on --data.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Order weight matching visits the groups in.",
)
@click.option(
    "--device",
    default=alignment.DEFAULT_DEVICE,
    show_default=True,
    help="--method activations: auto, cpu, cuda, cuda:N or mps.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The aligned checkpoint of B to write (.safetensors; permutations in its header).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@_library_errors
def align(
    model: str | None,
    model_args: tuple[str, ...],
    checkpoint: str | None,
    adapter: str | None,
    unsafe_pickle: bool,
    data: str | None,
    split: str,
    max_samples: int,
    data_seed: int,
    batch_size: int,
    seq_len: int | None,
    tokenizer: str | None,
    column: str | None,
    label_column: str | None,
    target: str,
    method: str,
    seed: int,
    device: str,
    out: str,
    overwrite: bool,
) -> None:
    """Permute the hidden units of model B to match model A, keeping what B computes.

    The permutation groups are read off the model's graph (torch.fx: linear and conv layers,
    BatchNorm, pooling, flatten, residual sums) or, for hf: GPT-2- and Llama-shaped models, off
    their MLP and attention blocks. --method weights maximizes the inner product of the weights
    (Git Re-Basin weight matching); --method activations the correlation of unit activations on
    --data. The aligned B is written as safetensors, loadable with --checkpoint; the
    permutations, method and both checkpoints' hashes are in its header.

    \b
    Example:
      landscape align --model mlp --checkpoint a.pt --target b.pt --out b_aligned.safetensors
      landscape align --model resnet20 --checkpoint a.t7 --target b.t7 --data cifar10:DATA \\
          --method activations --out b_aligned.safetensors
    """
    from landscape.config import DataSpec, ModelSpec
    from landscape.models import parse_model_args
    from landscape.runs.align import run_align

    if not model:
        raise click.UsageError("Missing option '--model'.")
    spec = ModelSpec(model, checkpoint, parse_model_args(list(model_args)), unsafe_pickle, adapter)
    data_spec = None
    if data:
        data_spec = DataSpec(
            data, split, max_samples, data_seed, batch_size, seq_len=seq_len,
            tokenizer=tokenizer, column=column, labels=label_column,
        )  # fmt: skip
    run = run_align(
        spec, target, out, data=data_spec, method=method, seed=seed, device=device,
        overwrite=overwrite,
    )  # fmt: skip
    click.echo(f"wrote {run.path}: {target} aligned to {checkpoint or model}")
    click.echo(run.alignment.summary())


# --- connect ----------------------------------------------------------------------------------


def connect_setting(flag: str, key: str, **kwargs: Any) -> Callable[..., Any]:
    """A connect option: its ConnectConfig key (``train.lr``) gives its default and help."""
    from landscape.runs.connect_settings import ConnectConfig

    return click.option(flag, cls=Setting, key=key, root=ConnectConfig, fill=True, **kwargs)


@main.command()
@click.option("--model", required=True, help=MODEL_HELP)
@click.option(
    "--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
    help="Keyword argument for the model factory (repeatable).",
)  # fmt: skip
@click.option("--checkpoint", required=True, help="A: the curve's first end (t = 0).")
@click.option("--target", required=True, help="B: the curve's other end (t = 1).")
@click.option(
    "--unsafe-pickle", is_flag=True,
    help="Allow a pickled whole model (runs code from the file: trusted files only).",
)  # fmt: skip
@click.option("--data", required=True, help=DATA_HELP + " Its training split trains the bend.")
@connect_setting(
    "--curve", "train.curve", type=click.Choice(("bezier", "polychain")),
    help="Quadratic Bézier through the bend, or the two-segment chain A → C → B.",
)  # fmt: skip
@connect_setting(
    "--epochs", "train.epochs", type=click.IntRange(min=1), help="Passes over the data."
)
@connect_setting("--lr", "train.lr", type=float, help="SGD learning rate.")
@connect_setting("--momentum", "train.momentum", type=float, help="SGD momentum.")
@connect_setting("--weight-decay", "train.weight_decay", type=float, help="Weight decay on C.")
@connect_setting(
    "--batch-size", "train.batch_size", type=click.IntRange(min=1), help="Samples per SGD step."
)
@connect_setting(
    "--seed", "train.seed", type=click.IntRange(min=0),
    help="Seeds the shuffles, the t drawn at each step and dropout.",
)  # fmt: skip
@connect_setting("--loss", "loss", help="cross-entropy, mse or pkg.module:fn.")
@connect_setting("--device", "device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False),
    help="The curve file to write (safetensors: A, B, C and how C was trained).",
)  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (or its partial run).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
@_library_errors
def connect(
    model: str, model_args: tuple[str, ...], checkpoint: str, target: str, unsafe_pickle: bool,
    data: str, curve: str, epochs: int, lr: float, momentum: float, weight_decay: float,
    batch_size: int, seed: int, loss: str, device: str, out: str, overwrite: bool, quiet: bool,
) -> None:  # fmt: skip
    """Train a low-loss curve between two networks (Garipov et al. 2018).

    The bend C of a quadratic Bézier (or a polychain A → C → B) starts at the midpoint of
    --checkpoint A and --target B and is trained by SGD on the training data, with a fresh
    t ~ U(0, 1) at every step (BatchNorm on batch statistics). A killed run resumes where it
    stopped when the same command is rerun. Evaluate the curve with
    `compute --direction curve --curve FILE` (add --bn recalibrate for BatchNorm models).

    \b
    Example:
      landscape connect --model mlp --checkpoint a.pt --target b.pt --data digits \\
          --curve bezier --epochs 20 --out ab.curve.safetensors
      landscape compute --model mlp --checkpoint a.pt --data digits --direction curve \\
          --curve ab.curve.safetensors --x=0:1:21 --out ab_curve.h5
    """
    from landscape.config import DataSpec, ModelSpec
    from landscape.models import parse_model_args
    from landscape.runs.connect import run_connect
    from landscape.runs.connect_settings import ConnectConfig, TrainSettings

    config = ConnectConfig(
        model=ModelSpec(model, checkpoint, parse_model_args(list(model_args)), unsafe_pickle),
        data=DataSpec(data, "train"),
        target=target,
        out=out,
        train=TrainSettings(
            curve=curve, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
            batch_size=batch_size, seed=seed,
        ),
        loss=loss,
        device=device,
    )  # fmt: skip
    bar = None if quiet else _steps_bar
    result = run_connect(config, overwrite=overwrite, progress=bar)
    if not quiet:
        losses = ", ".join(f"{v:.4g}" for v in result.losses)
        click.echo(f"{result.kind} curve trained; mean training loss per epoch: {losses}")
    click.echo(f"wrote {out}")


def _steps_bar(total: int, initial: int, *, file: Any = None) -> Any:
    """SGD steps done on stderr: a bar on a terminal, else a line now and then."""
    from tqdm import tqdm

    stream = file or sys.stderr
    if not stream.isatty():
        return StepProgress(total, initial, stream)
    return tqdm(
        total=total, initial=initial, unit="step", desc="curve", file=stream,
        dynamic_ncols=True, mininterval=0.5,
    )  # fmt: skip


class StepProgress(LineProgress):
    """``steps 120/441 (27%), 3.1 steps/s, 1m44s left``: a curve's training in a log file."""

    def line(self, now: float) -> str:
        return super().line(now).replace("points", "steps")


# --- sweep ------------------------------------------------------------------------------------


@main.command()
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="List the runs, their status and files; compute nothing."
)
@click.option(
    "--slurm",
    "slurm_script",
    type=click.Path(dir_okay=False),
    help="Write a SLURM job-array script for the runs not complete (configs beside it); compute nothing.",
)
@click.option(
    "--gpus-per-task",
    cls=Setting,
    key="gpus_per_task",
    root=SlurmSpec,
    fill=True,
    type=click.IntRange(min=1),
    help="--slurm: GPUs (and MPI ranks) per run.",
)
@click.option(
    "--partition",
    cls=Setting,
    key="partition",
    root=SlurmSpec,
    fill=True,
    help="--slurm: the SLURM partition.",
)
@click.option(
    "--time",
    "time_limit",
    cls=Setting,
    key="time",
    root=SlurmSpec,
    fill=True,
    help="--slurm: time limit per run.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace surface files of another config (complete runs are kept).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary lines.")
@_library_errors
def sweep(
    sweep_file: str,
    dry_run: bool,
    slurm_script: str | None,
    gpus_per_task: int,
    partition: str | None,
    time_limit: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Run every config of a sweep file (a config plus lists under `sweep:`), in turn.

    The sweep is the cross product of the lists. Complete surface files are skipped and partial
    ones resumed, so rerunning a sweep finishes it.

    \b
    Example:
      landscape sweep configs/li2018/sweep-resnet56.yaml --dry-run
      landscape sweep configs/li2018/sweep-resnet56.yaml
      landscape sweep configs/li2018/sweep-resnet56.yaml --slurm jobs/sweep.sh --gpus-per-task 4
    """
    from landscape.runs.sweep import expand_sweep, missing_input, run_sweep, status, write_slurm

    runs = expand_sweep(sweep_file)
    if dry_run:
        click.echo(f"{len(runs)} runs in {sweep_file}")
        for run in runs:
            state = status(run)
            why = f"  ({missing_input(run.config)})" if state == "missing" else ""
            click.echo(f"{run.index:3d}  {state:8s}  {run.label()}  {run.config.out}{why}")
        return
    if slurm_script:
        path = write_slurm(
            runs, slurm_script, gpus_per_task=gpus_per_task, partition=partition, time=time_limit
        )
        click.echo(f"wrote {path}; submit it with: sbatch {path}")
        return
    run_sweep(
        runs,
        overwrite=overwrite,
        progress=None if quiet else _progress_bar,
        log=None if quiet else click.echo,
    )


# --- study --------------------------------------------------------------------------------------


@main.group()
def study() -> None:
    """Studies of several networks in one command (complete files are skipped on a rerun).

    \b
    Example:
      landscape study pair --model mlp --checkpoint a.pt --target b.pt --data digits --out study
    """


@study.command("pair")
@model_and_data_options(
    checkpoint="Weights of model A (t = 0 on every path).",
    samples="Samples the paths are evaluated on (a seeded subset); activations are matched "
    "on them too.",
    batch="Samples per forward pass.",
    root=InspectConfig,
    required=True,
)
@click.option(
    "--target",
    required=True,
    type=click.Path(dir_okay=False),
    help="Checkpoint of model B (t = 1), same architecture as --checkpoint.",
)
@click.option("--x", "x", default=STUDY_X, show_default=True, help="The grid along t: MIN:MAX:NUM.")
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Choice(tuple(STUDY_PATHS)),
    help=f"The paths to compute (repeatable) [{', '.join(STUDY_PATHS)}].",
)
@click.option(
    "--bn",
    type=click.Choice(BN_CHOICES),
    default=EvalSpec.bn,
    show_default=True,
    help="BatchNorm statistics at each point (recalibrate: re-estimated on the data, REPAIR-style).",
)
@click.option(
    "--curve", "curve_kind", type=click.Choice(("bezier", "polychain")), default=PairStudy.curve,
    show_default=True, help="The connecting curve trained for the curve path (landscape connect).",
)  # fmt: skip
@click.option(
    "--curve-epochs", type=click.IntRange(min=1), default=PairStudy.curve_epochs, show_default=True,
    help="Epochs of SGD on the curve's bend (on the data's training split).",
)  # fmt: skip
@click.option(
    "--y", "y", default=STUDY_Y, show_default=True,
    help="The plane view's y axis (toward the bend C): MIN:MAX:NUM, auto (from C) or none.",
)  # fmt: skip
@click.option(
    "--plane-x", default=STUDY_PLANE_X, show_default=True,
    help="The plane view's x axis (A at 0, B at 1): MIN:MAX:NUM.",
)  # fmt: skip
@click.option(
    "--device", default=EvalSpec.device, show_default=True, help="auto, cpu, cuda, cuda:N or mps."
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The study's folder.")
@click.option("--overwrite", is_flag=True, help="Replace surface files of another config.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-run lines.")
@_library_errors
def study_pair(
    model: str,
    model_args: tuple[str, ...],
    checkpoint: str | None,
    adapter: str | None,
    unsafe_pickle: bool,
    data: str,
    split: str,
    max_samples: int | None,
    data_seed: int,
    batch_size: int,
    seq_len: int | None,
    tokenizer: str | None,
    column: str | None,
    label_column: str | None,
    target: str,
    x: str,
    paths: tuple[str, ...],
    bn: str,
    curve_kind: str,
    curve_epochs: int,
    y: str,
    plane_x: str,
    device: str,
    out: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """The straight, aligned and curved paths from A to B, with their barriers.

    Trains a Bézier curve between A and B (OUT/curve.safetensors, as landscape connect does)
    and computes OUT/straight.h5, OUT/aligned-weights.h5 and OUT/aligned-activations.h5 (1-D
    interpolate surfaces, the last two with --align), OUT/curve.h5 (along the curve) and
    OUT/plane.h5 (the plane through A, B and the bend C), the comparison figures (loss and
    error against t, +-2 s.e., barriers marked), the plane view and OUT/summary.txt. A rerun
    skips complete files and resumes partial ones (the curve's training too).

    \b
    Example:
      landscape study pair --model mlp --checkpoint a.pt --target b.pt --data digits --out study
    """
    import matplotlib

    matplotlib.use("Agg")
    from landscape.config import DataSpec, ModelSpec
    from landscape.models import parse_model_args
    from landscape.runs.study import run_pair

    spec = PairStudy(
        ModelSpec(model, checkpoint, parse_model_args(list(model_args)), unsafe_pickle, adapter),
        target,
        DataSpec(
            data, split, max_samples, data_seed, batch_size, seq_len=seq_len,
            tokenizer=tokenizer, column=column, labels=label_column,
        ),
        out, x=x, paths=paths or tuple(STUDY_PATHS), bn=bn, device=device, curve=curve_kind,
        curve_epochs=curve_epochs, y=y, plane_x=plane_x,
    )  # fmt: skip
    result = run_pair(
        spec, overwrite=overwrite, progress=None if quiet else _progress_bar,
        log=None if quiet else click.echo, curve_progress=None if quiet else _steps_bar,
    )  # fmt: skip
    for path in result.figures:
        click.echo(f"wrote {path}")
    click.echo(f"wrote {result.summary}")
    click.echo(result.text, nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
