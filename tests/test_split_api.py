"""Computing only what moves, as users reach it (issue 27): ``landscape.compute(...,
split_forward=)``, a Llama whose last (or a middle) decoder layer moves, split on its module tree,
and the split under ``--compile on``. Each surface is checked against the full forward's (1e-6
relative) and the engine record says which forward ran."""

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

import landscape
from landscape.cli import main
from landscape.engine import split
from landscape.engine.reference import ReferenceEvaluator
from landscape.errors import ConfigError
from landscape.losses import get_loss
from tests.test_split import POINTS, TwoBranches, _close, _directions, _surfaces


def _mlp() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)
    )
    return model.eval(), (torch.randn(40, 6), torch.randint(0, 3, (40,)))


def _record(surface: landscape.Surface) -> dict:
    return json.loads(surface.attrs["engine"])


GRID = {"x": (-1, 1, 3), "y": (-1, 1, 3), "engine": "reference", "progress": False}


def test_compute_takes_split_forward() -> None:
    model, data = _mlp()
    off = landscape.compute(model, data, params="4.*", split_forward="off", **GRID)
    r = _record(off)
    assert r["split"] is False and r["split_reason"] == "--split-forward off"
    # on forces it, whichever engine auto picks (both take a split)
    on = landscape.compute(
        model, data, params="4.*", split_forward="on", **{**GRID, "engine": "auto"}
    )
    r = _record(on)
    assert r["split"] is True and r["split_path"] == "graph" and r["split_static_parts"] == 4
    assert r["engine"] in ("reference", "batched")
    _close(on.loss.ravel().tolist(), off.loss.ravel().tolist())
    np.testing.assert_array_equal(on.acc, off.acc)
    # on, where nothing comes before the moved layer: the named error, saying what to do
    moves = r"--split-forward on: the first operation moves.*auto or off"
    with pytest.raises(ConfigError, match=moves):
        landscape.compute(model, data, params="0.*", split_forward="on", **GRID)
    with pytest.raises(ConfigError, match=r"eval\.split_forward must be one of auto, on, off"):
        landscape.compute(model, data, params="4.*", split_forward="sometimes", **GRID)


