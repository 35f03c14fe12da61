"""Choosing the evaluator: the fastest correct path for this device, model and run (DESIGN §4).

``--engine auto`` builds the candidates (the per-point path in the contiguous and, for conv nets,
the channels-last layout; the batched path with K points per call), times each on the first few
data batches, and keeps the fastest; one point at a time, its batch sizes (and any candidate
timed close to it) then race on the run's first real points, whose results are kept. It compiles
with ``torch.compile`` only when the time the run is expected to save exceeds, with a margin, what
compiling costs on this device; a compile that fails falls back to the eager path. Every
measurement and decision is returned as a report that the surface file records.

:func:`choose_engine` runs it in stages, each a function of its own: :func:`workbench` (batch, K,
the BatchNorm fold), :func:`candidates`, :func:`timings`, :func:`decide_compile`, then
:func:`race_candidates` on the first points or :func:`check_compile` against eager. What
compiling cost here before lives in ``compile_cache``, with the records' keys and figures.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from landscape.engine import compile_cache, frontier
from landscape.engine.reference import (
    Batches,
    PointEvaluatorBase,
    PointResult,
    eval_mode,
    has_conv2d,
    is_jitted,
)
from landscape.engine.registry import ENGINES
from landscape.errors import ConfigError, first_line
from landscape.tasks import task_of

# what compiling costs, measured on ResNet-20 (CPU: 2 cores; CUDA: one GPU), and what it saves
# a first compile's cost when none was measured here yet (ResNet-20 on this 2-core CPU: 11.4-11.8 s
# cold; a warm inductor cache then takes about 3 s, which the remembered figure reflects)
COMPILE_SECONDS = {"cpu": 12.0, "cuda": 40.0}
COMPILE_SPEEDUP = 1.6
# with BatchNorm folded (engine.fold) the eager path already has what inductor's CPU fusions
# give: ResNet-20 here, 0.50 s compiled against 0.47 s eager a point (and 35 s to compile)
FUSED_COMPILE_SPEEDUP = {"cpu": 1.0}
PAYOFF_MARGIN = 1.5
MAX_LOAD = 32.0  # the most a shared machine's load scales the compile cost by
COMPILE_CHECK_POINTS = 4  # compiled, eager, then each again: the first points on both paths
TIMING_BATCHES = 1  # one warm-up and one timed pass each: the ranking is clear on one batch
MAX_K = 64
# how far another path's values may be from these (relative): engines, layouts, the BatchNorm
# fold, batch sizes and a compile sum float32 products in other orders; measured up to 1.6e-7
# (the batched path on an MLP), 1.3e-7 (the fold), 1e-8 (ResNet-20's layouts), 2e-8 (compiled).
# A resumed run pins its file's settings (compute), so its values are the same bits.
PATH_RTOL = 1e-6
DEFAULT_CPU_BUDGET = 2 * 2**30  # bytes of activations when --memory-budget is not given


class Evaluator(Protocol):
    """What an engine's evaluator offers the run: points in, their quantities out."""

    name: str
    directions: list[dict[str, torch.Tensor]]
    channels_last: bool

    def evaluate_block(self, points: Sequence[tuple[float, ...]]) -> list[PointResult]: ...

    def describe(self) -> dict[str, object]: ...


# the engines, by name (``engine.registry.ENGINES``): ``--engine auto`` times each; a class's
# ``points_per_call`` marks one that takes K points per call (K from the memory budget),
# ``runs_scripted`` one that can run TorchScript


@dataclass(frozen=True)
class EngineSettings:
    """What the selector chose, for other processes to use as it is (picklable, no timing)."""

    engine: str  # reference | batched
    compile: bool
    channels_last: bool
    k: int | None  # points per batched call
    batch_size: int
    fused: bool = False  # BatchNorm folded (engine.fold)
    split: bool = False  # the forward split at the moved tensors (engine.split)

    @classmethod
    def recorded(cls, report: Any, device: torch.device) -> EngineSettings | None:
        """The settings an engine record (``EngineChoice.report``, as a surface file stores it)
        names, when it was made on a device of ``device``'s type and names them all; else None."""
        if not isinstance(report, dict) or report.get("engine") not in ENGINES:
            return None
        k, batch = report.get("k"), report.get("batch_size")
        if str(report.get("device", "")).split(":")[0] != device.type or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (k, batch)
        ):
            return None
        flags = [report.get(f) for f in ("compile", "channels_last")]
        if not all(isinstance(f, bool) for f in flags) or not isinstance(report.get("fused"), int):
            return None  # fused: the number of convolutions BatchNorm was folded into
        split = report.get("split") is True  # files from before the split: not split
        return cls(report["engine"], flags[0], flags[1], k, batch, report["fused"] > 0, split)

    def pin(self, request: EngineRequest) -> EngineRequest:
        """``request`` with every choice fixed to these settings: nothing is timed again."""
        return replace(
            request,
            engine=self.engine,
            compile="on" if self.compile else "off",
            fuse="on" if self.fused else "off",
            memory_format="channels-last" if self.channels_last else "contiguous",
            k=self.k,
            batch_size=self.batch_size,
            split="on" if self.split else "off",
        )


@dataclass
class EngineChoice:
    evaluator: PointEvaluatorBase
    report: dict[str, Any] = field(default_factory=dict)
    settings: EngineSettings | None = None
    done: list[PointResult] = field(default_factory=list)  # the first points, when checked on


