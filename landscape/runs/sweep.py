"""Sweeps: one YAML file that expands to many ``landscape compute`` runs (DESIGN §10).

A sweep file is a normal config plus a ``sweep:`` mapping of dotted keys to lists::

    model: {name: resnet56, checkpoint: "results/li2018/{model.name}.pt"}
    ...
    out: results/li2018/sweep/surface.h5
    sweep:
      model.name: [resnet56, resnet56-noshort]
      direction.name: [filter-norm, zca]

It expands to the cross product of the lists, in the order the keys appear (the first key varies
slowest), each run a validated :class:`ComputeConfig`. ``{dotted.key}`` in any string value is
replaced by that run's value of a swept key (above: one checkpoint per model). Each run writes
``<out stem>_<key>=<value>_..._<key>=<value><suffix>`` beside the base ``out``, unless ``out``
itself holds a placeholder or is swept. Runs are independent surface files, so a sweep resumes
like a single run: complete files are skipped, partial ones resumed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from landscape import families
from landscape._files import check_not_hdf5, check_output, writable_folder, write_bytes_atomically
from landscape.config import (
    ComputeConfig,
    SlurmSpec,
    apply_overrides,
    load_yaml_file,
    surface_identity,
)
from landscape.errors import ConfigError, LandscapeError, SurfaceFileError

SWEEP_KEY = "sweep"
MAX_RUNS = 10_000  # runs one sweep file may expand to
STATUSES = ("complete", "partial", "new", "conflict", "missing")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")  # anything else in a value becomes "-" in a file name
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


@dataclass(frozen=True)
class SweepRun:
    """One point of the sweep: its position, its full config and the swept values it takes."""

    index: int
    config: ComputeConfig
    varying: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.varying.items())


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did with one run: its status before, and the compute result if run."""

    run: SweepRun
    status: str
    result: Any = None  # landscape.runs.surface.RunResult, or None when the run was skipped


# --- expansion ----------------------------------------------------------------------------------


def is_sweep_file(path: str | Path) -> bool:
    """True if the YAML file has a top-level ``sweep:`` key."""
    return SWEEP_KEY in load_yaml_file(path)


def expand_sweep(path: str | Path) -> list[SweepRun]:
    """Read a sweep file and return its runs (the cross product of the swept lists)."""
    try:
        return expand_sweep_dict(load_yaml_file(path))
    except ConfigError as exc:
        raise ConfigError(f"sweep file {str(path)!r}: {exc}") from None


def expand_sweep_dict(raw: dict[str, Any]) -> list[SweepRun]:
    """The runs of an already loaded sweep mapping (a config plus ``sweep:``)."""
    if SWEEP_KEY not in raw:
        raise ConfigError(
            "has no top-level 'sweep:' key; a single config runs with "
            "`landscape compute --config FILE`"
        )
    axes = _sweep_axes(raw[SWEEP_KEY])
    total = math.prod(len(values) for _, values in axes)
    if total > MAX_RUNS:  # each run is a validated config held in memory: refused before any
        raise ConfigError(
            f"expands to {total:,} runs ({' x '.join(str(len(v)) for _, v in axes)}), more than "
            f"the {MAX_RUNS:,} one sweep may hold; split it into several sweep files"
        )
    base = {k: v for k, v in raw.items() if k != SWEEP_KEY}
    keys = [key for key, _ in axes]
    runs = []
    for index, values in enumerate(itertools.product(*(vals for _, vals in axes))):
        varying = dict(zip(keys, values, strict=True))
        merged = _fill_placeholders(apply_overrides(base, varying), varying)
        if "out" not in varying and not _PLACEHOLDER.search(str(base.get("out", ""))):
            merged["out"] = run_out(str(merged.get("out", "")), varying)
        try:
            config = ComputeConfig.from_dict(merged)
        except ConfigError as exc:
            where = f"run {index} ({' '.join(f'{k}={v}' for k, v in varying.items())})"
            raise ConfigError(f"{where}: {exc}") from None
        runs.append(SweepRun(index, config, varying))
    _check_distinct_outputs(runs)
    _check_distinct_surfaces(runs)
    return runs


