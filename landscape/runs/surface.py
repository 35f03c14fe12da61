"""One surface run: a :class:`~landscape.evaluation.Run` (the session, the directions' recipe,
the grid, the evaluation settings) → directions → store → evaluated points.

``run_surface(run)`` computes a run built from objects (the Python API: into ``run.out``, or in
memory); ``run_compute(config)`` resolves a config's strings into the same ``Run`` (the CLI,
YAML, sweeps; sharded under MPI) and computes it with the same code.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from landscape import curves, families, grid, memory, parallel, params
from landscape._files import MemoryFile, MemoryOutput, Output, result_file
from landscape.alignment.paths import target_aligner
from landscape.checkpoint import file_sha256
from landscape.config import SEEDED_DIRECTIONS, STORE_BY_SEED_BYTES, ComputeConfig, DirectionSpec
from landscape.directions import DirectionContext, DirectionSet, build, load_directions, summarize
from landscape.directions.base import SEED_DERIVATION, alignment_warning, weight_alignment
from landscape.directions.io import DirectionsNotStored, fingerprint
from landscape.engine import eval_mode
from landscape.engine.select import RACE_POINTS, EngineChoice, EngineRequest, EngineSettings
from landscape.errors import ConfigError, DirectionError, LandscapeWarning
from landscape.evaluation import (
    FLUSH_POINTS,
    FLUSH_SECONDS,
    Done,
    Run,
    engine_for,
    engine_request,
    evaluate_points,
    numerics,
    repeat_evaluators,
)
from landscape.session import Session, centre_checkpoint, random_initialization
from landscape.store import RunHeader, SurfaceStore, check_resumable, done_flags, pending_points
from landscape.tasks import task_of


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


ProgressFactory = Callable[[int, int], Progress]  # (total points, points already done)


@dataclass
class RunResult:
    path: str | MemoryFile  # the surface file; a MemoryFile when the run was kept in memory
    total: int
    computed: int  # points evaluated by this run
    resumed: bool
    nonfinite: int  # points whose loss is NaN or infinite (stored as such)
    seconds: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def points_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else math.nan


def directions_for(
    run: Run,
    *,
    resume_from: Path | None,
    repeat: int = 0,
    derivation: str = SEED_DERIVATION,
) -> DirectionSet:
    """The run's directions: read back from the file being resumed, the ``given`` ones (the
    Python API's ``directions=``), from --directions, or built.

    Repeat ``r`` of a ``--repeat`` run is built with seed ``direction.seed + r``; a seeded
    family's generator comes from that seed by ``derivation`` (``direction_generator``).
    """
    session = run.session
    if resume_from is not None:
        group = f"repeats/{repeat}/directions" if repeat else "directions"
        try:
            return load_directions(str(resume_from), session.theta, session.centre, run.dims, group)
        except DirectionsNotStored as kept:
            return _regenerated(run, resume_from, repeat, kept)
    spec = run.directions
    if repeat:
        spec = replace(spec, seed=spec.seed + repeat)
    given = run.given if not repeat else None
    built = given if given is not None else _build_directions(run, spec, derivation)
    built.attrs.update(weight_alignment(built, session.centre))  # cos(d, θ), which info reports
    return built


def _regenerated(
    run: Run,
    source: Path,
    repeat: int,
    kept: DirectionsNotStored,
) -> DirectionSet:
    """The directions a file keeps as their seed, regenerated with the file's own derivation of
    the generator from the seed (older files: the legacy one) and checked against its
    fingerprint."""
    built = directions_for(run, resume_from=None, repeat=repeat, derivation=kept.derivation)
    if not np.allclose(fingerprint(built.vectors), kept.fingerprint, rtol=1e-9, atol=0):
        raise DirectionError(
            f"{str(source)!r} keeps its directions as their seed, but the directions "
            "this seed gives here differ from the file's (another torch version or "
            "device draws other numbers); rerun with --overwrite"
        )
    return built


MEMORY_NOTE_BYTES = 1 << 30  # runs that will need more than this are told their memory plan


def memory_plan(run: Run) -> memory.MemoryPlan:
    """What the run will hold: its directions over the moved tensors, a working copy, one
    batch's activations (measured at θ on a few real samples), the file being created and a
    split forward's frontiers, in memory or on disk (:func:`_frontier_plan`)."""
    session, spec = run.session, run.directions
    moved = moved_tensors(spec, session) if not spec.file else list(session.theta)
    count = run.dims * spec.repeat
    x, _ = next(iter(session.data.batches(min(run.batch_size, 4), session.device)))
    with eval_mode(session.model):
        batch = min(run.batch_size, len(session.data))
        acts = memory.activation_bytes(session.model, x, batch)
    size = sum(session.theta[n].numel() * session.theta[n].element_size() for n in moved) * count
    store = _store_for(spec, size, given=run.given is not None)
    fam = families.FAMILIES.get(spec.name)
    native = bool(fam and fam.builds_in_weights_dtype) and not spec.file and run.given is None
    front = _frontier_plan(run, moved, x)
    return memory.plan(session.centre, moved, count, acts, store, session.device, native, front)