@dataclass
class EngineRequest:
    """What the run asks for; ``auto`` lets the selector decide. No field has a default here:
    each setting's default is its config field's (``EvalSpec``, ``DataSpec.batch_size``), which
    ``evaluation.engine_request`` passes on."""

    engine: str  # auto | reference | batched
    compile: str  # auto | on | off
    fuse: str  # auto | on | off: fold BatchNorm on the per-point path (engine.fold)
    memory_format: str  # auto | contiguous | channels-last
    memory_budget: int | None  # bytes for the batched path's activations; None: auto
    batch_size: int
    split: str  # auto | on | off: compute the static part once per batch (engine.split)
    options: dict[str, Any] = field(default_factory=dict)  # bn, train_batches, autocast
    k: int | None = None  # points per batched call; None: from the memory budget


Candidate = tuple[str, bool, int]  # engine, channels_last, batch size


@dataclass
class Bench:
    """What the stages build and time candidates with: the run's model, weights, directions and
    loss, its data at any batch size (``batches_of``), the points per batched call (``k``), the
    BatchNorm-folded model (None: not folded), and the engine report every stage fills in (the
    surface file's ``engine`` record)."""

    model: torch.nn.Module
    centre: dict[str, torch.Tensor]
    directions: list[dict[str, torch.Tensor]]
    batches_of: Callable[[int], Batches]
    loss_fn: Callable
    options: dict[str, Any]  # the request's evaluator options (bn, train_batches, autocast)
    batch: int  # --batch-size within the memory budget (:func:`batch_and_k`)
    k: int
    folded: torch.nn.Module | None
    split: Any  # engine.split.Split, or None: the full forward at each point
    total: int  # samples in the evaluation set
    sizes: list[int]  # the batch sizes auto compares (one: none compared)
    report: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(iter(self.centre.values())).device

    def make(
        self, engine: str, channels_last: bool, data: Batches, compile: bool = False
    ) -> PointEvaluatorBase:
        """The evaluator of one path on ``data``."""
        opts = dict(self.options, channels_last=channels_last, compile=compile)
        cls = ENGINES[engine]
        opts["split"] = self.split  # built once: every engine computes only what moves
        if cls.points_per_call:  # K points per call, from the memory budget
            opts["k"] = self.k
        elif self.folded is not None:  # one point at a time: the BatchNorm-folded model
            opts["module"] = self.folded
        return cls(self.model, self.centre, self.directions, data, self.loss_fn, **opts)

    def build(self, candidate: Candidate, compile: bool = False) -> PointEvaluatorBase:
        """A candidate's evaluator on the whole evaluation set at its batch size."""
        engine, channels_last, batch = candidate
        return self.make(engine, channels_last, self.batches_of(batch), compile)


@dataclass
class Timings:
    """What the timings chose (engine, layout, batch size), its projected seconds a point (None:
    one candidate, nothing timed) and the machine's load they ran under (:func:`_load_factor`);
    ``arms``: the candidates to race on the run's first points, the choice first (none: no race)."""

    chosen: Candidate
    per_point: float | None = None
    load: float = 1.0
    arms: list[Candidate] = field(default_factory=list)


def choose_engine(
    model: torch.nn.Module,
    centre: dict[str, torch.Tensor],
    directions: list[dict[str, torch.Tensor]],
    batches_of: Callable[[int], Batches],
    loss_fn: Callable,
    request: EngineRequest,
    pending_points: int,
    first_points: Sequence[tuple[float, ...]] = (),
) -> EngineChoice:
    """Build the evaluator the request asks for, timing candidates where it says auto.

    ``batches_of(n)`` gives the evaluation set in batches of n samples; n and K come from the
    memory budget (:func:`batch_and_k`). ``first_points``: the run's first points; when the
    timings chose between candidates, the closest of them race on these (:func:`_race`) and
    their results are returned in ``EngineChoice.done``. The stages, in order: the candidates,
    their timings, the compile decision, then a race of the closest on the first points or a
    compile checked against eager there.
    """
    bench = workbench(model, centre, directions, batches_of, loss_fn, request)
    paths = candidates(model, request, bench.device)
    timed = timings(bench, paths, request.compile, pending_points, first_points)
    compile, record = decide_compile(bench, timed, request.compile, pending_points)
    chosen, done = timed.chosen, []
    if timed.arms and not compile:  # the closest candidates raced on the run's first points
        evaluator, done, chosen = race_candidates(bench, timed.arms, first_points)
    else:
        evaluator = bench.build(chosen, compile)
    if compile:
        evaluator, done = check_compile(bench, evaluator, timed, record, request, first_points)
    return _choice(bench, evaluator, chosen[2], done)


def workbench(
    model: torch.nn.Module,
    centre: dict[str, torch.Tensor],
    directions: list[dict[str, torch.Tensor]],
    batches_of: Callable[[int], Batches],
    loss_fn: Callable,
    request: EngineRequest,
) -> Bench:
    """The batch and K from the memory budget, the BatchNorm fold (:func:`_fold`), the batch
    sizes to compare, and the report begun with them."""
    device = next(iter(centre.values())).device
    batch, k = batch_and_k(model, centre, batches_of, request, device)
    batches = batches_of(batch)
    total = len_of(batches)
    made, split_report = _split(model, centre, directions, batches, request, total)
    if made is not None and made.store == frontier.MEMORY and request.k is None:
        k = _k_beside(k, split_report["split_frontier_bytes"], memory_budget(request, device))
    folded, fold_report = _fold(model, centre, batches, request, made is not None)
    report: dict[str, Any] = {
        "device": str(device), "k": k, "batch_size": batch, "timings": {}, "paths_rtol": PATH_RTOL
    }  # fmt: skip
    report.update(fold_report)
    report.update(split_report)
    # a split keeps frontiers per batch size and layout: racing several would compute the static
    # part once per arm, which is what the split saves; the timings alone choose, each timed on
    # about TIMING_SAMPLES samples within the selection's budget (:func:`_search_batches`)
    sizes = _batch_sizes(request, device, batch, total)
    return Bench(
        model, centre, directions, batches_of, loss_fn, request.options,
        batch=batch, k=k, folded=folded, split=made, total=total, sizes=sizes, report=report,
    )  # fmt: skip


