"""A surface run as objects (:class:`Run`), and evaluating its points: the engine it asks for,
threads and precision, and the loop that evaluates shares of points (one repeat after another)
and hands their results on.

A ``Run`` is what the core computes on: the session (the model at θ, the data, the loss), the
directions' recipe, the grid and the evaluation settings. The Python API builds one from the
caller's objects; the CLI, YAML and every MPI rank build one from a config's strings
(``Run.of_config``). The config is the run's provenance, written to its file once.

Used by rank 0 (``landscape.runs.surface``) and by every other rank or worker
(``landscape.parallel.worker``) alike, so that all of them evaluate the same way.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape import curves, grid
from landscape.config import ComputeConfig, DirectionSpec, EvalSpec, parse_bytes
from landscape.directions import DirectionSet
from landscape.engine import compile_cache
from landscape.engine.reference import PointEvaluatorBase, to_channels_last
from landscape.engine.select import EngineChoice, EngineRequest, choose_engine
from landscape.errors import ConfigError, DirectionError
from landscape.grid import Grid
from landscape.session import Session

FLUSH_SECONDS = 1.0  # a killed run loses at most about this much work


FLUSH_POINTS = 64


Done = tuple[int, dict[str, float]]  # an evaluated point: its number and its quantities


@dataclass(frozen=True)
class Run:
    """One surface computation, resolved into objects.

    ``session``: the model at θ, the data and the loss. ``directions``: how the directions are
    made (the family, its options, seed, norm, which tensors move; its checkpoint options may
    hold state dicts and models), unless ``given`` holds them already (the API's
    ``directions=``). ``grid``: the coefficients, one axis per direction. ``evaluation``: how each
    point is evaluated; ``batch_size``: samples per forward pass. ``out``: the file written as
    the run goes (None: kept in memory, no file anywhere). ``record``: the config this run is,
    as strings: provenance, written to the file once and compared when a file is resumed.
    """

    session: Session
    directions: DirectionSpec
    grid: Grid
    evaluation: EvalSpec
    batch_size: int
    record: ComputeConfig
    given: DirectionSet | None = None
    out: str | None = None

    @classmethod
    def of_config(cls, config: ComputeConfig, local_rank: int = 0, local_size: int = 1) -> Run:
        """The run a config's strings name: its model, data and loss loaded (the CLI, YAML and
        every MPI rank)."""
        return cls(
            Session.from_config(config, local_rank, local_size),
            config.direction,
            Grid.of(config.grid),
            config.eval,
            config.data.batch_size,
            config,
            out=config.out,
        )

    @property
    def dims(self) -> int:
        return self.grid.dims

    @property
    def repeat(self) -> int:
        return self.directions.repeat


def engine_for(
    run: Run,
    directions: list,
    request: EngineRequest,
    pending: int,
    first_points: Sequence[tuple[float, ...]] = (),
) -> EngineChoice:
    """The evaluator for this process's model, data and directions, as ``request`` asks;
    ``first_points``: the run's first points, on which auto may check its choice (their results
    come back in the choice)."""
    session = run.session
    return choose_engine(
        session.model,
        session.centre,
        directions,
        lambda n: lambda: session.data.batches(n, session.device),
        session.loss_fn,
        request,
        pending,
        first_points,
    )


def engine_request(run: Run) -> EngineRequest:
    """The evaluator options the run asks for (BN policy, precision, layout, compile, budget)."""
    ev, session = run.evaluation, run.session
    options: dict[str, Any] = {"bn": ev.bn, "autocast": autocast_dtype(ev.dtype, session.device)}
    if ev.bn == "recalibrate":
        train = session.train_data()
        bs, n = run.batch_size, ev.bn_batches
        options["train_batches"] = lambda: itertools.islice(train.batches(bs, session.device), n)
    return EngineRequest(
        engine=ev.engine,
        compile=ev.compile,
        fuse=ev.fuse,
        memory_format=ev.memory_format,
        memory_budget=parse_bytes(ev.memory_budget),
        batch_size=run.batch_size,
        options=options,
        split=ev.split_forward,
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
def numerics(settings: EvalSpec, device: torch.device, local_size: int = 1) -> Iterator[None]:
    """Threads, TF32 and inductor's cache folder for the run's duration, restored afterwards.

    Processes sharing a machine's CPU split its cores (cores // processes on the node each).
    """
    with compile_cache.inductor_env(), _threads_and_tf32(settings, device, local_size):
        yield


def threads_per_rank(local_size: int) -> int:
    """Ranks sharing a machine split its cores: cores // ranks on this node, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, local_size))


@contextlib.contextmanager
def _threads_and_tf32(settings: EvalSpec, device: torch.device, local_size: int) -> Iterator[None]:
    threads = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    elif local_size > 1 and device.type == "cpu":
        torch.set_num_threads(threads_per_rank(local_size))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = settings.tf32
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def evaluate_points(
    evaluator_for: Callable[[int], PointEvaluatorBase],
    points: np.ndarray,
    axes: Sequence[np.ndarray],
    emit: Callable[[list[Done]], None],
    between: Callable[[], None] | None = None,
    chart: str | None = None,
) -> None:
    """Evaluate points chunk by chunk (K at a time on the batched path), hand each chunk's results
    to ``emit``, and call ``between`` after each chunk (rank 0 writes what others sent there).

    ``points`` are numbered over every repeat (point k of repeat r is ``r * P + k``); each
    repeat's points are evaluated in turn by ``evaluator_for(r)``. ``axes``: each grid axis'
    coordinates (one per direction: a point's coefficients are ``grid.point_coords``).
    ``chart``: the kind of curve a 1-D surface runs along (``DirectionSet.chart``): its grid
    point t is evaluated at the coefficients ``curves.chart(kind)(t)`` along the directions.
    """
    to_coefficients = curves.chart(chart)
    size = int(np.prod([len(a) for a in axes]))  # P
    for repeat in np.unique(points // size):
        evaluator = evaluator_for(int(repeat))
        mine = points[points // size == repeat]
        chunk = getattr(evaluator, "k", 1)
        for start in range(0, len(mine), chunk):
            flats = [int(f) for f in mine[start : start + chunk]]
            results = evaluator.evaluate_block(
                [to_coefficients(grid.point_coords(f % size, *axes)) for f in flats]
            )
            emit([(f, r.values) for f, r in zip(flats, results, strict=True)])
            if between is not None:
                between()


def repeat_evaluators(
    evaluator: PointEvaluatorBase, repeats: list[list[dict[str, torch.Tensor]]], device: Any
) -> Callable[[int], PointEvaluatorBase]:
    """``evaluator_for(r)``: the run's evaluator for repeat 0, the same one along repeat r's
    directions (``repeats[r - 1]``, moved to ``device`` only when asked for) for the others."""

    def evaluator_for(r: int) -> PointEvaluatorBase:
        return evaluator if r == 0 else along(evaluator, repeats[r - 1], device)

    return evaluator_for


def along(
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
