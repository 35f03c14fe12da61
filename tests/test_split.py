"""Computing only what moves (landscape.engine.split): the forward pass split at the moved tensors
gives the full forward's surface (1e-6 relative) on a ResNet with its last block moving, a GPT-2
with one layer moving, a LoRA adapter and a moved tensor feeding two branches; its static part
runs once per batch whatever the points, on the batched engine too (once for the whole run, not
once per chunk of K points); the fallbacks say why; the CLI flag and ``info``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from landscape.cli import main
from landscape.engine import select, split
from landscape.engine.batched import BatchedEvaluator
from landscape.engine.reference import ReferenceEvaluator
from landscape.engine.select import EngineRequest, choose_engine
from landscape.errors import ConfigError
from landscape.losses import get_loss

POINTS = [(0.0, 0.0), (0.7, -0.4), (-1.0, 1.0)]


def _directions(centre: dict, moved: list[str], seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(centre[n].shape, generator=g) * 0.3 for n in moved} for _ in range(2)]


def _surfaces(
    model: nn.Module,
    moved: list[str],
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str | None,
    fold_bn: bool = False,
):
    """The points' losses with the split and with the full forward, and the split used."""
    centre = _centre(model)
    dirs = _directions(centre, moved)
    batches = lambda: iter([(x[:3], y[:3]), (x[3:], y[3:])])  # noqa: E731
    made = split.split_forward(model, set(moved), fold_bn)
    assert isinstance(made, split.Split), made
    args = (model, centre, dirs, batches, get_loss("cross-entropy", loss))
    fast = ReferenceEvaluator(*args, split=made).evaluate_block(POINTS)
    full = ReferenceEvaluator(*args).evaluate_block(POINTS)
    return [r.loss for r in fast], [r.loss for r in full], made


def _centre(model: nn.Module) -> dict:
    """θ as the session holds it: each tensor once (a tied tensor by its first name)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return {k: v.detach().clone() for k, v in named}


def _close(a: list[float], b: list[float]) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    assert len(set(np.round(b, 6))) > 1  # the points differ: the moved tensors do move


@pytest.mark.parametrize("fold_bn", [False, True])
def test_resnet_last_block_moving_gives_the_full_surface(fold_bn: bool) -> None:
    from landscape.models.resnet import resnet20

    torch.manual_seed(0)
    model = resnet20().eval()
    for m in model.modules():  # running statistics away from 0 and 1, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    moved = [n for n, _ in model.named_parameters() if n.startswith("layer3.2.")]
    x, y = torch.randn(5, 3, 32, 32), torch.randint(0, 10, (5,))
    fast, full, made = _surfaces(model, moved, x, y, None, fold_bn)
    _close(fast, full)
    assert made.how == "graph" and made.static_nodes > 50  # everything before layer3.2 once
    assert made.figures["fused"] == (2 if fold_bn else 0)  # the moved block's conv → BN pairs


class TwoBranches(nn.Module):
    """A static stem, then one moved layer whose output feeds two branches, joined with a static
    skip; the skip reads the stem's output in place (``+=``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16))
        self.moved = nn.Linear(16, 16)
        self.p, self.q, self.skip = nn.Linear(16, 3), nn.Linear(16, 3), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        a = self.moved(h)
        h += a  # written in place: the kept frontier must not change
        return self.p(torch.relu(a)) + self.q(torch.tanh(a) * h) + self.skip(h)


def test_a_moved_tensor_feeding_two_branches() -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    fast, full, made = _surfaces(model, ["moved.weight", "moved.bias"], x, y, None)
    _close(fast, full)
    assert made.how == "graph"


