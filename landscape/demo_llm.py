"""``landscape demo --llm``: a tiny GPT trained on text that ships with Python, and its surface.

Everything is made here, offline: the text is the standard library's ``pydoc_data/topics.py``
(about 700 KB of English: the help texts of Python's keywords and topics), a byte-level BPE
tokenizer is trained on it with ``tokenizers``, and a 2-layer GPT-2 (transformers, built from a
config) is trained on 95 % of its tokens for about a minute on a CPU. The model folder
(``gpt/``: config, safetensors weights, tokenizer) is what ``--model hf:DIR`` reads; the last 5 %
of the tokens, cut into windows, is the evaluation set (``tokens.npy``). Then the surface is
computed and drawn as ``landscape demo`` does: a filter-normalized plane, the next-token loss and
accuracy, perplexity in ``info``.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from landscape._files import replaced_atomically, staged_into, writable_folder
from landscape.config import ComputeConfig
from landscape.runs.surface import ProgressFactory

SEQ_LEN = 64
VOCAB = 1024
TRAIN_SECONDS = 60.0
HELD_OUT = 0.05


def corpus() -> str:
    """The text of the standard library's pydoc topics, as one string."""
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("this Python has no pydoc_data/topics.py")
    return Path(spec.origin).read_text(encoding="utf-8")


def train_tokenizer(text: str, vocab: int = VOCAB):  # -> transformers.PreTrainedTokenizerFast
    """A byte-level BPE tokenizer of ``vocab`` tokens trained on ``text``."""
    import tokenizers
    import transformers

    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def train_gpt(
    ids: torch.Tensor,
    vocab: int,
    seconds: float = TRAIN_SECONDS,
    seed: int = 0,
    min_steps: int = 20,
) -> torch.nn.Module:
    """A 2-layer GPT-2 trained with AdamW on random ``SEQ_LEN`` windows of the token stream
    ``ids`` for ``seconds`` of wall time and at least ``min_steps`` steps."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=SEQ_LEN, n_embd=96, n_layer=2, n_head=4,
        bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start, step = time.perf_counter(), 0
    while step < min_steps or time.perf_counter() - start < seconds:
        offsets = torch.randint(0, len(ids) - SEQ_LEN, (32,), generator=gen)
        batch = torch.stack([ids[o : o + SEQ_LEN] for o in offsets.tolist()])
        opt.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        step += 1
    return model.eval()


def run_llm_demo(
    out_dir: Path,
    *,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] = print,
    seconds: float = TRAIN_SECONDS,
    grid: str = "-1:1:21",
    min_steps: int = 20,
) -> list[str]:
    """Train a tiny GPT (``seconds`` of wall time, at least ``min_steps`` steps), compute its
    surface and plot it into ``out_dir``; the paths written."""
    from landscape.hf import quiet, require_transformers

    transformers = require_transformers()
    writable_folder(out_dir)
    text = corpus()
    log(f"training a {VOCAB}-token BPE tokenizer on pydoc_data/topics.py ({len(text):,} chars) ...")
    tokenizer = train_tokenizer(text)
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.int64)
    cut = int(len(ids) * (1 - HELD_OUT))
    log(f"training a 2-layer GPT-2 on {cut:,} tokens for {seconds:.0f} s ...")
    with quiet(transformers):
        model = train_gpt(ids[:cut], len(tokenizer), seconds, min_steps=min_steps)
        folder = writable_folder(out_dir / "gpt")
        with staged_into(folder) as private:  # they name their files themselves
            model.save_pretrained(private)
            tokenizer.save_pretrained(private)
    held = ids[cut:]
    windows = held[: len(held) // SEQ_LEN * SEQ_LEN].reshape(-1, SEQ_LEN).numpy()
    with replaced_atomically(out_dir / "tokens.npy") as tmp:
        np.save(tmp, windows)
    config = ComputeConfig.from_dict(
        {
            "model": {"name": f"hf:{folder}"},
            # held-out text: stored as test_loss, test_acc (a tokens file holds one set)
            "data": {"name": f"tokens:{out_dir / 'tokens.npy'}", "split": "test"},
            "direction": {"name": "filter-norm", "seed": 0},
            "grid": {"x": grid, "y": grid},
            "eval": {"device": "cpu"},
            "out": str(out_dir / "surface.h5"),
        }
    )
    log(f"computing the surface over {len(windows)} held-out windows of {SEQ_LEN} tokens ...")
    from landscape.demo import compute_and_draw

    with warnings.catch_warnings():
        # the demo's tokens file is its held-out text by construction: the one-set warning that
        # --split test gives a user's own tokens file would only puzzle a demo's reader
        warnings.filterwarnings("ignore", message=r"data .* holds one set, not splits")
        drawn = compute_and_draw(config, out_dir, progress, log)
    return [str(folder), str(out_dir / "tokens.npy"), *drawn]