def _sweep_axes(sweep: Any) -> list[tuple[str, list[Any]]]:
    if not isinstance(sweep, dict) or not sweep:
        raise ConfigError(
            "'sweep' must be a mapping of dotted config keys to lists, e.g. "
            "sweep: {direction.name: [filter-norm, zca]}"
        )
    axes = []
    for key, values in sweep.items():
        if not isinstance(key, str) or not all(key.split(".")):
            raise ConfigError(f"sweep key {key!r} must be a dotted config key like direction.name")
        if key == SWEEP_KEY or key.startswith(f"{SWEEP_KEY}."):
            raise ConfigError("a sweep cannot sweep over 'sweep'")
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"sweep key {key!r} must hold a non-empty list of values, got {values!r}; "
                f"write e.g. {key}: [a, b]"
            )
        seen: set[str] = set()  # each value's repr, once (a linear check)
        for value in values:
            if repr(value) in seen:
                raise ConfigError(f"sweep key {key!r} lists the value {value!r} twice")
            seen.add(repr(value))
        axes.append((key, values))
    return axes


def _fill_placeholders(node: Any, varying: dict[str, Any]) -> Any:
    """Replace ``{key}`` in every string value by the run's value of swept ``key``."""
    if isinstance(node, dict):
        return {k: _fill_placeholders(v, varying) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill_placeholders(v, varying) for v in node]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            return str(varying[m.group(1)]) if m.group(1) in varying else m.group(0)

        return _PLACEHOLDER.sub(sub, node)
    return node


def run_out(base_out: str, varying: dict[str, Any]) -> str:
    """The file a run writes: ``dir/stem_key=value_key=value.suffix`` from the base ``out``.

    A value is used as written where it is made of letters, digits and ``. _ + -``; otherwise
    other characters (``/``, spaces, ...) become ``-`` and a short hash of the value is appended,
    so different values never share a file.
    """
    base = Path(base_out or "surface.h5")
    suffix = base.suffix or ".h5"
    parts = [f"{key}={_file_safe(value)}" for key, value in varying.items()]
    return str(base.with_name("_".join([base.stem, *parts]) + suffix))


def _file_safe(value: Any) -> str:
    text = str(value)
    safe = _UNSAFE.sub("-", text)
    if safe == text and text:
        return text
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _check_distinct_surfaces(runs: list[SweepRun]) -> None:
    """Refuse runs that would compute the same surface, e.g. a seed swept for a family whose
    directions do not depend on it: the sweep would spend its time on copies."""
    seen: dict[str, SweepRun] = {}
    for run in runs:
        key = json.dumps(surface_identity(run.config), sort_keys=True, default=str)
        if key in seen:
            first = seen[key]
            raise ConfigError(
                f"runs {first.index} ({first.label()}) and {run.index} ({run.label()}) would "
                f"compute the same surface: {_why_same(first, run)}; drop that key from the "
                "sweep, or sweep a setting that changes the surface"
            )
        seen[key] = run


def _why_same(a: SweepRun, b: SweepRun) -> str:
    differ = [k for k in a.varying if a.varying[k] != b.varying.get(k)]
    keys = ", ".join(differ) or "nothing"
    if any(k.startswith("direction.seed") for k in differ):
        return f"{keys} does not change {a.config.direction.name}'s directions"
    if "data.seed" in differ:
        return f"{keys} changes nothing when every sample is used (no data.max_samples)"
    return f"they differ only in {keys}, which does not change the values"


def _check_distinct_outputs(runs: list[SweepRun]) -> None:
    seen: dict[str, SweepRun] = {}
    for run in runs:
        key = str(Path(run.config.out).resolve())
        if key in seen:
            raise ConfigError(
                f"runs {seen[key].index} and {run.index} would both write {run.config.out!r}; "
                "give out a {placeholder} for every swept key, or leave out the placeholders"
            )
        seen[key] = run


# --- status -------------------------------------------------------------------------------------