def _gpt2(layers: int = 3):
    transformers = pytest.importorskip("transformers")
    from landscape import hf

    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg = transformers.GPT2Config(
        n_layer=layers, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval(), hf


def test_gpt2_with_one_layer_moving_splits_on_its_module_tree() -> None:
    model, hf = _gpt2()
    model = hf.prepare(model)
    moved = [n for n, _ in model.named_parameters() if n.startswith("transformer.h.1.")]
    x = torch.randint(0, 64, (5, 8))
    fast, full, made = _surfaces(model, moved, x, x, "causal-lm")
    _close(fast, full)
    assert made.how == "modules"
    assert made.figures["replayed"] == "transformer.h.0"  # the embeddings and block 0 once


def test_a_lora_adapter_on_one_layer() -> None:
    peft = pytest.importorskip("peft")
    model, hf = _gpt2()
    lora = peft.LoraConfig(r=2, target_modules=["c_attn"], layers_to_transform=[2])
    wrapped = peft.get_peft_model(model, lora).eval()
    for n, p in wrapped.named_parameters():
        if "lora_B" in n:  # away from zero, as after training
            p.data.normal_(0, 0.1)
    wrapped = hf.prepare(wrapped, "causal-lm")
    moved = [n for n, _ in wrapped.named_parameters() if "lora_" in n]
    x = torch.randint(0, 64, (5, 8))
    fast, full, made = _surfaces(wrapped, moved, x, x, "causal-lm")
    _close(fast, full)
    # the blocks before, and in block 2 the frozen projection, once; from the adapter on each point
    assert made.figures["first_moved"].endswith("h.2.attn.c_attn.lora_A.default")


def test_the_static_part_runs_once_per_batch() -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    calls = []
    model.stem[0].register_forward_hook(lambda *_: calls.append(1))  # the stem's first layer
    centre = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dirs = _directions(centre, ["moved.weight"])
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    batches = lambda: iter([(x[:3], y[:3]), (x[3:], y[3:])])  # noqa: E731
    made = split.split_forward(model, {"moved.weight"})
    evaluator = ReferenceEvaluator(
        model, centre, dirs, batches, get_loss("cross-entropy"), split=made
    )
    evaluator.evaluate_block(POINTS)
    assert len(calls) == 2  # 3 points, 2 batches: the stem once per batch
    ReferenceEvaluator(model, centre, dirs, batches, get_loss("cross-entropy")).evaluate_block(
        POINTS
    )
    assert len(calls) == 2 + 6  # the full forward: once per batch and point


MANY_POINTS = [(0.0, 0.0), (0.7, -0.4), (-1.0, 1.0), (0.3, 0.9), (-0.5, -0.2)]


def _batched_against_full(model: nn.Module, moved: list[str], x, y, made, loss=None, k: int = 2):
    """The points' losses on the batched engine (K = ``k``: several chunks) with the split, and
    on the per-point engine with the full forward."""
    centre = _centre(model)
    dirs = _directions(centre, moved)
    batches = lambda: iter([(x[:3], y[:3]), (x[3:], y[3:])])  # noqa: E731
    args = (model, centre, dirs, batches, get_loss("cross-entropy", loss))
    fast = BatchedEvaluator(*args, split=made, k=k).evaluate_block(MANY_POINTS)
    full = ReferenceEvaluator(*args).evaluate_block(MANY_POINTS)
    return [r.loss for r in fast], [r.loss for r in full]


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)]
    return nn.Sequential(*layers).eval()


def test_the_batched_engine_runs_the_static_part_once_per_batch_for_the_run() -> None:
    model = _mlp()
    calls = []
    model[0].register_forward_hook(lambda *_: calls.append(1))  # the first (static) layer
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    made = split.split_forward(model, {"4.weight", "4.bias"})
    assert isinstance(made, split.Split) and made.how == "graph"
    calls.clear()
    fast, full = _batched_against_full(model, ["4.weight", "4.bias"], x, y, made, k=2)
    _close(fast, full)
    # 5 points in chunks of 2 (3 chunks), 2 batches: the static part ran 2 times, not 3 × 2;
    # the full forward of the per-point engine ran the first layer 5 × 2 times
    assert len(calls) == 2 + 5 * 2


