"""Weight and activation histograms as TensorBoard event files (``inspect --tensorboard DIR``).

What practitioners watch in TensorBoard's HISTOGRAMS and DISTRIBUTIONS tabs: every layer's
weight tensors (``weights/<layer>/<tensor>``), one step per checkpoint when ``--checkpoints``
gives a training run (step k is the k-th checkpoint, in order), else one step for the inspected
weights; and every recorded layer output on the first batch (``activations/<layer>``) at the
last step. A text entry (``checkpoints``) says which file each step is. Needs the optional
``tensorboard`` package (``pip install 'landscape[tensorboard]'``), imported only here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape._files import staged_into, writable_folder
from landscape.diagnostics.activations import ActivationStats
from landscape.diagnostics.weights import Layer
from landscape.errors import ConfigError


def write_events(
    folder: str | Path,
    layers: Sequence[Layer],
    steps: Sequence[tuple[str, Mapping[str, torch.Tensor]]],
    activations: Sequence[ActivationStats] = (),
) -> Path:
    """Write the histograms into ``folder``; ``steps`` are ``(label, state dict)`` in order."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install 'landscape[tensorboard]'"
        ) from None
    out = writable_folder(folder, "--tensorboard")
    with staged_into(out) as private:  # the writer names its file itself (time, host, pid)
        _write(SummaryWriter(log_dir=str(private)), layers, steps, activations)
    return out


def _write(
    writer: Any,
    layers: Sequence[Layer],
    steps: Sequence[tuple[str, Mapping[str, torch.Tensor]]],
    activations: Sequence[ActivationStats],
) -> None:
    """The histograms and the checkpoint table, through ``writer`` (closed at the end)."""
    try:
        for step, (_, state) in enumerate(steps):
            for layer in layers:
                for local in layer.tensors:
                    full = f"{layer.prefix}.{local}" if layer.prefix else local
                    values = state[full].detach().cpu().double()
                    if values.numel():
                        writer.add_histogram(f"weights/{layer.name}/{local}", values, step)
        last = len(steps) - 1
        for record in activations:
            if record.sample is not None and np.asarray(record.sample).size:
                writer.add_histogram(f"activations/{record.name}", np.asarray(record.sample), last)
        table = "\n".join(f"{k}: {label}" for k, (label, _) in enumerate(steps))
        writer.add_text("checkpoints", table, last)
    finally:
        writer.close()
