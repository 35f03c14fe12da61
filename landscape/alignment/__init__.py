"""Alignment: B's hidden units permuted to match A's, B's function unchanged (issue 25 item 1).

Two networks trained from different seeds compute similar features in different orders; the
straight path between them crosses a barrier that mostly vanishes once the units of one are
reordered to match the other (Entezari et al., ICLR 2022; Ainsworth et al., "Git Re-Basin", ICLR
2023). ``align(A, B)`` returns that reordered copy of B:

    aligned = landscape.align(model_a, model_b)                    # weight matching
    aligned = landscape.align(model_a, model_b, (x, y), method="activations")
    aligned.alignment.permutations      # group -> list: unit i of aligned B is unit p[i] of B
    aligned.alignment.summary()         # figures before -> after, per group

The groups of units that may be permuted are read off the model's graph (``graph``: torch.fx)
or, for transformers models, off their GPT-2- or Llama-shaped blocks (``blocks``); the matching
lives in ``matching``, ``weights`` and ``activations``, the aligned file in ``files``.
"""

from __future__ import annotations

from typing import Any

from landscape.config import DataSpec, EvalSpec

METHODS = ("weights", "activations")
DEFAULT_METHOD = "weights"
# samples per forward pass of activation matching: the data's, as every command's
DEFAULT_BATCH_SIZE = DataSpec.batch_size
ATTRIBUTE = "alignment"  # the aligned model's attribute holding its Alignment
DEFAULT_SEED = 0  # seeds the order weight matching visits the groups in
DEFAULT_DEVICE = EvalSpec.device  # where activation matching runs the models

__all__ = [
    "ATTRIBUTE", "DEFAULT_BATCH_SIZE", "DEFAULT_DEVICE", "DEFAULT_METHOD", "DEFAULT_SEED", "METHODS",
    "Alignment", "align",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    # torch is imported on first use, not by the command line reading the defaults above
    if name in ("align", "Alignment", "permutation_spec"):
        from landscape.alignment import matching

        return getattr(matching, name)
    raise AttributeError(f"module 'landscape.alignment' has no attribute {name!r}")
