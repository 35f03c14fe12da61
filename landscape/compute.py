"""One ``landscape compute`` run: a session (model, data, loss) and a config → directions →
store → evaluated points.

``run_compute(config)`` loads the session from the config's strings (the CLI, YAML, sweeps);
``run_surface(config, session)`` is the same run on a session built from objects (the Python API).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from landscape import families, grid, parallel
from landscape._callable import api_callable
from landscape._files import Output
from landscape.config import ComputeConfig
from landscape.directions import DirectionContext, DirectionSet, build, load_directions, summarize
from landscape.directions.base import alignment_warning, weight_alignment
from landscape.engine.reference import PointEvaluatorBase, to_channels_last
from landscape.engine.select import EngineChoice, EngineRequest, choose_engine, parse_bytes
from landscape.errors import (
    ConfigError,
    DirectionError,
    LandscapeWarning,
)
from landscape.losses import correct_count
from landscape.session import Session, random_initialization
from landscape.store import RunHeader, SurfaceStore, check_resumable, done_flags

FLUSH_SECONDS = 1.0  # a killed run loses at most about this much work
Done = tuple[int, dict[str, float]]  # an evaluated point: its number and its quantities
FLUSH_POINTS = 64


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


ProgressFactory = Callable[[int, int], Progress]  # (total points, points already done)


@dataclass
class RunResult:
    path: str
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


# the loading and hashing a run needs live in landscape.session; these names stay importable here
Prepared = Session
prepare = Session.from_config


def directions_for(
    config: ComputeConfig, prep: Prepared, *, resume_from: Path | None, repeat: int = 0
) -> DirectionSet:
    """The run's directions: read back from the file being resumed, from --directions, or built.

    Repeat ``r`` of a ``--repeat`` run is built with seed ``direction.seed + r``.
    """
    count = config.dims
    if resume_from is not None:
        group = f"repeats/{repeat}/directions" if repeat else "directions"
        return load_directions(str(resume_from), prep.theta, prep.centre, count, group)
    if repeat:
        seed = config.direction.seed + repeat
        config = replace(config, direction=replace(config.direction, seed=seed))
    built = _build_directions(config, prep)
    built.attrs.update(weight_alignment(built, prep.centre))  # cos(d, θ), which info reports
    return built


def _build_directions(config: ComputeConfig, prep: Prepared) -> DirectionSet:
    """The family's directions from the run's weights, data and loss (or --directions FILE)."""
    count = config.dims
    if config.direction.file:
        order = list(prep.model.state_dict())  # a reference "states" file's order
        return load_directions(
            config.direction.file, prep.theta, prep.centre, count, state_order=order
        )
    data = prep.data
    take = families.family(config.direction.name).subset(config.direction)
    if take is not None:  # the family works on a seeded subset (the Hessian's), loaded once
        data = prep.subset(min(take, len(prep.data)))
    ctx = DirectionContext(
        theta=OrderedDict((k, v.detach().cpu().float()) for k, v in prep.theta.items()),
        spec=config.direction,
        count=count,
        state=OrderedDict((k, v.detach().cpu()) for k, v in prep.centre.items()),
        load_state=prep.load_state,
        model=prep.model,
        batches=lambda: data.batches(config.data.batch_size, prep.device),
        loss_fn=prep.loss_fn,
        device=prep.device,
    )
    return build(ctx)


def run_compute(
    config: ComputeConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    workers: int = 1,
) -> RunResult | None:
    """Compute (or resume) the surface described by ``config`` into ``config.out``.

    Under ``mpiexec -n P`` (or with ``workers`` > 1 local processes) the pending points are
    sharded over the processes and rank 0 writes; ranks other than 0 return None.
    """
    comm = parallel.communicator(workers)
    if comm.rank != 0:
        plan = comm.broadcast_plan(None)
        if plan is not None and plan.error is None:
            _worker(config, comm.rank, comm.local_rank, comm.local_size, plan, comm)
        return None
    try:
        return _run_root(config, None, overwrite, progress, comm)
    finally:
        comm.close()


def run_surface(
    config: ComputeConfig,
    session: Session,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    directions: DirectionSet | None = None,
) -> RunResult:
    """Compute (or resume) ``config``'s surface on an already loaded ``session``, in this
    process. ``directions``: given ones instead of the config's family (the Python API's
    ``directions=``). The config's model and data specs are only recorded, never resolved."""
    return _run_root(config, session, overwrite, progress, parallel.Serial(), directions)


