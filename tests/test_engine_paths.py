"""Every evaluation path against the reference, for every BatchNorm policy, on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape.engine import BatchedEvaluator, ReferenceEvaluator
from landscape.params import buffers_of, parameters_of


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)  # must stay off in every policy
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.bn1d = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1d(self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1)))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def case(model: nn.Module, shape: tuple[int, ...], seed: int = 0):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(26, *shape)
    y = torch.randint(0, 3, (26,))
    xt = torch.randn(30, *shape) * 1.3 + 0.2  # "training" batches for recalibration
    theta = parameters_of(model)
    dirs = [
        {k: torch.randn_like(v) * 0.2 for k, v in theta.items() if v.ndim >= 2} for _ in range(2)
    ]
    centre = {**theta, **buffers_of(model)}

    def batches(bs: int = 8):
        return lambda: ((x[s : s + bs], y[s : s + bs]) for s in range(0, len(y), bs))

    def train_batches():
        return ((xt[s : s + 10], None) for s in range(0, 30, 10))

    return centre, dirs, batches, train_batches


def ce(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, t, reduction="none")


POINTS = [(0.0, 0.0), (0.7, -0.3), (-1.0, 1.0), (0.25, 0.5), (1.5, 1.5)]


@pytest.mark.parametrize("bn", ["eval", "train", "recalibrate"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_batched_matches_reference(bn: str, k: int) -> None:
    model = ConvBN()
    centre, dirs, batches, train_batches = case(model, (2, 4, 4))
    model.train()  # the caller's mode must come back as it was
    before = {n: t.clone() for n, t in model.state_dict().items()}
    opts = {"bn": bn, "train_batches": train_batches}
    ref = ReferenceEvaluator(model, centre, dirs, batches(), ce, **opts)
    bat = BatchedEvaluator(model, centre, dirs, batches(), ce, k=k, **opts)
    want = ref.evaluate_block(POINTS)
    got = bat.evaluate_block(POINTS)
    for w, g in zip(want, got, strict=True):
        assert math.isclose(g.loss, w.loss, rel_tol=2e-5), (bn, k, w, g)
        assert g.acc == w.acc
    assert model.training
    for n, t in model.state_dict().items():
        assert torch.equal(t, before[n]), n


def test_policies_differ_and_are_right() -> None:
    """train uses each batch's statistics; recalibrate uses statistics of the training batches."""
    model = ConvBN()
    centre, dirs, _, _ = case(model, (2, 4, 4), seed=1)
    x = torch.randn(12, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    target = torch.zeros(12, dtype=torch.long)
    results = {}
    for bn in ("eval", "train", "recalibrate"):
        ev = ReferenceEvaluator(
            model,
            centre,
            dirs,
            lambda: iter([(x, target)]),
            ce,
            bn=bn,
            train_batches=lambda: iter([(x, None)]),
        )
        results[bn] = ev.evaluate((0.0, 0.0)).loss
    # with recalibration on the very batch evaluated, BN statistics equal that batch's own,
    # except the unbiased running variance (n/(n-1)) that eval-mode BN then uses
    assert results["eval"] != pytest.approx(results["train"], rel=1e-3)
    assert results["recalibrate"] == pytest.approx(results["train"], rel=2e-2)
    # oracle for train: every BN with batch statistics, dropout off, written by hand
    with torch.no_grad():
        h = torch.relu(
            nn.functional.batch_norm(
                model.conv(x), None, None, model.bn.weight, model.bn.bias, True
            )
        )
        out = nn.functional.batch_norm(
            model.fc(h.flatten(1)), None, None, model.bn1d.weight, model.bn1d.bias, True
        )
        want = nn.functional.cross_entropy(out, torch.zeros(12, dtype=torch.long)).item()
    assert results["train"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_batched_mlp_without_bn(k: int) -> None:
    model = mlp()
    centre, dirs, batches, _ = case(model, (5,))
    ref = ReferenceEvaluator(model, centre, dirs, batches(), ce).evaluate_block(POINTS)
    got = BatchedEvaluator(model, centre, dirs, batches(), ce, k=k).evaluate_block(POINTS)
    for w, g in zip(ref, got, strict=True):
        assert math.isclose(g.loss, w.loss, rel_tol=1e-5) and g.acc == w.acc


def test_channels_last_and_1d_directions_agree() -> None:
    model = ConvBN()
    centre, dirs, batches, _ = case(model, (2, 4, 4), seed=2)
    plain = ReferenceEvaluator(model, centre, dirs[:1], batches(), ce)
    cl = ReferenceEvaluator(model, centre, dirs[:1], batches(), ce, channels_last=True)
    bat = BatchedEvaluator(model, centre, dirs[:1], batches(), ce, k=2, channels_last=True)
    for p in [(0.0,), (0.6,), (-1.2,)]:
        a, b, c = plain.evaluate(p), cl.evaluate(p), bat.evaluate(p)
        assert math.isclose(a.loss, b.loss, rel_tol=1e-5) and math.isclose(
            a.loss, c.loss, rel_tol=1e-5
        )


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["reference", "batched"])
def test_compiled_path_matches_eager_and_compiles_once(engine: str) -> None:
    """26 samples in batches of 8: the short last batch is padded, so one graph serves them all;
    within the tolerance the engine records for other paths."""
    from torch._dynamo.utils import counters

    from landscape.engine.select import PATH_RTOL

    torch._dynamo.reset()
    counters.clear()
    model = ConvBN()
    centre, dirs, batches, _ = case(model, (2, 4, 4))
    eager = ReferenceEvaluator(model, centre, dirs, batches(), ce)
    cls, kw = (BatchedEvaluator, {"k": 2}) if engine == "batched" else (ReferenceEvaluator, {})
    fast = cls(model, centre, dirs, batches(), ce, compile=True, channels_last=True, **kw)
    for w, g in zip(eager.evaluate_block(POINTS), fast.evaluate_block(POINTS), strict=True):
        assert math.isclose(g.loss, w.loss, rel_tol=PATH_RTOL), (w, g)
        assert g.acc == w.acc
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


# --- the selection's search and its check on the first points ---------------------------------


def test_the_batch_search_walks_out_from_the_first_size_and_stops_at_a_slower_one() -> None:
    from landscape.engine.select import _batch_search

    sizes = [64, 128, 256, 500]

    def timed(costs: dict[int, float]) -> list[int]:
        seen: list[int] = []

        def time_of(b: int) -> float:
            seen.append(b)
            return costs[b]

        _batch_search(sizes, 128, costs[128], time_of)
        return seen

    assert timed({64: 5, 128: 4, 256: 3, 500: 2}) == [256, 500]  # faster all the way up
    assert timed({64: 5, 128: 4, 256: 3, 500: 3.5}) == [256, 500]  # best found between
    assert timed({64: 3, 128: 4, 256: 5, 500: 1}) == [256, 64]  # larger is slower: go down
    assert timed({64: 3, 128: 4, 256: float("inf"), 500: 1}) == [256]  # over budget: stop


class _Sleeper:
    """A stand-in evaluator whose points take ``seconds`` each (a list: call by call, the last
    one from then on)."""

    def __init__(self, seconds: float | list[float], tag: str) -> None:
        self.seconds = seconds if isinstance(seconds, list) else [seconds]
        self.tag, self.data, self.calls = tag, (lambda: iter(())), 0
        self.directions = [{}, {}]

    def with_batches(self, _batches):
        return self

    def first_batch(self):
        return self

    def evaluate_block(self, points):
        import time

        time.sleep(self.seconds[min(self.calls, len(self.seconds) - 1)] * len(points))
        self.calls += 1
        return [(self.tag, p) for p in points]


def test_the_race_keeps_the_arm_with_the_fastest_point_and_every_points_result() -> None:
    from landscape.engine.select import RACE_POINTS, _race

    points = [(float(i), 0.0) for i in range(10)]
    built: list[str] = []

    def arm(tag: str, seconds: float, warm: bool = False):
        def build():
            built.append(tag)
            return _Sleeper(seconds, tag)

        return (tag, build, warm)

    arms = [arm("timed", 0.05, warm=True), arm("quick", 0.0), arm("slow", 0.15)]
    kept, done, record, won = _race(arms, points)
    # round one: every arm a point (a cold arm after a warm-up on one batch, not kept); round
    # two: the two fastest one more each; the rest of the run to the fastest
    assert (kept.tag, won, record["kept"], record["chosen"]) == ("quick", 1, "quick", "timed")
    assert [tag for tag, _ in done] == ["timed", "quick", "slow", "quick", "timed"]
    assert [p for _, p in done] == points[:5]  # in order, each point once
    assert record["points"] == 5
    assert {k: len(v) for k, v in record["point_seconds"].items()} == {
        "timed": 2, "quick": 2, "slow": 1
    }  # fmt: skip
    assert built == ["timed", "quick", "slow"]  # each arm built once
    # a round one of the caller's (as choose_engine walks batch sizes): points past the last
    # come back inf and run nothing
    seen: list[float] = []
    kept, done, _, _ = _race(arms, points[:2], lambda point: seen.extend(map(point, (1, 0, 2))))
    assert [tag for tag, _ in done] == ["quick", "timed"] and kept.tag == "quick"
    assert seen[2] == math.inf and len(seen) == 3
    _, _, record, _ = _race(arms, points, lambda point: [point(0), point(1)])
    assert "slow" not in record["point_seconds"]  # an arm round one skips never runs
    kept, done, record, won = _race(arms, [])  # no points: the timings' choice, untried
    assert (kept.tag, done, won, record["points"], record["kept"]) == ("timed", [], 0, 0, "timed")
    many = [arm(f"q{i}", 0.0) for i in range(12)]
    assert len(_race(many, points * 2)[1]) == RACE_POINTS  # never more than RACE_POINTS


def test_the_race_gives_the_timings_choice_a_second_point_after_a_slow_start() -> None:
    """The timings' choice runs the run's first point, where a slow spell lands: when two later
    arms beat that point, it runs one more point after theirs, and wins if it is fastest then."""
    from landscape.engine.select import _race

    points = [(float(i), 0.0) for i in range(10)]

    def arm(tag: str, seconds: float | list[float]):
        return (tag, lambda: _Sleeper(seconds, tag), True)

    arms = [arm("timed", [0.2, 0.01]), arm("a", 0.05), arm("b", 0.06)]
    kept, done, record, _ = _race(arms, points)
    assert [tag for tag, _ in done] == ["timed", "a", "b", "a", "b", "timed"]
    assert kept.tag == "timed" and record["kept"] == "timed"
    # among the two fastest already: no third point in round two
    arms = [arm("timed", 0.05), arm("a", 0.01), arm("b", 0.2)]
    assert [tag for tag, _ in _race(arms, points)[1]] == ["timed", "a", "b", "a", "timed"]


def test_info_names_the_choice_the_first_points_overturned() -> None:
    from landscape.info import _engine_text

    report = {"engine": "reference", "channels_last": True, "batch_size": 64, "device": "cpu",
              "recheck": {"chosen": "reference@128", "switched_to": "reference@64"}}  # fmt: skip
    text = _engine_text(report)
    assert text.endswith("(switched from reference@128 after the first points)"), text
    del report["recheck"]["chosen"]  # a file from before the label was recorded
    assert _engine_text(report).endswith("(switched after the first points)")
    del report["recheck"]
    report["race"] = {"chosen": "reference@128", "kept": "reference@64", "points": 3,
                      "point_seconds": {"reference@128": [0.4, 0.3], "reference@64": [0.25]}}  # fmt: skip
    assert _engine_text(report).endswith(
        "(kept reference@64 of those raced on the first points: reference@128 0.3 s, "
        "reference@64 0.25 s)"
    ), _engine_text(report)


@pytest.mark.parametrize("compiled_seconds", [0.06, 0.0])
def test_a_compile_that_measures_slower_than_eager_on_the_first_points_is_dropped(
    compiled_seconds: float, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23 item 2: compiled and eager take the run's first points in turn; when eager's
    are faster the run goes back to eager, says so in its engine record and remembers the
    speed-up (below 1) so that the next run does not compile this model again; a compile that
    pays is kept."""
    from landscape.engine import compile_cache
    from landscape.engine.select import _compile_check, _compile_decision

    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    points = [(float(i), 0.0) for i in range(10)]
    built: list[str] = []

    def eager() -> _Sleeper:
        built.append("eager")
        return _Sleeper(0.03, "eager")

    report = {"compile": True, "compile_seconds": 48.9}
    compiled = _Sleeper(compiled_seconds, "compiled")
    kept, done, speedup = _compile_check(compiled, eager, points, report)
    slower = compiled_seconds > 0.03
    assert kept.tag == ("eager" if slower else "compiled") and built == ["eager"]
    tags = [tag for tag, _ in done]  # a point each, then a second each, the faster first
    assert tags[:2] == ["compiled", "eager"] and sorted(tags[2:]) == ["compiled", "eager"]
    assert [p for _, p in done] == points[:4]  # the first points, each once, kept
    assert (speedup < 1) == slower and report["compile"] is not slower
    assert ("compile_abandoned" in report) == slower
    assert report["compile_check"]["point_seconds"].keys() == {"compiled", "eager"}
    compile_cache.remember_compile("key", report["compile_seconds"], 3.0, speedup)
    known = compile_cache.recall("key")
    assert (
        known["seconds"] == 48.9 and known["load"] == 3.0 and known["speedup"] == round(speedup, 3)
    )
    verdict, _ = _compile_decision("auto", torch.device("cpu"), 0.5, 10**6, known)
    assert verdict is not slower  # a million points: only the measured speed-up decides
    # no first points: raced on the centre, none kept
    kept, done, _ = _compile_check(compiled, eager, [], {"compile": True})
    assert kept.tag == ("eager" if slower else "compiled") and done == []


def test_every_eager_path_agrees_within_the_tolerance_info_states() -> None:
    """Issue 23 item 10: the values of a run do not depend on the arm a race kept beyond
    PATH_RTOL (relative), which the file's engine record carries and ``info`` prints."""
    from landscape.engine import fold
    from landscape.engine.select import PATH_RTOL
    from landscape.info import _engine_text

    for model, shape in [(ConvBN(), (2, 4, 4)), (mlp(), (5,))]:
        centre, dirs, batches, _ = case(model, shape)
        want = ReferenceEvaluator(model, centre, dirs, batches(), ce).evaluate_block(POINTS)
        folded = fold.fold_batchnorm(model).module
        paths = [
            ReferenceEvaluator(model, centre, dirs, batches(), ce, channels_last=True),
            ReferenceEvaluator(model, centre, dirs, batches(26), ce),
            ReferenceEvaluator(model, centre, dirs, batches(5), ce, module=folded),
            BatchedEvaluator(model, centre, dirs, batches(), ce, k=2),
            BatchedEvaluator(model, centre, dirs, batches(5), ce, k=3, channels_last=True),
        ]
        for path in paths:
            for g, w in zip(path.evaluate_block(POINTS), want, strict=True):
                assert abs(g.loss - w.loss) <= PATH_RTOL * abs(w.loss), (path.describe(), g, w)
                assert g.acc == w.acc
    report = {"engine": "reference", "batch_size": 64, "device": "cuda:1", "paths_rtol": PATH_RTOL}
    assert _engine_text(report).endswith(
        "; a resume on cuda repeats it bit for bit, other paths agree within 1e-06"
    ), _engine_text(report)


def test_info_says_when_a_compile_was_dropped() -> None:
    from landscape.info import _engine_text

    report = {"engine": "batched", "k": 64, "batch_size": 500, "compile": False, "device": "cpu",
              "compile_abandoned": "compiled 0.9 s a point against eager 0.02 s on the first points"}  # fmt: skip
    text = _engine_text(report)
    assert "eager" in text and text.endswith(
        "(compile dropped: compiled 0.9 s a point against eager 0.02 s on the first points)"
    ), text


class _KCall(_Sleeper):
    """A stand-in batched path: one call takes ``seconds`` for up to ``k`` points (padded)."""

    name, k = "batched", 32

    def evaluate_block(self, points):
        import time

        time.sleep(self.seconds[0] * -(-len(points) // self.k))
        return [(self.tag, p) for p in points]


def test_a_compiled_batched_call_is_timed_per_point_of_its_k() -> None:
    """--compile on times the compiled path aside: a whole call of K points, divided by K (one
    point padded to K, divided by 1, recorded the issue's 0.024x for a path no slower)."""
    from landscape.engine.select import _compiled_speedup

    report: dict = {}
    speedup = _compiled_speedup(_KCall(0.05, "compiled"), 0.05 / 32, report)
    assert 0.5 < speedup <= 1.0 and report["compiled_seconds_per_point"] >= 0.05 / 32