def _frontier_plan(run: Run, moved: list[str], x: Any) -> tuple[int, str] | None:
    """A split forward's frontiers for the memory plan (``select.frontier_plan``, which also
    says when the request rules the split out): when the directions move only part of the model."""
    session = run.session
    if len(moved) >= len(session.theta):
        return None
    from landscape.engine.select import frontier_plan

    request = engine_request(run)
    total = len(session.data)
    size = (total, min(run.batch_size, total))
    return frontier_plan(session.model, dict(session.centre), set(moved), x, size, request)


def store_mode(run: Run, directions: DirectionSet) -> str:
    """How the file keeps the run's directions (``_store_for`` on their size in bytes)."""
    size = sum(t.numel() * t.element_size() for vec in directions.vectors for t in vec.values())
    return _store_for(run.directions, size * run.repeat, run.given is not None)


def _store_for(d: DirectionSpec, size: int, given: bool) -> str:
    """``seed`` (regenerated on resume) or ``full``: as asked, or under ``auto`` ``seed`` for a
    seeded family whose directions (``size`` bytes, every repeat) exceed STORE_BY_SEED_BYTES."""
    if d.store != "auto":
        return d.store
    seeded = not given and not d.file and d.name in SEEDED_DIRECTIONS
    return "seed" if seeded and size > STORE_BY_SEED_BYTES else "full"


def moved_tensors(d: DirectionSpec, session: Session) -> list[str]:
    """The parameter tensors the family builds directions on (--params, --exclude); the others
    stay at θ (a direction that does not name a tensor leaves it at the centre)."""
    try:
        names = params.select(list(session.theta), d.params, d.exclude)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not names:
        raise ConfigError(
            f"--params {' '.join(d.params) or '*'} with --exclude {' '.join(d.exclude)} leaves no "
            "tensor to move; loosen the globs"
        )
    return names


def _build_directions(
    run: Run, spec: DirectionSpec, derivation: str = SEED_DERIVATION
) -> DirectionSet:
    """The family's directions (``spec``: the run's, or a repeat's) from the run's weights, data
    and loss (or --directions FILE); ``derivation``: how a seeded family's generator comes from
    the seed."""
    session, count = run.session, run.dims
    if spec.file:
        order = list(session.model.state_dict())  # a reference "states" file's order
        return load_directions(spec.file, session.theta, session.centre, count, state_order=order)
    data = session.data
    take = families.family(spec.name).subset(spec)
    if take is not None:  # the family works on a seeded subset (the Hessian's), loaded once
        data = session.subset(min(take, len(session.data)))
    ctx = DirectionContext(
        theta=params.Float32View(
            OrderedDict((k, session.theta[k].detach().cpu()) for k in moved_tensors(spec, session))
        ),
        spec=spec,
        count=count,
        state=OrderedDict((k, v.detach().cpu()) for k, v in session.centre.items()),
        load_state=session.load_state,
        model=session.model,
        batches=lambda: data.batches(run.batch_size, session.device),
        loss_fn=session.loss_fn,
        device=session.device,
        seed_derivation=derivation,
        # interpolate --align: targets permuted to match the centre, on the run's own data
        align_target=target_aligner(
            session.model,
            session.centre,
            session.data,
            batch_size=run.batch_size,
            device=session.device,
        ),
    )
    return in_weights_dtype(build(ctx), session.theta)