@pytest.mark.parametrize("fold_bn", [False, True])
def test_the_batched_engine_splits_a_conv_net_with_batchnorm(fold_bn: bool) -> None:
    from landscape.models.resnet import BasicBlock

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), BasicBlock(8, 8),
        BasicBlock(8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
    for m in model.modules():  # running statistics away from 0 and 1, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    moved = [n for n, _ in model.named_parameters() if n.split(".")[0] in ("4", "7")]
    x, y = torch.randn(5, 3, 8, 8), torch.randint(0, 4, (5,))
    made = split.split_forward(model, set(moved), fold_bn)
    # the last block and the head move; folded, the block's second pair adds the kept shortcut
    assert isinstance(made, split.Split) and made.figures["fused"] == (2 if fold_bn else 0)
    fast, full = _batched_against_full(model, moved, x, y, made)
    _close(fast, full)


def _request(**kw) -> EngineRequest:
    base = dict(engine="reference", compile="off", fuse="off", memory_format="contiguous",
                memory_budget=None, batch_size=4, split="auto")  # fmt: skip
    return EngineRequest(**{**base, **kw})


def _choose(model: nn.Module, moved: list[str], x: torch.Tensor, y: torch.Tensor, **kw):
    centre = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dirs = _directions(centre, moved)

    def batches_of(n: int):
        return lambda: iter([(x[i : i + n], y[i : i + n]) for i in range(0, len(y), n)])

    return choose_engine(
        model, centre, dirs, batches_of, get_loss("cross-entropy"), _request(**kw), 3
    )


def test_auto_records_the_split_and_its_figures() -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(select, "SPLIT_MIN_SHARE", 0.0)  # the stem is cheap: always pays here
        choice = _choose(model, ["moved.weight"], x, y)
    r = choice.report
    assert r["split"] is True and r["split_path"] == "graph" and r["split_check"] <= 1e-6
    assert r["split_frontier_bytes"] == 8 * 16 * 4  # one float32 (16,) frontier per sample
    assert 0 < r["split_static_share"] <= 1 and choice.settings.split


def test_the_batched_engine_takes_the_module_tree_split() -> None:
    model, hf = _gpt2()
    model = hf.prepare(model)
    moved = [n for n, _ in model.named_parameters() if n.startswith("transformer.h.2.")]
    made = split.split_forward(model, set(moved))
    assert isinstance(made, split.Split) and made.how == "modules"
    x = torch.randint(0, 64, (5, 8))
    fast, full = _batched_against_full(model, moved, x, x, made, "causal-lm")  # replayed, vmapped
    _close(fast, full)


def test_the_engine_record_says_split_with_the_batched_engine() -> None:
    model = _mlp()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    choice = _choose(model, ["4.weight", "4.bias"], x, y, engine="batched", split="on")
    r = choice.report
    assert r["engine"] == "batched" and r["split"] is True and r["split_path"] == "graph"
    assert choice.settings.engine == "batched" and choice.settings.split
    assert choice.evaluator.split is not None


def test_auto_times_both_engines_with_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    split_when_timed = {}

    def seconds(evaluator, k: int, repeats: int = 1) -> float:  # batched "faster", no clock
        split_when_timed[evaluator.name] = getattr(evaluator, "split", None) is not None
        return 1.0 if evaluator.name == "reference" else 0.5

    monkeypatch.setattr(select, "_seconds_per_point", seconds)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    choice = _choose(_mlp(), ["4.weight", "4.bias"], x, y, engine="auto")
    assert split_when_timed == {"reference": True, "batched": True}  # timed alike
    assert choice.report["engine"] == "batched" and choice.report["split"] is True
    assert "split_reason" not in choice.report


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"split": "off"}, "--split-forward off"),
        ({"options": {"bn": "train"}}, "--bn train"),
    ],
)
def test_fallbacks_say_why(kw: dict, why: str) -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    r = _choose(model, ["moved.weight"], x, y, **kw).report
    assert r["split"] is False and why in r["split_reason"]


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x) + 0.1 * torch.randn_like(x))


def test_randomness_and_a_moving_first_layer_keep_the_full_forward() -> None:
    assert "random" in split.split_forward(Noisy(), {"b.weight"})
    assert "nothing to compute once" in split.split_forward(TwoBranches(), {"stem.0.weight"})
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    with pytest.raises(ConfigError, match="--split-forward on: its forward draws random numbers"):
        _choose(Noisy(), ["b.weight"], x, y, split="on")