def _k_beside(k: int, kept: int, budget: int) -> int:
    """The points per batched call when ``kept`` bytes of the budget hold a split's frontiers:
    K shrinks with the budget left, K' = max(1, K · (budget − kept) / budget), since K was sized
    from the whole budget (:func:`batch_and_k`: K ∝ budget)."""
    return max(1, min(k, k * max(0, budget - kept) // max(1, budget)))


def candidates(
    model: torch.nn.Module, request: EngineRequest, device: torch.device
) -> list[tuple[str, bool]]:
    """The engines and layouts (``channels_last``) worth timing for this model on this device:
    the one the request names, or under auto every engine that can run it well."""
    formats = _formats(model, request)
    engines = list(ENGINES) if request.engine == "auto" else [request.engine]
    if is_jitted(model):  # a TorchScript module runs in place, one point at a time
        engines, formats = (
            [e for e in engines if ENGINES[e].runs_scripted] or ["reference"],
            [False],
        )
    if request.engine == "auto" and task_of(model) is not None:
        # a transformer: vmap over K stacked copies of its weights costs K× the memory and gains
        # nothing on a sequence-length-bound forward; one point at a time
        engines = ["reference"]
    if request.engine == "auto" and device.type == "cpu" and has_conv2d(model):
        # on a CPU, oneDNN's convolutions are already at the cores' limit for one point: K points
        # per call only add memory traffic (2× slower measured on ResNet-20), never time them
        engines = [e for e in engines if not ENGINES[e].points_per_call] or engines
    return [(e, cl) for e in engines for cl in formats]


def timings(
    bench: Bench,
    paths: list[tuple[str, bool]],
    compile: str,
    pending: int,
    first_points: Sequence[tuple[float, ...]],
) -> Timings:
    """The candidates timed, when there is a choice: engines and layouts first, at one batch
    size (LAYOUT_BATCH where batch sizes are compared, else --batch-size); then, one point at a
    time only, the batch sizes for the best of them: raced on the run's first points when it
    has any (``Timings.arms``; not under --compile on), else timed within the selection budget
    (:func:`_search_batches`). Each timing goes into the report, with what the selection took
    and the load it ran under."""
    sizes, report = bench.sizes, bench.report
    if len(paths) == 1 and len(sizes) == 1:
        return Timings((*paths[0], bench.batch))
    started, cpu_started = time.perf_counter(), time.thread_time()
    seconds, labels = report["timings"], {}  # labels: each timing's candidate
    first_size = min(sizes, key=lambda b: abs(b - LAYOUT_BATCH)) if len(sizes) > 1 else bench.batch
    for engine, cl in paths:  # once each where the closest race on the first points
        _time_candidate(
            bench, labels, (engine, cl, first_size), 1 if first_points else TIMING_REPEATS
        )
    if not seconds:
        raise ConfigError(f"no evaluation path runs this model: {report.get('unavailable')}")
    first = min(seconds, key=seconds.get)
    one_point = not ENGINES[labels[first][0]].points_per_call
    arms: list[Candidate] = []
    if first_points and compile != "on" and one_point and bench.split is None:
        arms = _race_arms(seconds, labels, first, sizes)
    if len(arms) < 2 and one_point:
        arms = []
        _search_batches(bench, labels, first, first_size, pending, started)
    best = min(seconds, key=seconds.get)
    report["selection_seconds"] = round(time.perf_counter() - started, 2)
    load = _load_factor(
        bench.device, time.perf_counter() - started, time.thread_time() - cpu_started
    )
    report["load_factor"] = round(load, 2)
    if labels[best][2] != bench.batch:
        report["batch_size"] = labels[best][2]
    return Timings(labels[best], seconds[best], load, arms)


def _time_candidate(
    bench: Bench, labels: dict[str, Candidate], candidate: Candidate, repeats: int
) -> float:
    """One candidate's seconds for a whole point, projected from a few batches and recorded in
    the report's timings under its label (``labels`` maps it back); inf when it cannot run."""
    engine, cl, b = candidate
    many = len(bench.sizes) > 1
    label = _label(engine, cl, b, many)
    labels[label] = candidate
    few, samples = _timing_batches(bench.batches_of(b), b, bench.total, many)
    try:
        per_call = bench.k if ENGINES[engine].points_per_call else 1
        seconds = _seconds_per_point(bench.make(engine, cl, few), per_call, repeats)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        # e.g. vmap over a torch.export graph: this candidate cannot run on this model
        bench.report.setdefault("unavailable", {})[label] = first_line(exc, 200)
        return math.inf
    bench.report["timings"][label] = seconds * bench.total / samples
    return bench.report["timings"][label]


def _search_batches(
    bench: Bench,
    labels: dict[str, Candidate],
    first: str,
    first_size: int,
    pending: int,
    started: float,
) -> None:
    """The batch sizes of the timings' best candidate (``first``) timed outward from
    ``first_size`` (:func:`_batch_search`) while the selection stays within its budget
    (:func:`selection_budget`, counted from ``started``)."""
    seconds = bench.report["timings"]
    engine, cl, _ = labels[first]
    budget = selection_budget(seconds[first], pending)
    bench.report["selection_budget_seconds"] = round(budget, 2)
    per_sample = seconds[first] / bench.total

    def within_budget(b: int) -> float:
        # a warm-up batch and one pass: inf when that would overrun the budget
        cost = per_sample * (min(b, bench.total) + _timed_samples(b, bench.total, True))
        over = time.perf_counter() - started + cost > budget
        return math.inf if over else _time_candidate(bench, labels, (engine, cl, b), 1)

    _batch_search(bench.sizes, first_size, seconds[first], within_budget)


def decide_compile(bench: Bench, timed: Timings, asked: str, pending: int) -> tuple[bool, str]:
    """Whether the timings' choice compiles (:func:`_compile_decision`, on what compiling cost
    here before: its ``compile_cache`` record, whose key is returned too), and why, in the
    report; the persistent inductor cache is chosen when it does."""
    engine, cl, batch = timed.chosen
    fused = bench.folded is not None and not ENGINES[engine].points_per_call
    record = compile_cache.key(bench.model, bench.device, engine, cl, batch, fused=fused)
    known = compile_cache.recall(record)
    compile, why = _compile_decision(
        asked, bench.device, timed.per_point, pending, known, fused, timed.load
    )
    bench.report.update(engine=engine, channels_last=cl, compile=compile, compile_reason=why)
    if compile:
        compile_cache.use_persistent_inductor_cache()
    return compile, record


def race_candidates(
    bench: Bench, arms: list[Candidate], first_points: Sequence[tuple[float, ...]]
) -> tuple[PointEvaluatorBase, list[PointResult], Candidate]:
    """The closest candidates raced on the run's first points (:func:`_race`; the race goes into
    the report): the timings' choice, the other engines or layouts timed close to it, then batch
    sizes walked outward from it as :func:`_batch_search` walks. Returns the kept evaluator, the
    points' results and the kept candidate."""
    many = len(bench.sizes) > 1
    at_size = {b: i for i, (e, c, b) in enumerate(arms) if (e, c) == arms[0][:2]}

    def round_one(point: Callable[[int], float]) -> None:
        seconds = point(0)
        for i in (i for i in range(len(arms)) if i not in at_size.values()):
            point(i)
        _batch_search(bench.sizes, arms[0][2], seconds, lambda b: point(at_size[b]))

    named = [(_label(*arm, many), arm) for arm in arms]
    evaluator, done, bench.report["race"], won = _race(
        [
            (label, functools.partial(bench.build, arm),
             label in bench.report["timings"])  # timed already: warm
            for label, arm in named
        ],
        first_points,
        round_one,
    )  # fmt: skip
    engine, cl, batch = arms[won]
    bench.report.update(engine=engine, channels_last=cl, batch_size=batch)
    return evaluator, done, arms[won]


def check_compile(
    bench: Bench,
    compiled: PointEvaluatorBase,
    timed: Timings,
    record: str,
    request: EngineRequest,
    first_points: Sequence[tuple[float, ...]],
) -> tuple[PointEvaluatorBase, list[PointResult]]:
    """The compiled path compiled on one point now (:func:`_checked_compile`: a compiler that
    fails leaves eager in place); under --compile auto raced against eager on the first points
    (:func:`_compile_check`: kept or dropped, their results returned), else (--compile on, or a
    resume's pinned settings) its speed-up timed aside; the compile's cost, the load and the
    speed-up remembered in its ``compile_cache`` record for the next run."""
    engine, cl, batch = timed.chosen
    eager = functools.partial(bench.make, engine, cl, bench.batches_of(batch), False)
    evaluator = _checked_compile(compiled, eager, bench.report)
    if not bench.report["compile"]:
        return evaluator, []
    done: list[PointResult] = []
    if request.compile == "auto":
        evaluator, done, speedup = _compile_check(evaluator, eager, first_points, bench.report)
    else:
        speedup = _compiled_speedup(evaluator, timed.per_point, bench.report)
    compile_cache.remember_compile(record, bench.report["compile_seconds"], timed.load, speedup)
    return evaluator, done


def _choice(
    bench: Bench, evaluator: PointEvaluatorBase, batch: int, done: list[PointResult]
) -> EngineChoice:
    """The choice made: the evaluator's own description in the report, and the settings other
    processes (and a resume) repeat."""
    report = bench.report
    report["engine"] = evaluator.name
    report.update(evaluator.describe())
    fused = evaluator.module is bench.folded and bench.folded is not None
    if not fused:
        report.update(fused=0)
    split = report["split"]  # every engine takes the bench's split (evaluator.describe)
    settings = EngineSettings(
        evaluator.name, bool(report.get("compile")), bool(evaluator.channels_last), bench.k, batch,
        fused, split,
    )  # fmt: skip
    return EngineChoice(evaluator, report, settings, done)


RACE_POINTS = 8  # at most this many of the run's first points race the closest candidates
RACE_MARGIN = 0.25  # another engine or layout timed within this of the best races too
RACE_FINALISTS = 2  # the fastest arms of the first round run a second point each


def _label(engine: str, channels_last: bool, batch: int, sizes_compared: bool) -> str:
    """A candidate's name in the report: ``reference+channels-last@128``."""
    return f"{engine}{'+channels-last' if channels_last else ''}" + (
        f"@{batch}" if sizes_compared else ""
    )


def _race_arms(
    timings: dict[str, float],
    labels: dict[str, tuple[str, bool, int]],
    first: str,
    sizes: Sequence[int],
) -> list[tuple[str, bool, int]]:
    """The candidates that race on the first points, the timings' choice first: every batch size
    for the best engine and layout (their ranking moves by 5-15% with a shared machine's spells,
    more than a few batches can tell), and any other engine or layout timed within RACE_MARGIN.
    One point at a time only: a batched arm's point is K points."""
    engine, cl, b = labels[first]
    arms = [(engine, cl, b)] + [(engine, cl, s) for s in sizes if s != b]
    close = sorted(
        (t, labels[label]) for label, t in timings.items()
        if label != first and t <= timings[first] * (1 + RACE_MARGIN)
        and not ENGINES[labels[label][0]].points_per_call
    )  # fmt: skip
    return arms + [arm for _, arm in close if arm not in arms]


def _race(
    arms: Sequence[tuple[str, Callable[[], PointEvaluatorBase], bool]],
    points: Sequence[tuple[float, ...]],
    round_one: Callable[[Callable[[int], float]], None] | None = None,
) -> tuple[PointEvaluatorBase, list[PointResult], dict[str, Any], int]:
    """The arms ``(label, build, warm)`` raced on the run's first real points, whose results
    are kept: a whole point is the run's unit, and timings on a few batches, one candidate after
    another, rank candidates 5-15% apart by the spell each happened to run in.

    Round one evaluates one point with each arm ``round_one`` asks for (given ``point(i)``,
    which runs the next point with arm i and returns its seconds, inf once the points are used
    up; by default every arm in turn). An arm not ``warm`` (not timed in this process yet) first
    runs its point on one batch, so that its buffers and kernels are made outside the clock.
    Round two runs one more point with each of the RACE_FINALISTS fastest, and then with the
    timings' choice (arm 0) if it is not one of them. A shared machine only
    ever slows a point down, so an arm's fastest point is its figure, and the fastest arm keeps
    the rest of the run. Returns the kept evaluator, the points' results, the race's record and
    the kept arm's index."""
    todo = list(points[:RACE_POINTS])
    made: dict[int, PointEvaluatorBase] = {}
    seconds: dict[int, list[float]] = {}
    done: list[PointResult] = []

    def point(i: int) -> float:
        if not todo:
            return math.inf
        _, build, warm = arms[i]
        if i not in made:
            made[i] = build()
            if not warm:
                _warm_up(made[i], todo[:1])
            elif getattr(made[i], "prime", None) is not None:
                made[i].prime()  # a split's frontiers: once for the run, not part of a point
        start = time.perf_counter()
        done.extend(made[i].evaluate_block(todo[:1]))
        seconds.setdefault(i, []).append(time.perf_counter() - start)
        del todo[:1]
        return seconds[i][-1]

    if round_one is None:
        for i in range(len(arms)):
            point(i)
    else:
        round_one(point)
    _round_two(seconds, point)
    won = min(seconds, key=lambda i: min(seconds[i])) if seconds else 0
    if won not in made:  # no point to race on
        made[won] = arms[won][1]()
    record = {
        "chosen": arms[0][0],  # the timings' choice
        "kept": arms[won][0],
        "points": len(done),
        "point_seconds": {arms[i][0]: [round(t, 4) for t in ts] for i, ts in seconds.items()},
    }
    return made[won], done, record, won


def _round_two(seconds: dict[int, list[float]], point: Callable[[int], float]) -> None:
    """A race's second round (:func:`_race`): one more point with each of the RACE_FINALISTS
    fastest arms of round one (``seconds``), then with the timings' choice (arm 0) if it is not
    one of them."""
    finalists = sorted(seconds, key=lambda i: min(seconds[i]))[:RACE_FINALISTS]
    if len(finalists) > 1:
        if 0 in seconds and 0 not in finalists:
            # the timings' choice ran first, where a slow spell at a run's start lands (measured:
            # its point 0.50 s, then 0.37 and 0.32 s for the arms after it as the spell ended);
            # without a second point a later arm would win by the spell's end, not its speed
            finalists.append(0)  # run last
        for i in finalists:
            point(i)


def _fold(
    model: torch.nn.Module,
    centre: dict[str, torch.Tensor],
    batches: Batches,
    request: EngineRequest,
    split: bool = False,
) -> tuple[torch.nn.Module | None, dict[str, Any]]:
    """The BatchNorm-folded model (``engine.fold``) for the per-point path, when the request
    allows it and the fold gives the model's outputs on the first samples; why not, otherwise."""
    from landscape.engine import fold

    bn = request.options.get("bn", "eval")
    why = None
    if request.fuse == "off":
        why = "--fuse off"
    elif request.fuse == "auto" and request.engine != "auto":
        why = "an explicit engine folds BatchNorm only with --fuse on"
    elif bn == "train":
        why = "--bn train normalizes with each batch's statistics"
    elif split:  # a folded add may write into its addend: a kept frontier value
        why = "the forward is split at the moved tensors"
    elif not has_conv2d(model):
        why = "no convolution to fold into"
    elif is_jitted(model) or task_of(model) is not None:
        why = "not a traceable conv net"
    if why is not None:
        return None, {"fused": 0, "fuse_reason": why}
    folded = fold.fold_batchnorm(model)
    if folded.module is None:
        return None, folded.describe()
    x, _ = next(iter(batches()))
    ok, diff = fold.agrees(model, folded.module, dict(centre), x[:8])
    if not ok:
        return None, {"fused": 0, "fuse_reason": f"the folded model differs by {diff:.1e}"}
    return folded.module, {**folded.describe(), "fuse_check": float(f"{diff:.2e}")}


SPLIT_MIN_SHARE = 0.1  # auto splits when the static part has this share of a forward's FLOPs


def _split(
    model: torch.nn.Module,
    centre: dict[str, torch.Tensor],
    directions: list[dict[str, torch.Tensor]],
    batches: Batches,
    request: EngineRequest,
    total: int,
) -> tuple[Any, dict[str, Any]]:
    """The forward split at the moved tensors (``engine.split``) for every engine when the
    request allows it, it gives the full forward's values on the first samples, its frontiers
    for the whole evaluation set fit the memory budget or can be read back from disk faster
    than computed (:func:`_spill_verdict`) and (under auto) its static part is at least
    SPLIT_MIN_SHARE of a forward's FLOPs (``split.probe``); why not, otherwise.
    Under ``--split-forward on`` a reason is an error."""
    from landscape.engine import split

    why, made, figures = _split_refusal(model, request), None, {}
    if why is None:
        fold_bn = request.fuse != "off" and has_conv2d(model) and not task_of(model)
        made = split.split_forward(model, set(directions[0]) if directions else set(), fold_bn)
        why = made if isinstance(made, str) else None
    if why is None:
        x, _ = next(iter(batches()))
        try:
            figures = split.probe(model, made, centre, directions, x)
        except split.Unsplittable as exc:
            why = str(exc)
    if why is None:
        why = _split_verdict(figures, (total, int(x.shape[0])), request, x.device)
    if why is None and figures["frontier_store"] != frontier.MEMORY:
        why = _spill_verdict(model, made, centre, x, figures, request)
    if why is None:
        made.store = figures["frontier_store"]
        report = {"split_path": made.how, **{f"split_{k}": v for k, v in figures.items()}}
        return made, report
    if request.split == "on":
        raise ConfigError(f"--split-forward on: {why}; use --split-forward auto or off")
    return None, {"split_reason": why, **{f"split_{k}": v for k, v in figures.items()}}


def _split_refusal(model: torch.nn.Module, request: EngineRequest) -> str | None:
    """Why the request or the model rules the split out before trying it (None: try it)."""
    bn = request.options.get("bn", "eval")
    if request.split == "off":
        return "--split-forward off"
    if bn != "eval":
        return f"--bn {bn}: BatchNorm statistics change with each point"
    if is_jitted(model):
        return "a TorchScript model cannot be split"
    return None


def _split_verdict(
    figures: dict[str, Any], size: tuple[int, int], request: EngineRequest, device: torch.device
) -> str | None:
    """Why a working split is not used (None: used): its check failed, or under auto it would
    save too little. Where its frontiers go (``frontier_store``: within the memory budget in
    memory, else in the host's memory or on disk; ``frontier.where``) is recorded with their
    bytes, for ``size``: the evaluation set's samples and their batch size."""
    from landscape.engine import split

    total, batch = size
    if figures["check"] > PATH_RTOL:
        return f"the split differs from the full forward by {figures['check']:.1e} (relative)"
    need = split.frontier_need(  # every batch's frontier, kept
        figures["frontier_bytes_per_sample"],
        figures.get("frontier_bytes_per_batch", 0),
        total,
        batch,
    )
    figures["frontier_bytes"] = need
    figures["frontier_store"] = frontier.where(need, memory_budget(request, device), device)
    if request.split == "auto" and figures["static_share"] < SPLIT_MIN_SHARE:
        return f"the static part is {figures['static_share']:.0%} of a forward: too little to save"
    return None


def _spill_verdict(
    model: torch.nn.Module,
    made: Any,
    centre: dict[str, torch.Tensor],
    x: torch.Tensor,
    figures: dict[str, Any],
    request: EngineRequest,
) -> str | None:
    """Why frontiers over the memory budget are not kept where ``frontier.where`` put them (the
    host's memory or disk; None: kept there): a file cannot keep what they hold, or under auto
    reading the first batch's back is slower than its static pass (both timed once, figures
    recorded). ``--split-forward on`` keeps them there whatever the times."""
    device, place = x.device, figures["frontier_store"]
    with eval_mode(model), torch.inference_mode():
        timed = frontier.timed_spill(lambda: made.static(centre, x), device, place)
    need, budget = figures["frontier_bytes"], memory_budget(request, device)
    over = (
        f"the frontier of the evaluation set needs {need / 2**20:.0f} MiB, over the memory "
        f"budget of {budget / 2**20:.0f} MiB (--memory-budget)"
    )
    if isinstance(timed, str):
        return f"{over}, and cannot go to disk: {timed}"
    figures.update(timed)
    if request.split == "auto" and timed["read_seconds"] >= timed["static_seconds"]:
        source = "from disk" if place == frontier.DISK else "from the host's memory"
        return (
            f"{over}, and reading a batch's {source} ({timed['read_seconds']:.3g} s) is no "
            f"faster than computing it ({timed['static_seconds']:.3g} s)"
        )
    return None


def frontier_plan(
    model: torch.nn.Module,
    centre: dict[str, torch.Tensor],
    moved: set[str],
    x: torch.Tensor,
    size: tuple[int, int],
    request: EngineRequest,
) -> tuple[int, str] | None:
    """For the memory plan, before any engine is timed: the bytes the split's frontiers would
    take for ``size`` (the evaluation set's samples and their batch size; per sample and per
    batch from the static pass on one sample and on ``x``: ``split.frontier_rates``) and where
    they would be kept (``frontier.where``, as :func:`_split_verdict` decides); None when the
    request or the model rules the split out, or the model does not run on ``x`` (the run's own
    checks say why)."""
    from landscape.engine import split

    if _split_refusal(model, request) is not None:
        return None
    made = split.split_forward(model, moved)
    if isinstance(made, str):
        return None
    try:
        with eval_mode(model), torch.inference_mode():
            one = split.frontier_bytes(made.static(centre, x[:1]))
            rates = split.frontier_rates(one, split.frontier_bytes(made.static(centre, x)), len(x))
        need = split.frontier_need(*rates, *size)
    except (split.Unsplittable, RuntimeError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, AssertionError):  # fmt: skip
        return None
    return need, frontier.where(need, memory_budget(request, x.device), x.device)


def _formats(model: torch.nn.Module, request: EngineRequest) -> list[bool]:
    if request.memory_format == "contiguous" or not has_conv2d(model):
        return [False]
    if request.memory_format == "channels-last":
        return [True]
    return [False, True]


def batch_and_k(
    model: torch.nn.Module,
    centre: dict[str, torch.Tensor],
    batches_of: Callable[[int], Batches],
    request: EngineRequest,
    device: torch.device,
) -> tuple[int, int]:
    """The data batch and the points per batched call, from the memory budget.

    A forward over K points keeps at most K × batch × a bytes of activations alive (a: the bytes
    of every module output for one sample, an upper bound). ``--batch-size`` is the largest batch;
    it shrinks when one point's activations would not fit the budget, and K takes what is left:

        batch = min(batch_size, budget // a),    K = clamp(budget // (a · batch), 1, MAX_K)
    """
    if request.k is not None:  # a worker repeats rank 0's choice
        return request.batch_size, request.k
    budget = memory_budget(request, device)
    per_sample = activation_bytes_per_sample(model, centre, batches_of(request.batch_size))
    batch = int(max(1, min(request.batch_size, budget // per_sample)))
    k = budget // (per_sample * batch)
    return batch, int(max(1, min(MAX_K, k)))


def memory_budget(request: EngineRequest, device: torch.device) -> int:
    """Bytes --memory-budget gives; auto: half the free GPU memory, DEFAULT_CPU_BUDGET on a CPU."""
    if request.memory_budget is not None:
        return request.memory_budget
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return DEFAULT_CPU_BUDGET


def activation_bytes_per_sample(
    model: torch.nn.Module, centre: dict[str, torch.Tensor], batches: Batches
) -> int:
    """Bytes of all module outputs for one sample: an upper bound of what a forward keeps alive."""
    from torch.func import functional_call

    total = 0

    def hook(_m: torch.nn.Module, _i: Any, out: Any) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out[:1].numel() * out.element_size()

    if is_jitted(model):
        return 4 * 2**20  # cannot hook a TorchScript module: assume 4 MB per sample
    x, _ = next(iter(batches()))
    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with eval_mode(model), torch.inference_mode():
            functional_call(model, dict(centre), (x[:1],))
    finally:
        for h in handles:
            h.remove()
    return max(total, 1)


def _first_batches(batches: Batches, n: int) -> Batches:
    return lambda: itertools.islice(batches(), n)


CPU_BATCH_SIZES = (64, 128, 256)  # besides --batch-size: smaller batches stay in the L2 cache
LAYOUT_BATCH = 128  # where batch sizes are compared, layouts are ranked at the nearest one
TIMING_REPEATS = 2  # timed passes per layout candidate (the best counts), after a warm-up batch
TIMING_SAMPLES = 256  # each candidate is timed on about this many samples (all, if fewer)
SELECTION_SECONDS = 1.0  # the selection's budget on a short run ...
SELECTION_SHARE = 0.02  # ... and its share of a long one's projected evaluation time


def selection_budget(per_point: float, pending: int) -> float:
    """Seconds the whole timing may take (the layouts' included; a batch size is not timed
    when its timing would overrun it): about a second on a short run, 2% of a long run's
    projected evaluation (a 5% faster batch size then pays for its search)."""
    return max(SELECTION_SECONDS, SELECTION_SHARE * per_point * pending)


def _batch_search(
    sizes: Sequence[int], start: int, seconds: float, time_of: Callable[[int], float]
) -> None:
    """Time batch sizes outward from ``start`` (timed already: ``seconds``): larger ones while
    each is faster than the one before; if the first larger one is not, smaller ones the same way.
    A time of inf (over budget, or cannot run) ends the search."""
    previous = seconds
    up = [b for b in sizes if b > start]
    for i, b in enumerate(up):
        t = time_of(b)
        if math.isinf(t) or (t > previous and i > 0):
            return  # over budget, or faster then slower: the best is found
        if t > previous:
            break  # the first larger batch is slower: look at smaller ones
        previous = t
    else:
        if up:
            return  # faster all the way up
    previous = seconds
    for b in [b for b in reversed(sizes) if b < start]:
        t = time_of(b)
        if math.isinf(t) or t > previous:
            return
        previous = t


def len_of(batches: Batches) -> int:
    """Samples in the evaluation set the batches cover."""
    return sum(int(y.shape[0]) for _, y in batches())


def _batch_sizes(request: EngineRequest, device: torch.device, batch: int, total: int) -> list[int]:
    """The batch sizes auto times: on a CPU under ``bn eval`` (where the batch changes no value),
    the smaller of CPU_BATCH_SIZES and ``--batch-size`` itself, which stays the largest batch."""
    bn = request.options.get("bn", "eval")
    if request.engine != "auto" or device.type != "cpu" or bn != "eval":
        return [batch]
    sizes = sorted({b for b in CPU_BATCH_SIZES if b < batch and b < total} | {batch})
    return sizes


def _timed_samples(size: int, total: int, many: bool) -> int:
    """Samples a candidate at batch ``size`` is timed on: TIMING_BATCHES batches, or, when batch
    sizes are compared, about TIMING_SAMPLES samples (one batch at least)."""
    n = TIMING_BATCHES if not many else max(1, -(-min(TIMING_SAMPLES, total) // size))
    return min(total, n * size)


def _timing_batches(batches: Batches, size: int, total: int, many: bool) -> tuple[Batches, int]:
    """The batches one candidate is timed on (:func:`_timed_samples`) and how many samples they
    hold."""
    samples = _timed_samples(size, total, many)
    return _first_batches(batches, -(-samples // size)), samples


def _seconds_per_point(evaluator: PointEvaluatorBase, k: int, repeats: int = 1) -> float:
    """The best of ``repeats`` timings of one chunk of k points, after a warm-up chunk on the
    first batch alone; seconds per point (the best, since a shared machine only ever slows a
    timing down)."""
    points = [(0.0,) * len(evaluator.directions)] * k
    _warm_up(evaluator, points)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        evaluator.evaluate_block(points)
        best = min(best, (time.perf_counter() - start) / k)
    return best


def _warm_up(evaluator: PointEvaluatorBase, points: Sequence[tuple[float, ...]]) -> None:
    """``points`` evaluated on the first batch alone: allocations and lazy inits out of the way
    of a timing, as are a split's frontiers (computed once, whatever the points, before the
    warm-up, which reads the first batch's instead of computing it a second time)."""
    evaluator.first_batch().evaluate_block(points)


def _compile_decision(
    asked: str,
    device: torch.device,
    per_point: float | None,
    pending: int,
    known: dict[str, float] | None = None,
    fused: bool = False,
    load: float = 1.0,
) -> tuple[bool, str]:
    """Compile when the points left would save more than the compile costs (by PAYOFF_MARGIN):
    with the cost and speed-up measured here before (``known``, from ``compile_cache``) when
    there are any, else the defaults (``fused``: the BatchNorm-folded path's).

    ``per_point`` was timed under the machine's present ``load`` (:func:`_load_factor`), and a
    compile, CPU work too, runs under it: the cost (a quiet machine's figure: the default, or a
    measured one divided by the load it was measured under) is scaled by it, so that a busy
    machine, which inflates both sides alike, does not turn the decision."""
    if asked in ("on", "off"):
        return asked == "on", f"--compile {asked}"
    if device.type not in COMPILE_SECONDS:
        return False, f"not compiled on {device.type}"
    if per_point is None:
        return False, "an explicit engine compiles only with --compile on"
    quiet = compile_cache.quiet_seconds(known)
    measured = quiet is not None
    default = FUSED_COMPILE_SPEEDUP.get(device.type, COMPILE_SPEEDUP) if fused else COMPILE_SPEEDUP
    speedup = float(known.get("speedup", default)) if known else default
    cost = (COMPILE_SECONDS[device.type] if quiet is None else quiet) * load
    saved = pending * per_point * max(0.0, 1 - 1 / max(speedup, 1e-9))
    verdict = saved > PAYOFF_MARGIN * cost
    source = "measured here before" if measured else "assumed"
    busy = f", x{load:.1f} for this machine's load" if load >= 1.05 else ""
    return verdict, (
        f"expected saving {saved:.0f} s ({speedup:.2f}x) vs compile cost ~{cost:.0f} s on "
        f"{device.type} ({source}{', BatchNorm folded' if fused and not measured else ''}{busy})"
    )


def _load_factor(device: torch.device, wall: float, cpu: float) -> float:
    """How many times slower than alone this process runs now, from the timings just made.

    On a CPU the main thread computes (or spins at a barrier) for the whole of an eager point,
    so alone it gets ``cpu ≈ wall`` seconds of a core; on a machine whose run queue holds L
    threads for C cores it gets about C/L of one: ``wall / cpu`` is how much the machine's load
    stretched those timings, and stretches a compile (mostly that thread's Python) alike. On a
    GPU the timings are the device's, not the CPU's: 1."""
    if device.type != "cpu" or wall <= 0 or cpu <= 0:
        return 1.0
    return min(MAX_LOAD, max(1.0, wall / cpu))


def _compiled_speedup(
    evaluator: PointEvaluatorBase, eager: float | None, report: dict[str, Any]
) -> float | None:
    """One compiled call timed aside (a chunk of K points on the batched path) against the
    eager seconds a point the timings measured, when they did."""
    per_call = getattr(evaluator, "k", 1) if ENGINES[evaluator.name].points_per_call else 1
    compiled = _seconds_per_point(evaluator, per_call, TIMING_REPEATS)
    report["compiled_seconds_per_point"] = round(compiled, 4)
    return eager / max(compiled, 1e-9) if eager else None


def _compile_check(
    compiled: PointEvaluatorBase,
    eager: Callable[[], PointEvaluatorBase],
    points: Sequence[tuple[float, ...]],
    report: dict[str, Any],
) -> tuple[PointEvaluatorBase, list[PointResult], float | None]:
    """The compiled path raced against the eager one (:func:`_race`) on the run's first points
    (COMPILE_CHECK_POINTS; their results kept), under the same conditions, one point each in
    turn: when eager's fastest point beats compiled's, the compile does not pay on this machine
    now, and the run goes back to eager. Without first points, zero points are raced and their
    results dropped. Returns the evaluator for the rest
    of the run, the points' results and the measured speed-up (eager / compiled seconds)."""
    todo = list(points) or [(0.0,) * len(compiled.directions)] * COMPILE_CHECK_POINTS
    arms = [("compiled", lambda: compiled, True), ("eager", eager, False)]
    kept, done, record, won = _race(arms, todo[:COMPILE_CHECK_POINTS])
    report["compile_check"] = record
    seconds = record["point_seconds"]
    best = {arm: min(ts) for arm, ts in seconds.items() if ts}
    speedup = best["eager"] / max(best["compiled"], 1e-9) if len(best) == 2 else None
    if won == 1:
        report.update(
            compile=False,
            compile_abandoned=f"compiled {best['compiled']:.3g} s a point against eager "
            f"{best['eager']:.3g} s on the first points",
        )
    else:
        kept = compiled
    return kept, done if points else [], speedup


def _checked_compile(
    evaluator: PointEvaluatorBase,
    eager: Callable[[], PointEvaluatorBase],
    report: dict[str, Any],
) -> PointEvaluatorBase:
    """Compile on one point now; a compiler that fails here leaves the eager path in place."""
    start = time.perf_counter()
    try:
        evaluator.evaluate_block([(0.0,) * len(evaluator.directions)])
    except Exception as exc:
        first = first_line(exc)
        report.update(compile=False, compile_error=first[:200])
        return eager()
    report["compile_seconds"] = round(time.perf_counter() - start, 2)
    return evaluator