def _run_root(
    config: ComputeConfig,
    session: Session | None,
    overwrite: bool,
    progress: ProgressFactory | None,
    comm: Any,
    given: DirectionSet | None = None,
) -> RunResult:
    start = time.perf_counter()
    output = None
    try:
        # held from before the first read of the file to its last write: one run per file
        output = Output(config.out, overwrite)
        x, y = grid.coordinates(config.grid, repeats=config.direction.repeat)
        prep = session or Session.from_config(config, comm.local_rank, comm.local_size)
        extra = {"data": prep.data.describe(), "weights_sha256": prep.weights_sha256}
        # the file whose points this run resumes (refused if of another run), read before
        # anything is built: its directions are the run's
        stub = RunHeader(config, x, y, DirectionSet("", []), {}, prep.checkpoint_sha256, extra)
        source = output.existing(lambda p: check_resumable(p, stub))
        if given is not None and source is None:
            directions = given
            directions.attrs.update(weight_alignment(given, prep.centre))
        else:
            directions = directions_for(config, prep, resume_from=source)
        repeats = [
            directions_for(config, prep, resume_from=source, repeat=r)
            for r in range(1, config.direction.repeat)
        ]
        device_dirs = directions.to(prep.device).vectors
        prep.probe(
            device_dirs,
            config.data.batch_size,
            (config.model.name, config.data.name, config.eval.loss),
        )
        aligned = alignment_warning({"method": directions.method, **directions.attrs})
        if aligned and source is None:
            warnings.warn(aligned, LandscapeWarning, stacklevel=2)
        if random_initialization(config):
            warnings.warn(
                f"no --checkpoint: evaluating a random initialization of {config.model.name!r} "
                f"(seed {config.direction.seed}), not a trained network",
                LandscapeWarning,
                stacklevel=2,
            )
        choice = _engine_for(
            prep,
            config,
            device_dirs,
            engine_request(config, prep),
            _pending_guess(source, x, y, config.direction.repeat),
        )
        extra["engine"] = {**choice.report, "processes": comm.size}
        header = RunHeader(
            config, x, y, directions, summarize(directions), prep.checkpoint_sha256, extra, repeats
        )
        store = SurfaceStore.open_for_run(output, header)
    except (
        BaseException
    ) as exc:  # whatever stops rank 0 here, the other ranks must not wait forever
        if output is not None:
            output.close()
        comm.broadcast_plan(parallel.Plan([], None, error=str(exc) or type(exc).__name__))
        raise
    try:
        return _evaluate_run(
            config, comm, prep, store, choice, directions, repeats, progress, start
        )
    finally:
        output.close()


def _evaluate_run(
    config: ComputeConfig,
    comm: Any,
    prep: Prepared,
    store: SurfaceStore,
    choice: EngineChoice,
    directions: DirectionSet,
    repeats: list[DirectionSet],
    progress: ProgressFactory | None,
    start: float,
) -> RunResult:
    """Rank 0 with the file open: share the pending points out, evaluate its own, write all."""
    x, y = grid.coordinates(config.grid)
    with store, numerics(config, prep.device, comm.local_size):
        pending = store.pending()
        shares = [share.tolist() for share in grid.split_pending(pending, comm.size)]
        many = comm.size > 1  # other ranks get rank 0's directions and weights in the plan
        cpu_dirs = (
            [{k: v.detach().cpu() for k, v in d.items()} for d in directions.vectors]
            if many
            else None
        )
        centre = {k: v.detach().cpu() for k, v in prep.centre.items()} if many else None
        repeat_dirs = [ds.vectors for ds in repeats]  # CPU tensors, moved when their turn comes
        plan = parallel.Plan(
            shares, choice.settings, directions=cpu_dirs, centre=centre, repeats=repeat_dirs
        )
        comm.broadcast_plan(plan)
        comm.start(_local_worker, lambda r: (config, r, comm.size, plan))  # local workers only
        total = store.size  # points over every repeat
        bar = progress(total, total - len(pending)) if progress else None
        eval_start = time.perf_counter()
        try:
            writer = _Writer(store, bar, comm.size)

            def between() -> None:
                comm.alive_check()
                _collect(comm, writer, block=False)

            own = np.asarray(shares[0], dtype=np.int64)
            along = _repeat_evaluators(choice.evaluator, repeat_dirs, prep.device)
            _evaluate_points(along, own, x, y, writer.add, between if comm.size > 1 else None)
            writer.flush()
            _collect(comm, writer)
        finally:
            if bar is not None:
                bar.close()
        eval_seconds = time.perf_counter() - eval_start
        nonfinite = store.nonfinite_count()
        resumed = store.resumed
    # closing the complete file wrote its analysis and, under --overwrite, replaced the old one
    seconds = time.perf_counter() - start
    return RunResult(
        str(store.path),
        total,
        len(pending),
        resumed,
        nonfinite,
        seconds,
        str(prep.device),
        {"engine": choice.report | {"processes": comm.size}, "eval_seconds": eval_seconds},
    )


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