def in_weights_dtype(ds: DirectionSet, theta: dict) -> DirectionSet:
    """Each direction tensor in its weight's dtype: θ + a·d stays in it (a bfloat16 model's
    directions take half the memory of float32 ones); float32 weights keep them as built."""
    for vec in ds.vectors:
        for name, t in vec.items():
            if name in theta and theta[name].dtype != t.dtype and theta[name].is_floating_point():
                vec[name] = t.to(theta[name].dtype)
    return ds


def run_compute(
    config: ComputeConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    workers: int = 1,
    log: Callable[[str], None] | None = None,
) -> RunResult | None:
    """Compute (or resume) the surface described by ``config`` into ``config.out``: its strings
    resolved into a ``Run`` (``Run.of_config``) and computed as ``run_surface`` computes one.

    Under ``mpiexec -n P`` (or with ``workers`` > 1 local processes) the pending points are
    sharded over the processes and rank 0 writes; ranks other than 0 return None. ``log``
    prints the run's memory plan before it starts (for language models and runs above 1 GB).
    """
    comm = parallel.communicator(workers)
    if comm.rank != 0:
        plan = comm.broadcast_plan(None)
        if plan is not None and plan.error is None:
            parallel.worker(config, comm.rank, comm.local_rank, comm.local_size, plan, comm)
        return None
    try:
        return _run_config(config, overwrite, progress, comm, log)
    finally:
        comm.close()


