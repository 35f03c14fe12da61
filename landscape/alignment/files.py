"""The aligned checkpoint: B's permuted weights as safetensors, the alignment in its metadata.

A safetensors file holds tensors and a string-to-string header, and loading it runs no code. The
header records what the alignment was (``landscape``: ``FORMAT``), the method, the permutations
(JSON: group → list, unit i of the aligned model is unit p[i] of B), the figures before and after,
and the sha256 of the two checkpoints it came from. ``--checkpoint FILE.safetensors`` loads it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from landscape._files import check_not_hdf5, check_output, write_bytes_atomically
from landscape.alignment import ATTRIBUTE
from landscape.alignment.matching import Alignment
from landscape.errors import AlignError, CheckpointError, ConfigError
from landscape.version import __version__

FORMAT = "aligned checkpoint 1"  # the header's "landscape" entry


def check_out(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a file this run may write: refused if it exists without ``overwrite``, and
    always if it is a surface file (HDF5), a link, a FIFO or a device."""
    path = check_output(out, "--out")
    check_not_hdf5(path, "--out")
    if path.exists() and not overwrite:
        raise ConfigError(
            f"--out {str(out)!r} exists; pass --overwrite to replace it, or choose another name"
        )
    return path


def save_aligned(
    out: str | Path, model: nn.Module, provenance: Mapping[str, str], overwrite: bool = False
) -> Path:
    """Write the aligned ``model`` (``align``'s result) to ``out``, atomically; ``provenance``:
    more header entries (the checkpoints' hashes, the model spec)."""
    from safetensors.torch import save

    alignment = getattr(model, ATTRIBUTE, None)
    if not isinstance(alignment, Alignment):
        raise AlignError("the model carries no alignment; pass the model landscape.align returned")
    path = check_out(out, overwrite)
    # own, contiguous copies: safetensors refuses tensors sharing memory (tied weights)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {
        "landscape": FORMAT,
        "version": __version__,
        "method": alignment.method,
        "permutations": json.dumps(alignment.permutations),
        "alignment": json.dumps(
            {k: v for k, v in dataclasses.asdict(alignment).items() if k != "permutations"}
        ),
        **provenance,
    }
    write_bytes_atomically(path, save(tensors, metadata=header))
    return path


def read_alignment(path: str | Path) -> dict[str, Any]:
    """The header of an aligned checkpoint, its JSON entries decoded (``permutations``: group →
    list of int); CheckpointError for a file landscape did not write this way."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({exc})") from None
    if header.get("landscape") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an aligned checkpoint landscape wrote")
    for key in ("permutations", "alignment"):
        header[key] = json.loads(header[key])
    return header
