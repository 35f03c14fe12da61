"""A split forward's frontiers kept on disk when they exceed the memory budget
(landscape.engine.frontier): the spilled surface equals the full forward's, the record and ``info``
say where the frontiers were kept, the temporary folder is gone after the run, a module-split
frontier (a dict of module outputs) comes back from disk as it went in, auto spills only when
reading beats recomputing, and the memory plan shows the frontier's figure and place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.cli import main
from landscape.engine import frontier, select, split
from landscape.engine.reference import ReferenceEvaluator
from landscape.errors import ConfigError
from landscape.losses import get_loss
from tests.test_split import POINTS, TwoBranches, _centre, _choose, _directions, _gpt2

MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "num_classes=3",
       "--x=-1:1:3", "--y=-1:1:3", "--engine", "reference", "--params", "layers.4.*"]  # fmt: skip


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Temporary folders made during the test, all under tmp_path/tmp (recorded by name)."""
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    def spy(*args, **kwargs):
        folder = real(*args, **kwargs)
        made.append(folder.name)
        return folder

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "TemporaryDirectory", spy)
    return made


def _run(tmp_path: Path, tiny_npz: Path, name: str, *extra: str) -> tuple[np.ndarray, dict, str]:
    out = tmp_path / f"{name}.h5"
    done = CliRunner().invoke(
        main, ["compute", *MLP, "--data", f"npz:{tiny_npz}", "--out", str(out), *extra]
    )
    assert done.exit_code == 0, done.output
    with h5py.File(out) as f:
        loss, record = f["train_loss"][()], json.loads(f.attrs["engine"])
    return loss, record, CliRunner().invoke(main, ["info", str(out)]).output


def test_a_frontier_over_the_budget_spills_to_disk_and_gives_the_full_surface(
    tmp_path: Path, tiny_npz: Path, folders: list[str]
) -> None:
    # 1000 bytes: the 40 samples' frontier (64 float32 each: 10 kB) does not fit
    spilled, record, info = _run(
        tmp_path, tiny_npz, "disk", "--split-forward", "on", "--memory-budget", "1000"
    )
    full, _, _ = _run(
        tmp_path, tiny_npz, "full", "--split-forward", "off", "--memory-budget", "1000"
    )
    np.testing.assert_allclose(spilled, full, rtol=1e-6, atol=0)
    assert len(set(np.round(full.ravel(), 6))) > 1  # the points differ
    assert record["split"] is True and record["split_frontier_store"] == "disk"
    assert record["split_frontier_bytes"] == 40 * 64 * 4
    assert "frontier 0.0 MiB on disk" in info
    ours = [f for f in folders if Path(f).name.startswith(frontier.PREFIX)]
    assert ours and not any(Path(f).exists() for f in ours)  # made, then removed
    assert not list((tmp_path / "tmp").glob(f"{frontier.PREFIX}*"))
    _, kept, info = _run(tmp_path, tiny_npz, "memory", "--split-forward", "on")  # 2 GiB: fits
    assert kept["split_frontier_store"] == "memory" and "MiB kept in memory" in info


def test_a_module_split_frontier_comes_back_from_disk_as_it_went_in(folders: list[str]) -> None:
    model, hf = _gpt2()
    model = hf.prepare(model)
    moved = [n for n, _ in model.named_parameters() if n.startswith("transformer.h.1.")]
    centre, x = _centre(model), torch.randint(0, 64, (5, 8))
    made = split.split_forward(model, set(moved))
    with torch.inference_mode():
        front = made.static(centre, x)
        store = frontier.FrontierStore(frontier.DISK)
        store.append((front, x))
        store.append((front, x))  # a second batch: a second file
        assert len(list(store.folder.iterdir())) == 2
        back, y = list(store)[1]
        assert back.keys() == front.keys() and torch.equal(y, x)
        for k in front:
            assert torch.equal(back[k], front[k]) and back[k].dtype == front[k].dtype
        point = {**centre, **{n: centre[n] + 0.1 for n in moved}}
        assert torch.equal(made.dynamic(point, back), made.dynamic(point, front))
    assert store.nbytes == 2 * (split.frontier_bytes(front) + x.numel() * 8)
    folder = store.folder
    store.close()
    assert not folder.exists() and folder.name.startswith(frontier.PREFIX)