def _collect(comm: Any, writer: _Writer, *, block: bool = True) -> None:
    """Rank 0: write what other ranks send; with ``block``, until every one of them is done."""
    waiting = writer.running  # kept across calls: a "done" seen while draining counts later too
    while waiting if block else True:
        got = False
        for message in comm.messages(block):
            got = True
            if isinstance(message, parallel.Block):
                writer.add(message.points, force=True)
            elif isinstance(message, parallel.Finished):
                waiting.discard(message.rank)
            elif isinstance(message, parallel.Failed):
                writer.flush()
                raise parallel.ParallelError(
                    f"rank {message.rank} failed: {message.text}; the points written so far are "
                    "kept: rerun the same command to resume"
                )
        if not block and not got:
            return


def _evaluate_points(
    evaluator_for: Callable[[int], PointEvaluatorBase],
    points: np.ndarray,
    x: np.ndarray,
    y: np.ndarray | None,
    emit: Callable[[list[Done]], None],
    between: Callable[[], None] | None = None,
) -> None:
    """Evaluate points chunk by chunk (K at a time on the batched path), hand each chunk's results
    to ``emit``, and call ``between`` after each chunk (rank 0 writes what others sent there).

    ``points`` are numbered over every repeat (point k of repeat r is ``r * P + k``); each
    repeat's points are evaluated in turn by ``evaluator_for(r)``.
    """
    size = len(x) * (1 if y is None else len(y))  # P
    for repeat in np.unique(points // size):
        evaluator = evaluator_for(int(repeat))
        mine = points[points // size == repeat]
        chunk = getattr(evaluator, "k", 1)
        for start in range(0, len(mine), chunk):
            flats = [int(f) for f in mine[start : start + chunk]]
            results = evaluator.evaluate_block([grid.point_coords(f % size, x, y) for f in flats])
            emit([(f, r.values) for f, r in zip(flats, results, strict=True)])
            if between is not None:
                between()


def _repeat_evaluators(
    evaluator: PointEvaluatorBase, repeats: list[list[dict[str, torch.Tensor]]], device: Any
) -> Callable[[int], PointEvaluatorBase]:
    """``evaluator_for(r)``: the run's evaluator for repeat 0, the same one along repeat r's
    directions (``repeats[r - 1]``, moved to ``device`` only when asked for) for the others."""

    def evaluator_for(r: int) -> PointEvaluatorBase:
        return evaluator if r == 0 else _along(evaluator, repeats[r - 1], device)

    return evaluator_for


def _along(
    evaluator: PointEvaluatorBase, vectors: list[dict[str, torch.Tensor]], device: Any
) -> PointEvaluatorBase:
    """The same evaluator (engine, layout, compiled call) moving along other directions.

    Both paths form θ + Σ c_k·d_k from ``evaluator.directions`` at each point, outside any
    compiled graph, so a shallow copy holding the new tensors evaluates them; the batched path
    stacks the tensors it moves by name, so the new directions must name the same tensors.
    """
    moved = [OrderedDict((k, v.to(device)) for k, v in d.items()) for d in vectors]
    if [list(d) for d in moved] != [list(d) for d in evaluator.directions]:
        raise DirectionError("a repeat's directions move other tensors than the first repeat's")
    other = copy.copy(evaluator)
    other.directions = [to_channels_last(d) if evaluator.channels_last else d for d in moved]
    return other


def _local_worker(config: ComputeConfig, rank: int, size: int, plan: Any, q: Any) -> None:
    """Entry point of a ``--workers`` process (spawned: it imports everything afresh)."""
    parallel.exit_with_parent()
    _worker(config, rank, rank, size, plan, parallel.QueueSink(q, rank))


def _worker(
    config: ComputeConfig, rank: int, local_rank: int, local_size: int, plan: Any, sink: Any
) -> None:
    """A rank other than 0: evaluate its share with rank 0's engine, send results in blocks."""
    try:
        prep = Session.from_config(config, local_rank, local_size)
        # exactly rank 0's weights, whatever this process loaded itself
        for name, t in plan.centre.items():
            prep.centre[name] = t.to(prep.device)
            if name in prep.theta:
                prep.theta[name] = prep.centre[name]
        vectors = [{k: v.to(prep.device) for k, v in d.items()} for d in plan.directions]
        x, y = grid.coordinates(config.grid)
        request = plan.engine.pin(engine_request(config, prep))  # rank 0's choice, not re-timed
        choice = _engine_for(prep, config, vectors, request, len(plan.shares[rank]))
        along = _repeat_evaluators(choice.evaluator, plan.repeats, prep.device)
        pending: list[Done] = []
        last = time.perf_counter()

        def emit(results: list[Done]) -> None:
            nonlocal pending, last
            pending.extend(results)
            if len(pending) >= FLUSH_POINTS or time.perf_counter() - last >= FLUSH_SECONDS:
                sink.send(parallel.Block(rank, pending))
                pending, last = [], time.perf_counter()

        with numerics(config, prep.device, local_size):
            _evaluate_points(along, np.asarray(plan.shares[rank], dtype=np.int64), x, y, emit)
        if pending:
            sink.send(parallel.Block(rank, pending))
        sink.send(parallel.Finished(rank))
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sink.send(parallel.Failed(rank, f"{type(exc).__name__}: {text}"))


def _engine_for(
    prep: Prepared, config: ComputeConfig, directions: list, request: EngineRequest, pending: int
) -> EngineChoice:
    """The evaluator for this process's model, data and directions, as ``request`` asks."""
    return choose_engine(
        prep.model,
        prep.centre,
        directions,
        lambda n: lambda: prep.data.batches(n, prep.device),
        prep.loss_fn,
        correct_count,
        request,
        pending,
    )


def engine_request(config: ComputeConfig, prep: Prepared) -> EngineRequest:
    """The evaluator options the config asks for (BN policy, precision, layout, compile, budget)."""
    ev = config.eval
    options: dict[str, Any] = {"bn": ev.bn, "autocast": autocast_dtype(ev.dtype, prep.device)}
    if ev.bn == "recalibrate":
        train = prep.train_data()
        bs, n = config.data.batch_size, ev.bn_batches
        options["train_batches"] = lambda: itertools.islice(train.batches(bs, prep.device), n)
    return EngineRequest(
        engine=ev.engine,
        compile=ev.compile,
        memory_format=ev.memory_format,
        memory_budget=parse_bytes(ev.memory_budget),
        batch_size=config.data.batch_size,
        options=options,
    )


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """float32 → no autocast; bfloat16/float16 only where the device runs them."""
    if name == "float32":
        return None
    dtype = getattr(torch, name)
    if device.type == "cpu" and dtype is torch.float16:
        raise ConfigError("--dtype float16 needs a GPU; on a CPU use --dtype bfloat16 or float32")
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bfloat16; use --dtype float16 or float32")
    return dtype


@contextlib.contextmanager
def numerics(config: ComputeConfig, device: torch.device, local_size: int = 1) -> Iterator[None]:
    """Threads and TF32 for the run's duration, restored afterwards.

    Processes sharing a machine's CPU split its cores (cores // processes on the node each).
    """
    threads = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if config.eval.threads:
        torch.set_num_threads(config.eval.threads)
    elif local_size > 1 and device.type == "cpu":
        torch.set_num_threads(parallel.threads_per_rank(local_size))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.eval.tf32
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _pending_guess(source: Path | None, x: np.ndarray, y: np.ndarray | None, repeats: int) -> int:
    """Points this run will evaluate, for the compile decision (a read-only peek when resuming)."""
    if source is None:
        return repeats * len(x) * (1 if y is None else len(y))
    import h5py

    with h5py.File(source, "r") as f:
        return int((~done_flags(f)).sum())


api_callable(__name__, "compute")  # landscape.compute(model, data, ...) is the API's compute
