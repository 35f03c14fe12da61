"""Sharding a grid over processes: MPI ranks (``mpiexec -n P``) or local workers (``--workers N``).

One process, rank 0, sets the run up (resume check, directions, engine choice, the file) and is
the only writer. Every rank evaluates a round-robin share of the pending points and sends its
results to rank 0 in blocks (a message per block, not a collective per point); rank 0 writes them
as they arrive, so whatever was computed before a failure is on disk and rerunning the same command
resumes, under any number of processes. mpi4py is imported only when the process runs under MPI.

Messages from a worker to rank 0 are declared below: ``Block`` (evaluated points, each
``(flat, {quantity: value})``), ``Finished`` and ``Failed``. Points are numbered over every repeat
of a ``--repeat`` run (point k of repeat r is ``r * P + k``), so shares and blocks mix repeats
freely. Every communicator (``Serial``, ``MPIComm``, ``LocalPool``) has the same methods, so the
run never asks which one it has.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from landscape.errors import LandscapeError, first_line


class ParallelError(LandscapeError):
    """A rank or worker failed; the points written so far are kept."""


# --- messages from a worker to rank 0 -------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Points a worker evaluated: ``(flat, {quantity: value})`` each."""

    rank: int
    points: list[tuple[int, dict[str, float]]]


@dataclass(frozen=True)
class Finished:
    """The worker evaluated its whole share."""

    rank: int


@dataclass(frozen=True)
class Failed:
    """The worker stopped on an error (its text)."""

    rank: int
    text: str


Message = Block | Finished | Failed


def under_mpi() -> bool:
    """True when launched by mpiexec with more than one process (no mpi4py import needed)."""
    return any(
        int(os.environ.get(var, "1") or 1) > 1 for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
    )


@dataclass
class Plan:
    """What rank 0 tells the others once the file exists: their points and the engine to use."""

    shares: list[list[int]]
    engine: Any  # engine.select.EngineSettings: rank 0's choice, used as it is
    error: str | None = None
    # CPU tensors by name, so other ranks never open the file, and rank 0's θ with its buffers, so
    # every rank evaluates exactly the same network whatever it loaded itself
    directions: list[dict[str, Any]] | None = None
    centre: dict[str, Any] | None = None
    # --repeat R: the directions of repeats 1..R-1 (CPU tensors, like ``directions``)
    repeats: list[list[dict[str, Any]]] = field(default_factory=list)
    chart: str | None = None  # a 1-D surface along a curve: its kind (``DirectionSet.chart``)


class Serial:
    """One process: no one to share with."""

    rank, size, local_rank, local_size = 0, 1, 0, 1

    def broadcast_plan(self, plan: Plan | None) -> Plan | None:
        return plan

    def start(self, target: Any, args_for_rank: Any) -> None:
        return None  # no worker processes to start

    def send(self, message: Message) -> None:  # pragma: no cover - a serial run has no workers
        raise RuntimeError("a serial run has no rank 0 to send to")

    def messages(self, block: bool) -> Iterator[Message]:
        return iter(())

    def alive_check(self) -> None:
        return None

    def close(self) -> None:
        return None


def communicator(workers: int = 1) -> Serial | MPIComm | LocalPool:
    """The run's communicator: MPI ranks under mpiexec, ``workers`` local processes, or one."""
    check_workers(workers)
    if under_mpi():
        if workers > 1:
            from landscape.errors import ConfigError

            raise ConfigError("use either mpiexec or --workers, not both")
        return MPIComm()
    return LocalPool(workers) if workers > 1 else Serial()


# each worker is a Python process holding the model and the data; past a few per core they only
# queue for the cores, and 100,000 of them exhaust the machine's processes and memory
WORKERS_PER_CORE = 4


def check_workers(workers: int) -> None:
    """Refuse more local workers than ``WORKERS_PER_CORE`` per CPU core, before any spawns."""
    cores = os.cpu_count() or 1
    if workers > WORKERS_PER_CORE * cores:
        from landscape.errors import ConfigError

        raise ConfigError(
            f"--workers {workers} is more than {WORKERS_PER_CORE} processes per CPU core "
            f"({cores} here), which only queue for the cores; use at most "
            f"{WORKERS_PER_CORE * cores}"
        )


class MPIComm:
    """COMM_WORLD of mpi4py; local rank and size from a shared-memory split (ranks on this node)."""

    TAG = 17

    def __init__(self) -> None:
        from mpi4py import MPI  # only under mpiexec

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()

    def broadcast_plan(self, plan: Plan | None) -> Plan:
        return self.comm.bcast(plan, root=0)

    def start(self, target: Any, args_for_rank: Any) -> None:
        return None  # mpiexec started every rank

    def send(self, message: Message) -> None:
        self.comm.send(message, dest=0, tag=self.TAG)

    def messages(self, block: bool) -> Iterator[Message]:
        """Rank 0: the messages waiting (or the next one, when ``block``)."""
        status = self.MPI.Status()
        if block:
            yield self.comm.recv(source=self.MPI.ANY_SOURCE, tag=self.TAG, status=status)
            return
        while self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=self.TAG, status=status):
            yield self.comm.recv(source=status.Get_source(), tag=self.TAG)

    def alive_check(self) -> None:
        return None  # mpiexec ends the whole job when a rank dies

    def close(self) -> None:
        return None