def test_the_folder_goes_at_exit_after_an_exception(tmp_path: Path) -> None:
    """A store never closed, its process stopped by an error: the folder is gone after exit."""
    code = (
        "import torch\nfrom landscape.engine import frontier\n"
        "store = frontier.FrontierStore(frontier.DISK)\nstore.append((torch.ones(3),))\n"
        "print(store.folder, flush=True)\nraise RuntimeError(f'stopped {store.folder.exists()}')"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "stopped True" in done.stderr, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith(frontier.PREFIX)
    assert not folder.exists()


def test_model_outputs_plain_leaves_and_shared_tensors_survive_the_file() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPast

    h = torch.randn(2, 3, 4)
    out = BaseModelOutputWithPast(last_hidden_state=h, hidden_states=(h, h[:, 1]))
    item = ({"block": out, "mask": None, "n": 3, "scale": 0.5}, torch.arange(2))
    store = frontier.FrontierStore(frontier.DISK)
    store.append(item)
    (back, y), = store  # fmt: skip
    store.close()
    assert isinstance(back["block"], BaseModelOutputWithPast)
    assert (back["mask"], back["n"], back["scale"]) == (None, 3, 0.5) and torch.equal(y, item[1])
    again = back["block"]
    assert again.last_hidden_state is again.hidden_states[0]  # one tensor written once, one back
    assert torch.equal(again.hidden_states[1], h[:, 1])  # a view of it: copied, same values
    assert "holds a object" in frontier.unspillable({"cache": object()})
    with pytest.raises(ConfigError, match="a file cannot keep"):
        frontier.FrontierStore(frontier.DISK).append({"cache": object()})


def test_a_spilled_gpt2_surface_equals_the_full_forward(folders: list[str]) -> None:
    model, hf = _gpt2()
    model = hf.prepare(model)
    moved = [n for n, _ in model.named_parameters() if n.startswith("transformer.h.1.")]
    x = torch.randint(0, 64, (5, 8))
    centre = _centre(model)
    batches = lambda: iter([(x[:3], x[:3]), (x[3:], x[3:])])  # noqa: E731
    args = (
        model,
        centre,
        _directions(centre, moved),
        batches,
        get_loss("cross-entropy", "causal-lm"),
    )
    made = split.split_forward(model, set(moved))
    made.store = frontier.DISK
    fast = ReferenceEvaluator(*args, split=made)
    got = [r.loss for r in fast.evaluate_block(POINTS)]
    want = [r.loss for r in ReferenceEvaluator(*args).evaluate_block(POINTS)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert fast._frontiers[0].place == "disk" and len(fast._frontiers[0]) == 2
    fast.close()
    assert not any(Path(f).exists() for f in folders)


@pytest.mark.parametrize(("read", "spills"), [(0.001, True), (1.0, False)])
def test_auto_spills_when_reading_a_batch_beats_computing_it(
    monkeypatch: pytest.MonkeyPatch, read: float, spills: bool
) -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    real = frontier.timed_spill
    measured: list[dict] = []

    def timed(compute, device, place):  # the real measurement, then times set for a verdict
        measured.append(real(compute, device, place))
        return {**measured[-1], "static_seconds": 0.01, "read_seconds": read}

    monkeypatch.setattr(select, "SPLIT_MIN_SHARE", 0.0)
    monkeypatch.setattr(frontier, "timed_spill", timed)
    r = _choose(model, ["moved.weight"], x, y, memory_budget=100).report
    assert measured[0]["static_seconds"] > 0 and measured[0]["read_seconds"] > 0
    assert r["split_frontier_bytes"] == 8 * 16 * 4 and r["split_frontier_store"] == "disk"
    assert r["split"] is spills
    if not spills:
        assert "over the memory budget" in r["split_reason"]
        assert "from disk (1 s) is no faster than computing it (0.01 s)" in r["split_reason"]
    # --split on spills whatever the times
    assert _choose(model, ["moved.weight"], x, y, memory_budget=100, split="on").report["split"]


class _Holder:
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def test_split_on_over_the_budget_says_why_a_frontier_cannot_spill() -> None:
    model = TwoBranches().eval()
    made = split.split_forward(model, {"moved.weight"})
    made.static = lambda centre, x: ({"h": x, "cache": _Holder(x)},)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(split, "split_forward", lambda *a: made)
        mp.setattr(split, "probe", lambda *a: {"check": 0.0, "static_share": 0.5,
                                                "frontier_bytes_per_sample": 64})  # fmt: skip
        with pytest.raises(ConfigError, match="cannot go to disk: the frontier holds a _Holder"):
            _choose(model, ["moved.weight"], x, y, memory_budget=100, split="on")


def _plan(tiny_npz: Path, tmp_path: Path, **eval_spec):
    from landscape.config import ComputeConfig
    from landscape.evaluation import Run
    from landscape.runs.surface import memory_plan

    config = ComputeConfig.from_dict({
        "model": {"name": "mlp", "args": {"in_features": 6, "num_classes": 3}},
        "data": {"name": f"npz:{tiny_npz}"}, "grid": {"x": "-1:1:3", "y": "-1:1:3"},
        "direction": {"params": ["layers.4.*"]}, "eval": eval_spec, "out": str(tmp_path / "p.h5"),
    })  # fmt: skip
    return memory_plan(Run.of_config(config))


def test_the_memory_plan_shows_the_frontier_and_where_it_goes(
    tmp_path: Path, tiny_npz: Path
) -> None:
    need = 40 * 64 * 4  # 40 samples, the 64 float32 values layers.4 reads
    kept = _plan(tiny_npz, tmp_path)
    assert (kept.frontier, kept.frontier_store) == (need, "memory")
    assert "frontier 0.0 MB kept in memory" in kept.text()
    spilled = _plan(tiny_npz, tmp_path, memory_budget="1000")
    assert (spilled.frontier, spilled.frontier_store) == (need, "disk")
    assert "frontier 0.0 MB on disk" in spilled.text()
    assert kept.more - spilled.more == need  # on disk: no memory counted
    assert _plan(tiny_npz, tmp_path, split_forward="off").frontier == 0


def test_a_gpu_run_over_its_budget_keeps_frontiers_in_host_memory_when_they_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one rule: the device's memory within the budget; from a GPU, the host's memory when
    the frontiers fit half of what it has free; else disk (a CPU run has no host beside it)."""
    monkeypatch.setattr(frontier, "available_bytes", lambda device: 10_000)
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert frontier.where(900, 1000, gpu) == frontier.MEMORY
    assert frontier.where(4000, 1000, gpu) == frontier.HOST
    assert frontier.where(6000, 1000, gpu) == frontier.DISK  # over half the host's free memory
    assert frontier.where(4000, 1000, cpu) == frontier.DISK


def test_host_memory_gives_each_batch_back_as_it_went_in() -> None:
    from transformers.modeling_outputs import BaseModelOutputWithPast

    h = torch.randn(2, 3, 4)
    theta = h.clone()
    item = ({"h": BaseModelOutputWithPast(last_hidden_state=h), "n": 3, "__x__": h[0]}, h[:, 0])
    store = frontier.FrontierStore(frontier.HOST)
    store.append(item)
    h.add_(1.0)  # the store keeps a copy: the values at θ, whatever becomes of the batch
    (back, y), = list(store)  # fmt: skip
    torch.testing.assert_close(y, theta[:, 0], rtol=0, atol=0)
    assert isinstance(back["h"], BaseModelOutputWithPast) and back["n"] == 3
    torch.testing.assert_close(back["h"].last_hidden_state, theta, rtol=0, atol=0)
    torch.testing.assert_close(back["__x__"], theta[0], rtol=0, atol=0)
    assert store.nbytes == h.numel() * 4 + h[0].numel() * 4 + h[:, 0].numel() * 4
    assert store.folder is None  # nothing on disk


def test_the_plan_and_info_say_host_memory_and_count_it_off_the_device() -> None:
    from landscape.info import _split_text
    from landscape.memory import MemoryPlan

    plan = MemoryPlan(weights=10, directions=20, working=10, activations=30, build=0, file=0,
                      available=100, device="cuda:0", frontier=10**9,
                      frontier_store="host")  # fmt: skip
    assert "frontier 1.00 GB kept in host memory" in plan.text() and plan.more == 60
    plan.check()  # the frontier is not the GPU's to hold
    record = {"split": True, "split_static_share": 0.5, "split_frontier_bytes": 2**21,
              "split_frontier_store": "host", "split_path": "modules"}  # fmt: skip
    assert "frontier 2.0 MiB kept in host memory" in _split_text(record)


def test_the_frontier_figure_counts_what_each_batch_holds_whatever_its_samples() -> None:
    """A batch's frontier may hold values of a fixed size (a position embedding, a mask) beside
    those that grow with its samples: the figure counts them once per batch, not per sample."""
    one, many = 5 * 8 * 4 * 2, (5 * 8 * 4) * (1 + 4)  # a (1, 5, 8) table, (n, 5, 8) states
    assert split.frontier_rates(one, many, 4) == (160, 160)
    assert split.frontier_need(160, 160, total=10, batch=4) == 10 * 160 + 3 * 160
    # a GPT-2's replayed frontier, 10 sequences in batches of 4: the figure is the bytes kept
    model, hf = _gpt2()
    model = hf.prepare(model)
    moved = {n for n, _ in model.named_parameters() if n.startswith("transformer.h.2.")}
    made = split.split_forward(model, moved)
    centre = _centre(model)
    x = torch.randint(0, 64, (10, 8))
    figures = split.probe(model, made, centre, _directions(centre, sorted(moved)), x)
    rates = figures["frontier_bytes_per_sample"], figures["frontier_bytes_per_batch"]
    with torch.inference_mode():
        kept = sum(split.frontier_bytes(made.static(centre, x[i : i + 4])) for i in (0, 4, 8))
    assert split.frontier_need(*rates, total=10, batch=4) == kept