def status(run: SweepRun) -> str:
    """``missing`` (an input file the run needs is not there: ``missing_input`` says which),
    ``new`` (no file), ``complete`` / ``partial`` (a file of this config and checkpoint, all /
    some points done) or ``conflict`` (a file of another config or other weights, or not a
    surface file). The file is judged by compute's own resume check."""
    if missing_input(run.config) is not None:
        return "missing"
    path = Path(run.config.out)
    if not path.exists():
        return "new"
    from landscape._files import not_regular
    from landscape.runs.surface import resume_header
    from landscape.store import check_resumable, done_flags

    if not_regular(path):  # a FIFO would block the open for ever; compute refuses these
        return "conflict"
    try:
        check_resumable(path, resume_header(run.config))
        with h5py.File(path, "r") as f:
            done = done_flags(f)  # every repeat's
    except (LandscapeError, OSError, KeyError):
        return "conflict"
    return "complete" if bool(done.all()) else "partial"


def missing_input(config: ComputeConfig) -> str | None:
    """The first file or folder the run reads that is not there, as a phrase; None if all are.

    Checked without loading anything: the centre checkpoint (or trajectory), targets, a
    directions file, a model or data file, a data folder.
    """
    from landscape.data import input_path
    from landscape.session import centre_checkpoint

    try:
        ckpt = centre_checkpoint(config)
    except LandscapeError as exc:  # a trajectory glob that matches nothing, ...
        return str(exc)
    d = config.direction
    wanted = [("checkpoint", ckpt), ("directions file", d.file)]
    wanted += families.family(d.name).files(d) if not d.file else []
    name = config.model.name
    if ":" in name and name.rsplit(":", 1)[0].endswith(".py"):
        wanted.append(("model file", name.rsplit(":", 1)[0]))
    try:
        data = input_path(config.data.name)
    except LandscapeError as exc:
        return str(exc)
    if data is not None:
        wanted.append(data)
    for what, path in wanted:
        if path and not Path(path).exists():
            return f"{what} {path} not found"
    return None


# --- running ------------------------------------------------------------------------------------


def run_sweep(
    runs: list[SweepRun],
    *,
    overwrite: bool = False,
    progress: Any = None,
    log: Callable[[str], None] | None = None,
) -> list[SweepOutcome]:
    """Compute the runs one after another: complete ones are skipped, partial ones resumed.

    A file of another config (``conflict``) is refused before anything runs unless ``overwrite``,
    which replaces such files (complete files of this config are still kept). ``progress`` is
    passed to :func:`landscape.runs.surface.run_compute`; ``log`` gets a line per run as it finishes.
    """
    from landscape.runs.surface import run_compute

    statuses = [status(run) for run in runs]
    missing = [r for r, s in zip(runs, statuses, strict=True) if s == "missing"]
    if missing:
        raise ConfigError(
            f"{len(missing)} run(s) cannot start, first run {missing[0].index} "
            f"({missing[0].label()}): {missing_input(missing[0].config)}; fix the path, or "
            "leave the run out of the sweep (`landscape sweep FILE --dry-run` lists them all)"
        )
    conflicts = [r for r, s in zip(runs, statuses, strict=True) if s == "conflict"]
    if conflicts and not overwrite:
        raise SurfaceFileError(
            f"{len(conflicts)} run(s) would replace a file of another config or other weights, "
            f"first {conflicts[0].config.out!r} (run {conflicts[0].index}); delete or move it, "
            "or pass --overwrite to replace it"
        )
    outcomes = []
    for run, before in zip(runs, statuses, strict=True):
        outcome = SweepOutcome(run, before)
        if before != "complete":
            Path(run.config.out).parent.mkdir(parents=True, exist_ok=True)
            try:
                outcome.result = run_compute(
                    run.config, overwrite=before == "conflict", progress=progress
                )
            except LandscapeError as exc:  # say which run failed; finished runs are kept
                raise type(exc)(f"run {run.index} ({run.label()}): {exc}") from None
        outcomes.append(outcome)
        if log is not None:
            log(describe_outcome(outcome, len(runs)))
    return outcomes