class LocalPool:
    """``--workers N``: rank 0 is this process, ranks 1..N-1 are spawned processes."""

    def __init__(self, size: int) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.rank, self.size = 0, size
        self.local_rank, self.local_size = 0, size
        self.queue = self.ctx.Queue()
        self.procs: list[Any] = []

    def start(self, target: Any, args_for_rank: Any) -> None:
        for r in range(1, self.size):
            p = self.ctx.Process(target=target, args=(*args_for_rank(r), self.queue), daemon=True)
            p.start()
            self.procs.append(p)

    def broadcast_plan(self, plan: Plan | None) -> Plan | None:
        return plan

    def messages(self, block: bool) -> Iterator[Message]:
        while True:
            try:
                yield self.queue.get(timeout=1.0) if block else self.queue.get_nowait()
            except queue.Empty:
                if block:
                    self.alive_check()
                    continue
                return
            if block:
                return

    def alive_check(self) -> None:
        for r, p in enumerate(self.procs, start=1):
            if p.exitcode not in (None, 0):
                raise ParallelError(
                    f"worker {r} died (exit code {p.exitcode}); the points written so far are kept: "
                    "rerun the same command to resume"
                )

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=5)


def exit_with_parent() -> None:
    """In a ``--workers`` process: exit as soon as the process that started it is gone.

    A SIGKILLed parent runs no clean-up, so without this its workers (and, through them,
    multiprocessing's resource tracker) would compute for a dead run for ever. A daemon thread
    waits on the parent's sentinel, which becomes ready when the parent exits for any reason.
    """
    import multiprocessing as mp
    import multiprocessing.connection
    import threading

    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)  # no clean-up to do: rank 0 owns the file, and it is gone

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class QueueSink:
    """A local worker's end of the pool's queue."""

    def __init__(self, q: Any, rank: int) -> None:
        self.q, self.rank = q, rank

    def send(self, message: Message) -> None:
        self.q.put(message)


# --- the runtime: rank 0 collecting, the other ranks evaluating -----------------------------------


def collect(comm: Any, writer: Any, *, block: bool = True) -> None:
    """Rank 0: write what other ranks send; with ``block``, until every one of them is done."""
    waiting = writer.running  # kept across calls: a "done" seen while draining counts later too
    while waiting if block else True:
        got = False
        for message in comm.messages(block):
            got = True
            if isinstance(message, Block):
                writer.add(message.points, force=True)
            elif isinstance(message, Finished):
                waiting.discard(message.rank)
            elif isinstance(message, Failed):
                writer.flush()
                raise ParallelError(
                    f"rank {message.rank} failed: {message.text}; the points written so far are "
                    "kept: rerun the same command to resume"
                )
        if not block and not got:
            return


def local_worker(config: Any, rank: int, size: int, plan: Any, q: Any) -> None:
    """Entry point of a ``--workers`` process (spawned: it imports everything afresh)."""
    exit_with_parent()
    from landscape.tuning import tune_process

    tune_process()  # landscape owns this process, as a command owns its own
    import warnings

    from landscape.errors import LandscapeWarning

    warnings.simplefilter("ignore", LandscapeWarning)  # rank 0 tells the user, once
    worker(config, rank, rank, size, plan, QueueSink(q, rank))


def worker(config: Any, rank: int, local_rank: int, local_size: int, plan: Any, sink: Any) -> None:
    """A rank other than 0: evaluate its share with rank 0's engine, send results in blocks."""
    import numpy as np

    from landscape.evaluation import (
        FLUSH_POINTS,
        FLUSH_SECONDS,
        Run,
        engine_for,
        engine_request,
        evaluate_points,
        numerics,
        repeat_evaluators,
    )

    try:
        run = Run.of_config(config, local_rank, local_size)  # the strings resolved, as rank 0's
        session = run.session
        # exactly rank 0's weights, whatever this process loaded itself
        for name, t in plan.centre.items():
            session.centre[name] = t.to(session.device)
            if name in session.theta:
                session.theta[name] = session.centre[name]
        vectors = [{k: v.to(session.device) for k, v in d.items()} for d in plan.directions]
        axes = run.grid.values()
        request = plan.engine.pin(engine_request(run))  # rank 0's choice, not re-timed
        with numerics(run.evaluation, session.device, local_size):  # a compile's first call
            choice = engine_for(run, vectors, request, len(plan.shares[rank]))
        along = repeat_evaluators(choice.evaluator, plan.repeats, session.device)
        pending: list[Any] = []
        last = time.perf_counter()

        def emit(results: list[Any]) -> None:
            nonlocal pending, last
            pending.extend(results)
            if len(pending) >= FLUSH_POINTS or time.perf_counter() - last >= FLUSH_SECONDS:
                sink.send(Block(rank, pending))
                pending, last = [], time.perf_counter()

        with numerics(run.evaluation, session.device, local_size):
            own = np.asarray(plan.shares[rank], dtype=np.int64)
            evaluate_points(along, own, axes, emit, chart=plan.chart)
        if pending:
            sink.send(Block(rank, pending))
        sink.send(Finished(rank))
    except Exception as exc:
        text = first_line(exc)
        sink.send(Failed(rank, f"{type(exc).__name__}: {text}"))
