"""``landscape align``: the checkpoint of model B with its hidden units permuted to match A.

The model spec is loaded at ``--checkpoint`` (A); ``--target`` (B) is checked against it as every
second checkpoint is (``session.state_loader``: same tensors, same shapes, the first difference
named); ``alignment.align`` finds the permutations and ``alignment.files`` writes the aligned B as
safetensors with the permutations and both files' hashes in its header.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from landscape import checkpoint
from landscape._files import check_input
from landscape.alignment import DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_METHOD, DEFAULT_SEED
from landscape.alignment.files import check_out, save_aligned
from landscape.alignment.matching import Alignment, align
from landscape.config import DataSpec, ModelSpec
from landscape.errors import (
    AlignError,
    ConfigError,
    DirectionError,
    SurfaceFileError,
)
from landscape.models import sources
from landscape.session import Session, model_at, state_loader


@dataclass(frozen=True)
class AlignRun:
    """What ``run_align`` wrote: the file and the alignment's record."""

    path: Path
    alignment: Alignment


def run_align(
    model: ModelSpec,
    target: str,
    out: str,
    *,
    data: DataSpec | None = None,
    method: str = DEFAULT_METHOD,
    seed: int = DEFAULT_SEED,
    device: str = DEFAULT_DEVICE,
    overwrite: bool = False,
) -> AlignRun:
    """Align ``target`` (B) to the model spec at its checkpoint (A) and write ``out``; ``data``
    (needed by ``activations``) is the set both models run on. Every refusal comes before
    the models are loaded where it can."""
    check_out(out, overwrite)
    _check_files(model, target, out)
    if method == "activations" and data is None:
        raise ConfigError("--method activations runs both models on data: give --data")
    evaluation = None
    if data is not None:  # activations: the set both run on; weights: the output check
        session = Session.from_specs(model, data, device=device, seed=seed)
        model_a, sha = session.model, session.checkpoint_sha256
        evaluation = session.data
    else:
        model_a, sha = model_at(model, seed)
    model_a.eval()
    model_b = copy.deepcopy(model_a)
    checkpoint.apply_state_dict(model_b, _target_state(model_a, target, model.unsafe_pickle))
    batch = data.batch_size if data is not None else DEFAULT_BATCH_SIZE
    aligned = align(
        model_a, model_b, evaluation, method, seed=seed, batch_size=batch, device=device
    )
    provenance = {
        "model": model.name,
        "model_args": json.dumps(model.args),
        "checkpoint": str(model.checkpoint or ""),
        "checkpoint_sha256": sha,
        "target": str(target),
        "target_sha256": checkpoint.file_sha256(target),
    }
    return AlignRun(save_aligned(out, aligned, provenance, overwrite), aligned.alignment)


def _target_state(model_a: nn.Module, target: str, unsafe_pickle: bool) -> dict[str, torch.Tensor]:
    """B's tensors, checked against A's as every second checkpoint is (same names, same shapes:
    the first difference named), and with no tensor A lacks (a deeper network of the same
    family holds all of A's tensors and more)."""
    state = checkpoint.load_state_dict(target, unsafe_pickle=unsafe_pickle)
    own = model_a.state_dict()
    try:
        checked = state_loader(own, unsafe_pickle)(state)
    except DirectionError as exc:
        raise AlignError(f"--target {target!r}: {exc}") from None
    extra = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    if extra:
        raise AlignError(
            f"--target {target!r} holds tensor {extra[0]}, which model A has not: the two "
            "models are of different architectures (check --model and --model-arg)"
        )
    return checked


def _check_files(model: ModelSpec, target: str, out: str) -> None:
    """A checkpoint for A, an existing target that is another file, an output that is neither."""
    if not model.checkpoint and not sources.own_weights(model.name):
        raise ConfigError(
            "--checkpoint is missing: give the weights of model A (B, --target, is aligned to it)"
        )
    try:
        check_input(target, "--target")
    except SurfaceFileError as exc:
        raise ConfigError(str(exc)) from None
    if model.checkpoint and _same_file(model.checkpoint, target):
        raise ConfigError(
            f"--target {target!r} is the same file as --checkpoint; give the checkpoint of the "
            "second model, B"
        )
    for flag, path in (("--checkpoint", model.checkpoint), ("--target", target)):
        if path and _same_file(path, out):
            raise ConfigError(f"--out {out!r} is the {flag} file; choose another name")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False