def _llama(layers: int) -> nn.Module:
    """A tiny Llama (rotary position embeddings and the causal mask made in the decoder, before
    its layers), untrained: random weights move the loss enough."""
    transformers = pytest.importorskip("transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cfg = transformers.LlamaConfig(
        num_hidden_layers=layers, hidden_size=32, intermediate_size=64, num_attention_heads=2,
        num_key_value_heads=2, vocab_size=64, max_position_embeddings=16, bos_token_id=0,
        eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def test_a_llama_with_its_last_layer_moving_gives_the_full_surface() -> None:
    """The issue's example in small: only ``model.layers.<last>.*`` moves; the embeddings, the
    rotary embedding and the layers before it run once per batch."""
    model = _llama(3)
    ids = torch.randint(0, 64, (6, 8))
    kw = dict(params="model.layers.2.*", batch_size=4, **GRID)
    fast = landscape.compute(model, (ids, ids), split_forward="on", **kw)
    full = landscape.compute(model, (ids, ids), split_forward="off", **kw)
    _close(fast.loss.ravel().tolist(), full.loss.ravel().tolist())
    r = _record(fast)
    assert r["split"] is True and r["split_path"] == "modules" and r["split_check"] <= 1e-6
    assert r["split_replayed"] == "model.layers.1"  # the last module replayed: the layer before
    assert r["split_first_moved"].startswith("model.layers.2.")


def test_a_llama_with_a_middle_layer_moving() -> None:
    from landscape import hf

    model = hf.prepare(_llama(3))
    moved = [n for n, _ in model.named_parameters() if n.startswith("model.layers.1.")]
    ids = torch.randint(0, 64, (5, 8))
    fast, full, made = _surfaces(model, moved, ids, ids, "causal-lm")
    _close(fast, full)
    assert made.how == "modules" and made.figures["replayed"] == "model.layers.0"
    # replayed: the token embedding, the rotary embedding and layer 0; layer 2 runs per point
    assert made.static_nodes == 3


def test_a_decoder_stack_keeps_one_layer_output() -> None:
    """Layers 0-2 replayed before the moved layer 3: the split keeps layer 2's output (and the
    embeddings'), not one per layer; layers 0 and 1 hand on layer 2's, which the next ignores."""
    from landscape import hf

    model = hf.prepare(_llama(4))
    moved = [n for n, _ in model.named_parameters() if n.startswith("model.layers.3.")]
    ids = torch.randint(0, 64, (5, 8))
    fast, full, made = _surfaces(model, moved, ids, ids, "causal-lm")
    _close(fast, full)
    centre = dict(model.named_parameters())
    kept = made.static(centre, ids)
    assert sorted(kept) == ["__x__", "model.embed_tokens", "model.layers.2", "model.rotary_emb"]
    assert made.static_nodes == 5  # replayed: those three, and layers 0 and 1


class Skips(nn.Module):
    """Blocks each feeding the next whose outputs plain code reads too (a skip from each to the
    head, as in a U-Net's encoder), and a branch on the data, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(3))
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.blocks:
            x = block(x)
            skips.append(x)
        if bool(x.sum() > -1e9):
            x = x + 2 * skips[0]
        return self.head(x + skips[1])


def test_blocks_whose_outputs_plain_code_reads_are_all_kept() -> None:
    torch.manual_seed(0)
    model = Skips().eval()
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    fast, full, made = _surfaces(model, ["head.weight", "head.bias"], x, y, None)
    _close(fast, full)
    assert made.how == "modules"
    kept = made.static(dict(model.named_parameters()), x)
    assert sorted(kept) == ["__x__", "blocks.0", "blocks.1", "blocks.2"]


@pytest.mark.slow  # two compiles: about 10 s each on a CPU
def test_the_compiled_dynamic_part_gives_the_full_forward(tmp_path: Path, tiny_npz: Path) -> None:
    torch.manual_seed(0)
    model = TwoBranches().eval()
    calls: list[int] = []
    model.stem[0].register_forward_hook(lambda *_: calls.append(1))
    centre = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dirs = _directions(centre, ["moved.weight", "moved.bias"])
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))
    batches = lambda: iter([(x[:4], y[:4]), (x[4:], y[4:])])  # noqa: E731
    made = split.split_forward(model, {"moved.weight", "moved.bias"})
    args = (model, centre, dirs, batches, get_loss("cross-entropy"))
    compiled = ReferenceEvaluator(*args, split=made, compile=True)
    fast = [r.loss for r in compiled.evaluate_block(POINTS)]
    assert len(calls) == 2  # the static part once per batch, eagerly; the compiled part per point
    assert compiled.describe()["split"] is True and compiled.describe()["compile"] is True
    _close(fast, [r.loss for r in ReferenceEvaluator(*args).evaluate_block(POINTS)])
    # the command line: --compile on with the split, against the full forward uncompiled
    values = {}
    for name, flags in {"fast": ["on", "on"], "full": ["off", "off"]}.items():
        out = tmp_path / f"{name}.h5"
        args_ = ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg",
                 "num_classes=3", "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--y=-1:1:3",
                 "--engine", "reference", "--params", "layers.4.*", "--out", str(out),
                 "--compile", flags[0], "--split-forward", flags[1]]  # fmt: skip
        result = CliRunner().invoke(main, args_)
        assert result.exit_code == 0, result.output
        with h5py.File(out) as f:
            record = json.loads(f.attrs["engine"])
            values[name] = f["train_loss"][()].ravel().tolist()
        assert record["split"] is (name == "fast") and record["compile"] is (name == "fast")
    _close(values["fast"], values["full"])
