"""Each stage of the engine chooser on its own (issue 24 item 6): the candidates, their timings,
the compile decision, the race on the first points and the compile's check, on tiny models with
stand-in evaluators and fixed timings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_engine_paths import POINTS, ConvBN, _KCall, _Sleeper, case, ce, mlp

from landscape.engine import compile_cache, select
from landscape.engine.select import (
    Bench,
    EngineRequest,
    Timings,
    candidates,
    check_compile,
    decide_compile,
    race_candidates,
    timings,
    workbench,
)
from landscape.errors import ConfigError

CPU = torch.device("cpu")
AUTO = {"engine": "auto", "compile": "auto", "fuse": "auto", "memory_format": "auto",
        "memory_budget": None, "batch_size": 500, "split": "off"}  # fmt: skip


def asking(**settings) -> EngineRequest:
    """A request with ``settings`` and auto for the rest."""
    return EngineRequest(**{**AUTO, **settings})


def bench_for(model: torch.nn.Module, shape: tuple[int, ...], **request) -> Bench:
    """The workbench of a tiny case (26 samples, batches of any size)."""
    centre, dirs, batches, _ = case(model, shape)
    return workbench(model, centre, dirs, batches, ce, asking(**request))


def test_the_candidates_are_the_engines_and_layouts_worth_timing() -> None:
    conv, flat = ConvBN(), mlp()
    auto = asking()
    # a CPU conv net: one point at a time only (K points per call only add memory traffic)
    assert candidates(conv, auto, CPU) == [("reference", False), ("reference", True)]
    assert candidates(conv, auto, torch.device("cuda")) == [
        ("reference", False), ("reference", True), ("batched", False), ("batched", True)
    ]  # fmt: skip
    assert candidates(flat, auto, CPU) == [("reference", False), ("batched", False)]  # no layout
    named = asking(engine="batched", memory_format="channels-last")
    assert candidates(conv, named, CPU) == [("batched", True)]  # what the request names
    scripted = torch.jit.script(mlp())
    assert candidates(scripted, auto, CPU) == [("reference", False)]  # runs in place


def test_the_workbench_begins_the_report_and_builds_any_path() -> None:
    bench = bench_for(ConvBN(), (2, 4, 4), batch_size=8, memory_budget=2**30)
    assert (bench.batch, bench.total, bench.sizes, bench.k) == (8, 26, [8], select.MAX_K)
    assert list(bench.report)[:5] == ["device", "k", "batch_size", "timings", "paths_rtol"]
    assert bench.report["fused"] == 1 and bench.folded is not None  # the conv's BatchNorm folded
    evaluator = bench.build(("reference", True, 4))
    assert evaluator.module is bench.folded and evaluator.channels_last
    assert next(iter(evaluator.data()))[0].shape[0] == 4
    batched = bench.build(("batched", False, 8))
    assert batched.k == select.MAX_K and batched.module is not bench.folded  # never folded


def fixed_timings(monkeypatch: pytest.MonkeyPatch, table: dict[tuple[bool, int], float]) -> None:
    """Each path's timing, by layout and batch size, instead of a clock's (inf: cannot run)."""

    def seconds(evaluator, _k: int, _repeats: int = 1) -> float:
        batch = next(iter(evaluator.data()))[0].shape[0]
        t = table[(evaluator.channels_last, batch)]
        if t == float("inf"):
            raise RuntimeError("cannot run this path\nthe rest of the message")
        return t

    monkeypatch.setattr(select, "_seconds_per_point", seconds)


def test_the_timings_rank_layouts_then_search_batch_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = dataclasses.replace(bench_for(ConvBN(), (2, 4, 4), batch_size=16), sizes=[4, 8, 16])
    fixed_timings(monkeypatch, {(False, 16): 3.0, (True, 16): 2.0, (True, 8): 1.0, (True, 4): 1.5})
    timed = timings(bench, [("reference", False), ("reference", True)], "auto", 100, [])
    # layouts at the size nearest LAYOUT_BATCH (16 here), then the best one's sizes downward
    # while each is faster: 8 is, 4 is not
    assert timed.chosen == ("reference", True, 8) and timed.arms == []
    seconds = bench.report["timings"]
    assert list(seconds) == ["reference@16", "reference+channels-last@16",
                             "reference+channels-last@8", "reference+channels-last@4"]  # fmt: skip
    assert timed.per_point == seconds["reference+channels-last@8"]
    assert bench.report["batch_size"] == 8 and bench.report["selection_budget_seconds"] >= 1
    assert timed.load >= 1 and bench.report["load_factor"] == round(timed.load, 2)


def test_the_timings_name_the_arms_to_race_on_the_first_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = dataclasses.replace(bench_for(ConvBN(), (2, 4, 4), batch_size=16), sizes=[4, 8, 16])
    fixed_timings(monkeypatch, {(False, 16): 2.4, (True, 16): 2.0})
    paths = [("reference", False), ("reference", True)]
    timed = timings(bench, paths, "auto", 100, POINTS)
    # the best layout at every size, then the other layout: timed within RACE_MARGIN of it
    assert timed.arms == [
        ("reference", True, 16), ("reference", True, 4), ("reference", True, 8),
        ("reference", False, 16),
    ]  # fmt: skip
    assert "selection_budget_seconds" not in bench.report  # the race searches instead
    # --compile on: nothing raced (a compiled arm cannot race eager ones), sizes timed instead
    fixed_timings(monkeypatch, {(False, 16): 2.4, (True, 16): 2.0, (True, 8): 2.5})
    assert timings(bench, paths, "on", 100, POINTS).arms == []


def test_the_timings_of_one_candidate_and_of_none_that_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = bench_for(ConvBN(), (2, 4, 4), batch_size=16)
    # one path, one size: nothing to time
    assert timings(bench, [("reference", True)], "auto", 100, POINTS) == Timings(
        ("reference", True, 16)
    )
    assert bench.report["timings"] == {} and "load_factor" not in bench.report
    fixed_timings(monkeypatch, {(False, 16): float("inf"), (True, 16): float("inf")})
    with pytest.raises(ConfigError, match=r"no evaluation path runs this model.*cannot run"):
        timings(bench, [("reference", False), ("reference", True)], "auto", 100, [])
    assert bench.report["unavailable"]["reference"] == "cannot run this path"


def test_the_compile_decision_uses_what_compiling_cost_here_before(cache: Path) -> None:
    bench = bench_for(mlp(), (5,), batch_size=8)
    timed = Timings(("reference", False, 8), per_point=0.5, load=1.0)
    # 40 points of 0.5 s at the default 1.6x save 7.5 s: not worth a first compile
    compile, record = decide_compile(bench, timed, "auto", 40)
    assert not compile and record == compile_cache.key(bench.model, CPU, "reference", False, 8)
    assert bench.report["compile_reason"].endswith("(assumed)")
    assert not (cache / "inductor").exists()
    compile_cache.remember_compile(record, 2.9, 1.0, 1.58)  # a warm cache measured here
    assert decide_compile(bench, timed, "auto", 40) == (True, record)
    assert {k: bench.report[k] for k in ("engine", "channels_last", "compile")} == {
        "engine": "reference", "channels_last": False, "compile": True
    }  # fmt: skip
    assert "measured here before" in bench.report["compile_reason"]
    assert (cache / "inductor").is_dir()  # the persistent kernel cache, chosen to compile
    # the BatchNorm-folded path has a record of its own
    conv = bench_for(ConvBN(), (2, 4, 4), batch_size=8)
    _, fused = decide_compile(conv, timed, "off", 40)
    assert fused == compile_cache.key(conv.model, CPU, "reference", False, 8, fused=True)
    assert fused != compile_cache.key(conv.model, CPU, "reference", False, 8)


def stand_ins(bench: Bench, seconds: dict[tuple[str, bool, int], float]) -> None:
    """The bench builds a stand-in evaluator per candidate, named by its label."""
    bench.build = lambda arm, compile=False: _Sleeper(seconds[arm], select._label(*arm, True))


def test_the_race_walks_batch_sizes_on_the_first_points_and_keeps_the_fastest() -> None:
    bench = dataclasses.replace(bench_for(ConvBN(), (2, 4, 4), batch_size=16), sizes=[4, 8, 16])
    arms = [("reference", True, 16), ("reference", True, 4), ("reference", True, 8),
            ("reference", False, 16)]  # fmt: skip
    stand_ins(bench, dict(zip(arms, [0.1, 0.0, 0.05, 0.2], strict=True)))
    bench.report["timings"] = {"reference+channels-last@16": 1.0, "reference@16": 1.2}
    points = [(float(i), 0.0) for i in range(10)]
    evaluator, done, kept = race_candidates(bench, arms, points)
    # round one: the choice, the other layout, then sizes down from 16 while faster; round two:
    # the two fastest, then the timings' choice once more
    assert [tag for tag, _ in done] == [
        "reference+channels-last@16", "reference@16", "reference+channels-last@8",
        "reference+channels-last@4", "reference+channels-last@4", "reference+channels-last@8",
        "reference+channels-last@16",
    ]  # fmt: skip
    assert [p for _, p in done] == points[:7]
    assert kept == ("reference", True, 4) and evaluator.tag == "reference+channels-last@4"
    race = bench.report["race"]
    assert (race["chosen"], race["kept"], race["points"]) == (
        "reference+channels-last@16", "reference+channels-last@4", 7
    )  # fmt: skip
    assert (bench.report["batch_size"], bench.report["channels_last"]) == (4, True)


class _Broken(_Sleeper):
    """A stand-in compiled path whose compiler fails on its first point."""

    def evaluate_block(self, points):
        raise RuntimeError("inductor failed\ntraceback lines")


@pytest.mark.parametrize("asked", ["auto", "on"])
def test_the_compile_is_checked_and_remembered(asked: str, cache: Path) -> None:
    bench = bench_for(mlp(), (5,), batch_size=8)
    eager: list[_Sleeper] = []
    bench.make = lambda *args: eager.append(_Sleeper(0.03, "eager")) or eager[-1]
    bench.report["compile"] = True
    timed = Timings(("reference", False, 8), per_point=0.05, load=2.0)
    compiled = _Sleeper(0.0, "compiled") if asked == "auto" else _KCall(0.0, "compiled")
    request = asking(compile=asked)
    points = [(float(i), 0.0) for i in range(10)]
    evaluator, done = check_compile(bench, compiled, timed, "key", request, points)
    assert evaluator is compiled and bench.report["compile"] is True
    figures = compile_cache.recall("key")
    assert figures["seconds"] == bench.report["compile_seconds"] and figures["load"] == 2.0
    assert figures["speedup"] > 1
    if asked == "auto":  # raced against eager on the first points, whose results are kept
        assert len(done) == select.COMPILE_CHECK_POINTS and len(eager) == 1
        assert bench.report["compile_check"]["kept"] == "compiled"
    else:  # --compile on: its speed-up timed aside, no point kept, eager never built
        assert done == [] and eager == [] and "compiled_seconds_per_point" in bench.report
    # a compiler that fails: the eager path, the error in the report, nothing remembered
    bench.report["compile"] = True
    evaluator, done = check_compile(bench, _Broken(0.0, "x"), timed, "other", request, points)
    assert evaluator is eager[-1] and done == [] and bench.report["compile"] is False
    assert bench.report["compile_error"] == "inductor failed"
    assert compile_cache.recall("other") is None