def describe_outcome(outcome: SweepOutcome, total: int) -> str:
    """One summary line: ``[i/n] label: skipped (complete) | computed k of m points in s``."""
    run, result = outcome.run, outcome.result
    head = f"[{run.index + 1}/{total}] {run.label()}"
    if result is None:
        return f"{head}: complete, skipped ({run.config.out})"
    verb = "resumed" if result.resumed else "wrote"
    note = f", {result.nonfinite} non-finite" if result.nonfinite else ""
    return (
        f"{head}: {verb} {result.path}, {result.computed} of {result.total} points in "
        f"{result.seconds:.1f} s on {result.device}{note}"
    )


# --- SLURM ----------------------------------------------------------------------------------------


def write_slurm(
    runs: list[SweepRun],
    script_path: str | Path,
    *,
    gpus_per_task: int = SlurmSpec.gpus_per_task,
    partition: str | None = SlurmSpec.partition,
    time: str = SlurmSpec.time,
) -> Path:
    """Write a SLURM job-array script with one task per pending run; return its path.

    Each pending run's resolved config goes to ``<script dir>/sweep_configs/<index>.yaml`` (the
    sweep's own index, as ``--dry-run`` shows it); array task ``i`` runs config ``i`` with
    ``gpus_per_task`` MPI ranks. Relative paths in the configs are relative to the current folder,
    which the job changes to. Resubmitting after a kill or time-out resumes each surface file.
    """
    if gpus_per_task < 1:
        raise ConfigError(f"gpus_per_task must be at least 1, got {gpus_per_task}")
    statuses = [status(run) for run in runs]
    conflict = next((r for r, s in zip(runs, statuses, strict=True) if s == "conflict"), None)
    if conflict is not None:
        raise SurfaceFileError(
            f"run {conflict.index} would replace {conflict.config.out!r}, a file of another config "
            "or other weights; delete or move it before submitting"
        )
    pending = [r for r, s in zip(runs, statuses, strict=True) if s != "complete"]
    if not pending:
        raise ConfigError(f"all {len(runs)} runs are complete; nothing to submit")
    script = Path(script_path).absolute()
    writable_folder(script.parent, "--slurm")
    script = check_output(script, "--slurm")  # a regular file or none: never a FIFO or device
    check_not_hdf5(script, "--slurm")
    config_dir = writable_folder(script.parent / "sweep_configs", "--slurm")
    for run in pending:
        write_bytes_atomically(config_dir / f"{run.index:03d}.yaml", _run_yaml(run).encode())
        Path(run.config.out).parent.mkdir(parents=True, exist_ok=True)
    text = _slurm_text(pending, config_dir, gpus_per_task, partition, time)
    write_bytes_atomically(script, text.encode(), mode=0o755)
    return script


def _run_yaml(run: SweepRun) -> str:
    header = f"# sweep run {run.index}: {run.label()}\n" if run.varying else ""
    return header + run.config.to_yaml()


def _slurm_text(
    pending: list[SweepRun], config_dir: Path, gpus: int, partition: str | None, time: str
) -> str:
    q = shlex.quote
    launch = f"mpiexec -n {gpus} landscape compute" if gpus > 1 else "landscape compute"
    config = f"{q(str(config_dir))}/$(printf %03d $SLURM_ARRAY_TASK_ID).yaml"
    lines = [
        "#!/bin/bash",
        "#SBATCH --job-name=landscape-sweep",
        f"#SBATCH --array={array_ranges([r.index for r in pending])}",
        f"#SBATCH --ntasks={gpus}",
        f"#SBATCH --gres=gpu:{gpus}",
        f"#SBATCH --time={time}",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        f"#SBATCH --output={q(str(config_dir.parent))}/slurm-%A_%a.out",
        "#",
        f"# {len(pending)} loss-landscape surface(s), one per array task, written by",
        "# `landscape sweep ... --slurm`; submit it with `sbatch THIS_FILE`. A task that is killed",
        "# or runs out of time resumes its surface file when resubmitted; `landscape sweep",
        "# SWEEP.yaml --dry-run` shows which runs are complete.",
        "set -euo pipefail",
        f"cd {q(str(Path.cwd()))}  # the configs' relative paths are relative to this folder",
        f"{launch} --config {config} --quiet",
        "",
    ]
    return "\n".join(lines)


def array_ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``0-2,5,7-8`` (SLURM's ``--array`` syntax)."""
    spans: list[list[int]] = []
    for i in sorted(indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)