def test_cli_flag_and_info(tmp_path: Path, tiny_npz: Path) -> None:
    out = tmp_path / "s.h5"
    args = ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg",
            "num_classes=3", "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--engine", "reference",
            "--params", "layers.4.*", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--split-forward", "on"])
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        record = json.loads(f.attrs["engine"])
    assert record["split"] is True and record["split_path"] == "graph"
    info = CliRunner().invoke(main, ["info", str(out)])
    assert "forward split by its graph, static part once per batch" in info.output
    bad = CliRunner().invoke(main, [*args, "--split-forward", "on", "--bn", "train", "--overwrite"])
    assert bad.exit_code != 0 and "Error: --split-forward on: --bn train" in bad.output
    assert "--split-forward" in CliRunner().invoke(main, ["compute", "--help"]).output


def test_auto_keeps_the_full_forward_when_the_static_part_is_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    monkeypatch.setattr(select, "SPLIT_MIN_SHARE", 0.99)
    r = _choose(model, ["moved.weight"], x, y).report
    assert r["split"] is False and "too little to save" in r["split_reason"]
    assert 0 < r["split_static_share"] < 0.99  # the figure the decision weighed


def test_the_batched_engine_sizes_k_beside_the_kept_frontiers() -> None:
    """K points per call are sized from the memory budget; frontiers kept in memory take their
    share of it first (the budget is not spent twice)."""
    model = _mlp()
    x, y = torch.randn(256, 6), torch.randint(0, 3, (256,))
    on = _choose(model, ["4.weight", "4.bias"], x, y, engine="batched", split="on")
    need = on.report["split_frontier_bytes"]
    budget = 2 * need  # half of it the frontiers', half left for K
    kw = dict(engine="batched", memory_budget=budget)
    full = _choose(model, ["4.weight", "4.bias"], x, y, split="off", **kw).report["k"]
    kept = _choose(model, ["4.weight", "4.bias"], x, y, split="on", **kw).report
    assert kept["split"] is True and kept["split_frontier_store"] == "memory"
    assert full >= 4 and kept["k"] == full // 2


def test_timing_a_candidate_computes_each_frontier_once() -> None:
    """A candidate's warm-up reads the frontier its timing keeps: the static part runs once per
    timed batch, not once for the warm-up and again for the timing."""
    model = _mlp()
    calls = []
    model[0].register_forward_hook(lambda *_: calls.append(1))  # the static part's first layer
    centre = _centre(model)
    dirs = _directions(centre, ["4.weight", "4.bias"])
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    batches = lambda: iter([(x[:3], y[:3]), (x[3:], y[3:])])  # noqa: E731
    made = split.split_forward(model, {"4.weight", "4.bias"})
    evaluator = ReferenceEvaluator(
        model, centre, dirs, batches, get_loss("cross-entropy"), split=made
    )
    before = len(calls)
    select._seconds_per_point(evaluator, 1, repeats=2)
    assert len(calls) - before == 2  # two batches, each's frontier once (warm-up included)
    first = evaluator.first_batch()
    assert len(first._frontiers[0]) == 1 and len(calls) - before == 2  # shared, not recomputed
    first.close()  # a copy's close leaves the kept frontiers to their owner
    assert len(evaluator._frontiers[0]) == 2


def test_worker_processes_split_and_spill_as_the_serial_run(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker repeats rank 0's split (``EngineSettings.split``) and keeps its own frontiers,
    spilled under a tiny budget into its own temporary folder, which is gone afterwards: the
    surface equals the full forward's."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the workers' frontier folders land here
    base = ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg",
            "num_classes=3", "--data", f"npz:{tiny_npz}", "--x=-1:1:5", "--y=-1:1:3",
            "--engine", "reference", "--params", "layers.4.*", "--quiet"]  # fmt: skip
    full = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "f.h5"), "--split-forward",
                                     "off"])  # fmt: skip
    assert full.exit_code == 0, full.output
    split_run = [*base, "--out", str(tmp_path / "s.h5"), "--split-forward", "on",
                 "--memory-budget", "1000", "--workers", "2"]  # fmt: skip
    result = CliRunner().invoke(main, split_run)
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "s.h5") as f:
        record = json.loads(f.attrs["engine"])
        fast = f["train_loss"][()]
    with h5py.File(tmp_path / "f.h5") as f:
        slow = f["train_loss"][()]
    assert record["split"] is True and record["split_frontier_store"] == "disk"
    assert record["processes"] == 2
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=0)
    assert not list(tmp_path.glob("landscape-frontier-*"))