def run_surface(
    run: Run,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Compute (or resume) ``run`` in this process: into ``run.out``, or, without one, into a
    file kept in memory (``RunResult.path`` is then that ``MemoryFile``; nothing is written)."""
    output = Output(run.out, overwrite) if run.out is not None else MemoryOutput()
    return _run_root(run, output, progress, parallel.Serial(), log, time.perf_counter())


def _run_config(
    config: ComputeConfig,
    overwrite: bool,
    progress: ProgressFactory | None,
    comm: Any,
    log: Callable[[str], None] | None,
) -> RunResult:
    """Rank 0 of a config's run: a complete file is done without loading anything; else the
    config's model, data and loss are loaded into a ``Run`` and computed."""
    start = time.perf_counter()
    output = None
    try:
        # held from before the first read of the file to its last write: one run per file
        output = Output(config.out, overwrite)
        finished = complete_file(config, output, start)
        if finished is not None:  # nothing to compute: the model and data are never loaded
            comm.broadcast_plan(parallel.Plan([], None, error="complete"))
            output.close()
            return finished
        run = Run.of_config(config, comm.local_rank, comm.local_size)
    except BaseException as exc:  # whatever stops rank 0 here, the other ranks must not wait
        if output is not None:
            output.close()
        comm.broadcast_plan(parallel.Plan([], None, error=str(exc) or type(exc).__name__))
        raise
    checked = functools.partial(_warn_random_initialization, config)
    return _run_root(run, output, progress, comm, log, start, checked)


def _run_root(
    run: Run,
    output: Output | MemoryOutput,
    progress: ProgressFactory | None,
    comm: Any,
    log: Callable[[str], None] | None,
    start: float,
    checked: Callable[[], None] | None = None,
) -> RunResult:
    """Rank 0 of any run: prepared, its engine chosen, its file opened, its points evaluated.
    ``checked``: called once the run's model, data and loss have passed their checks."""
    try:
        axes = run.grid.values(repeats=run.repeat)
        prepared = _prepare(run, output, axes, log)
        if checked is not None:
            checked()
        choice, first = _choose_engine(run, prepared, axes, comm)
        store = _open_store(run, output, prepared, axes, choice, first, comm.size)
    except BaseException as exc:  # whatever stops rank 0 here, the other ranks must not wait
        output.close()
        comm.broadcast_plan(parallel.Plan([], None, error=str(exc) or type(exc).__name__))
        raise
    try:
        return _evaluate_run(run, comm, store, choice, prepared, axes, progress, start)
    finally:
        output.close()
        close = getattr(choice.evaluator, "close", None)
        if close is not None:  # a split forward's frontiers spilled to disk: their folder goes
            close()


@dataclass
class _Prepared:
    """What a run resolved before its engine is chosen: the file whose points it resumes (None:
    a new one), its directions (``given`` ones, else its family's) and each later repeat's,
    those on the device, and the file header's extra attributes."""

    source: Path | None
    directions: DirectionSet
    repeats: list[DirectionSet]
    device_dirs: list[dict[str, Any]]
    extra: dict[str, Any]


def _prepare(
    run: Run,
    output: Output | MemoryOutput,
    axes: tuple[np.ndarray, ...],
    log: Callable[[str], None] | None,
) -> _Prepared:
    """The resumed file checked, the memory plan told and checked, the directions built (or
    read from the file resumed) and probed on the session, before any engine is timed."""
    session = run.session
    extra = {
        "data": session.data.describe(),
        "weights_sha256": session.weights_sha256,
        **session.loss_units(),
    }
    # the file whose points this run resumes (refused if of another run), read before
    # anything is built: its directions are the run's
    stub = _header(run.record, axes, DirectionSet("", []), {}, session.checkpoint_sha256, extra)
    source = output.existing(lambda p: check_resumable(p, stub))
    memory = memory_plan(run)  # before the directions take their share
    if log is not None and (task_of(session.model) or memory.more > MEMORY_NOTE_BYTES):
        log(memory.text())
    memory.check()
    directions = directions_for(run, resume_from=source)
    repeats = [directions_for(run, resume_from=source, repeat=r) for r in range(1, run.repeat)]
    device_dirs = directions.to(session.device).vectors
    record = run.record
    session.probe(
        device_dirs, run.batch_size, (record.model.name, record.data.name, record.eval.loss)
    )
    aligned = alignment_warning({"method": directions.method, **directions.attrs})
    if aligned and source is None:  # said once, at the caller of run_compute / run_surface
        warnings.warn(aligned, LandscapeWarning, stacklevel=4)
    return _Prepared(source, directions, repeats, device_dirs, extra)


def _warn_random_initialization(config: ComputeConfig) -> None:
    """No checkpoint given: the run evaluates the model's seeded initialization; said at
    ``run_compute`` (stacklevel 4: past this, ``_run_root`` and ``_run_config``)."""
    if random_initialization(config):
        warnings.warn(
            f"no --checkpoint: evaluating a random initialization of {config.model.name!r} "
            f"(seed {config.direction.seed}), not a trained network",
            LandscapeWarning,
            stacklevel=4,
        )


def _choose_engine(
    run: Run,
    prepared: _Prepared,
    axes: tuple[np.ndarray, ...],
    comm: Any,
) -> tuple[EngineChoice, list[int]]:
    """The engine for this run (``engine_for``), timed, and its first points evaluated, under
    the run's threads and TF32 setting; with the flat indices of those first points."""
    pending = _pending_points(prepared.source, axes, run.repeat)
    # the first points of repeat 0 (the run's own directions), on which auto races candidates;
    # fewer where other ranks wait for rank 0 meanwhile
    per_repeat = run.grid.points
    racing = RACE_POINTS if comm.size == 1 else max(2, RACE_POINTS // comm.size)
    first = [int(f) for f in pending[:racing] if f < per_repeat]
    chart = curves.chart(prepared.directions.chart)  # grid point → coefficients (a curve's t)
    with numerics(run.evaluation, run.session.device, comm.local_size):
        choice = engine_for(
            run,
            prepared.device_dirs,
            _engine_request(run, prepared.source),
            len(pending),
            [chart(grid.point_coords(f, *axes)) for f in first],
        )
    return choice, first


def _open_store(
    run: Run,
    output: Output | MemoryOutput,
    prepared: _Prepared,
    axes: tuple[np.ndarray, ...],
    choice: EngineChoice,
    first: list[int],
    processes: int,
) -> SurfaceStore:
    """The surface file opened for this run (created, or the one resumed), its header with the
    engine's record, and the first points the choice evaluated written."""
    directions = prepared.directions
    prepared.extra["engine"] = {**choice.report, "processes": processes}
    header = _header(
        run.record, axes, directions, summarize(directions), run.session.checkpoint_sha256,
        prepared.extra, prepared.repeats, store_directions=store_mode(run, directions),
    )  # fmt: skip
    store = SurfaceStore.open_for_run(output, header, on_complete=analyse)
    if choice.done:  # the first points, evaluated while the choice was checked on them
        store.write_block(first[: len(choice.done)], [r.values for r in choice.done])
    return store


def complete_file(config: ComputeConfig, output: Output, start: float) -> RunResult | None:
    """The result of a rerun on a complete file (every point of every repeat done), found before
    the model and data are loaded; None when there are points to compute, or the file is not one
    to resume (the full run then says why).

    The file is checked as a run checks it, short of what needs the model and data loaded: the
    config, the grid and the centre checkpoint file's sha256 (``resume_header``), not the loaded
    weights' and samples' hashes. Nothing is computed, so nothing in the file can mix runs.
    """
    if output.overwrite or not output.final.is_file():
        return None
    import h5py

    try:
        with h5py.File(output.final, "r") as f:
            if not bool(done_flags(f).all()):
                return None
    except (OSError, KeyError, ValueError, TypeError):  # not a surface file: the run says so
        return None
    output.existing(lambda p: check_resumable(p, resume_header(config)))
    # closing the complete file brings its analysis up to date, as every run's close does
    file = h5py.File(output.final, "r")
    with SurfaceStore(output.final, file, config.data.split, on_complete=analyse) as store:
        total, nonfinite = store.size, store.nonfinite_count()
    seconds = time.perf_counter() - start
    return RunResult(str(output.final), total, 0, True, nonfinite, seconds, "", {"complete": True})


def analyse(path: Path) -> None:
    """A complete surface file's sharpness, curvature and basin, written into it (``/analysis``)
    when the store closes it."""
    from landscape.analysis import store_analysis

    store_analysis(path)


def resume_header(config: ComputeConfig) -> RunHeader:
    """What the resume check compares short of loading the model and data: the config, the grid
    shape and the centre checkpoint file's hash (a run that loads them checks the weights' and
    samples' own hashes too)."""
    ckpt = centre_checkpoint(config)
    axes = grid.Grid.of(config.grid).values()
    sha = file_sha256(ckpt) if ckpt else ""
    return _header(config, axes, DirectionSet("", []), {}, sha, {})


def _header(
    config: ComputeConfig, axes: tuple[np.ndarray, ...], *args: Any, **kw: Any
) -> RunHeader:
    """A ``RunHeader`` over ``axes`` (x; x, y; or x, y and the axes beyond them)."""
    x, y = axes[0], (axes[1] if len(axes) > 1 else None)
    return RunHeader(config, x, y, *args, beyond=tuple(axes[2:]), **kw)


def _evaluate_run(
    run: Run,
    comm: Any,
    store: SurfaceStore,
    choice: EngineChoice,
    prepared: _Prepared,
    axes: tuple[np.ndarray, ...],
    progress: ProgressFactory | None,
    start: float,
) -> RunResult:
    """Rank 0 with the file open: share the pending points out, evaluate its own, write all."""
    session = run.session
    with store, numerics(run.evaluation, session.device, comm.local_size):
        pending = store.pending()
        plan = _share_out(run, comm, choice, prepared, pending)
        total = store.size  # points over every repeat
        bar = progress(total, total - len(pending)) if progress else None
        eval_start = time.perf_counter()
        try:
            _evaluate_own(comm, store, session, choice, plan, axes, bar)
        finally:
            if bar is not None:
                bar.close()
        eval_seconds = time.perf_counter() - eval_start
        nonfinite = store.nonfinite_count()
        resumed = store.resumed
    # closing the complete file wrote its analysis and, under --overwrite, replaced the old one
    seconds = time.perf_counter() - start
    return RunResult(
        result_file(store.path).result_path,
        total,
        len(pending) + len(choice.done),
        resumed,
        nonfinite,
        seconds,
        str(session.device),
        {"engine": choice.report | {"processes": comm.size}, "eval_seconds": eval_seconds},
    )


def _share_out(
    run: Run,
    comm: Any,
    choice: EngineChoice,
    prepared: _Prepared,
    pending: np.ndarray,
) -> parallel.Plan:
    """The pending points split over the ranks, and the plan (their shares, the engine
    settings, the directions and weights they evaluate) sent to the others and the local
    workers started with it; rank 0's own share is the plan's first."""
    session, directions, repeats = run.session, prepared.directions, prepared.repeats
    shares = [share.tolist() for share in grid.split_pending(pending, comm.size)]
    many = comm.size > 1  # other ranks get rank 0's directions and weights in the plan
    cpu_dirs = (
        [{k: v.detach().cpu() for k, v in d.items()} for d in directions.vectors] if many else None
    )
    centre = {k: v.detach().cpu() for k, v in session.centre.items()} if many else None
    repeat_dirs = [ds.vectors for ds in repeats]  # CPU tensors, moved when their turn comes
    plan = parallel.Plan(
        shares, choice.settings, directions=cpu_dirs, centre=centre, repeats=repeat_dirs,
        chart=directions.chart,
    )  # fmt: skip
    comm.broadcast_plan(plan)
    # local workers only; each resolves the run's config into its own Run
    comm.start(parallel.local_worker, lambda r: (run.record, r, comm.size, plan))
    return plan


def _evaluate_own(
    comm: Any,
    store: SurfaceStore,
    session: Session,
    choice: EngineChoice,
    plan: parallel.Plan,
    axes: tuple[np.ndarray, ...],
    bar: Progress | None,
) -> None:
    """Rank 0's own share evaluated (along every repeat's directions) and written in blocks,
    with the other ranks' blocks collected in between and at the end."""
    writer = _Writer(store, bar, comm.size)

    def between() -> None:
        comm.alive_check()
        parallel.collect(comm, writer, block=False)

    own = np.asarray(plan.shares[0], dtype=np.int64)
    along = repeat_evaluators(choice.evaluator, plan.repeats, session.device)
    evaluate_points(
        along, own, axes, writer.add, between if comm.size > 1 else None, chart=plan.chart
    )
    writer.flush()
    parallel.collect(comm, writer)


class _Writer:
    """Rank 0's writes: its own points and the blocks other ranks send, flushed in blocks."""

    def __init__(self, store: SurfaceStore, bar: Progress | None, ranks: int = 1) -> None:
        self.store, self.bar = store, bar
        self.block: list[Done] = []
        self.last = time.perf_counter()
        self.running = set(
            range(1, ranks)
        )  # ranks that have not said "done" yet, for the whole run

    def add(self, results: list[Done], *, force: bool = False) -> None:
        self.block.extend(results)
        if self.bar is not None:
            self.bar.update(len(results))
        if (
            force
            or len(self.block) >= FLUSH_POINTS
            or time.perf_counter() - self.last >= FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self.block:
            indices, values = zip(*self.block, strict=True)
            self.store.write_block(indices, values)
        self.block, self.last = [], time.perf_counter()


def _engine_request(run: Run, source: Path | None) -> EngineRequest:
    """What the config asks of the engine; for a resumed run, the settings its file records
    (engine, layout, batch, points per call, BatchNorm fold, compile) pinned, nothing timed or
    raced again: the race picks by timing, and another layout or path sums in another order, so
    only the same settings give the uninterrupted run's bits. A file without a usable record
    (made before it, or on another device type) is resumed with a fresh choice."""
    request = engine_request(run)
    if source is None:
        return request
    import h5py

    with h5py.File(source, "r") as f:
        text = f.attrs.get("engine")
    try:
        report = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):  # a record that is not JSON: choose afresh
        report = None
    settings = EngineSettings.recorded(report, run.session.device)
    return request if settings is None else settings.pin(request)


def _pending_points(source: Path | None, axes: tuple[np.ndarray, ...], repeats: int) -> np.ndarray:
    """The points this run will evaluate (flat over repeats), in the order it takes them
    (``SurfaceStore.pending``), read-only from the file it resumes, before that file is opened."""
    shape = tuple(len(a) for a in axes)
    if source is None:
        return grid.coarse_to_fine(np.arange(repeats * int(np.prod(shape))), shape)
    import h5py

    with h5py.File(source, "r") as f:
        return pending_points(f, shape)
