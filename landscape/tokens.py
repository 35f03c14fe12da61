"""Token data for language models: ``tokens:FILE``, ``text:FILE`` and ``hf-dataset:DIR``.

Every loader returns sequences of token ids, ``(N, T)`` int64, with padding marked ``PAD`` (-100,
negative: ``landscape.hf`` masks it out of the attention and the loss). The targets are the inputs
themselves: a causal LM's loss compares the logits at t with the token at t + 1.

- ``tokens:FILE``: a ``.npy`` or ``.pt`` integer array, either (N, T) sequences (negative entries
  are padding) or a flat stream of ids cut into windows of ``seq_len`` (the remainder shorter than
  a window is dropped, and noted);
- ``text:FILE``: UTF-8 text encoded with the tokenizer of ``tokenizer`` (a folder; default the
  ``hf:`` model's) as one stream, cut into ``seq_len`` windows (default 128);
- ``hf-dataset:DIR``: a Hugging Face ``datasets`` folder written by ``save_to_disk`` (a Dataset,
  or a DatasetDict whose ``split`` is read), one sequence per row from ``column``: token ids as
  they are, or text encoded with the tokenizer; rows are cut to ``seq_len`` (when given) and
  padded to the longest. With ``labels`` (a column of class ids) the targets are those labels,
  for a sequence classifier; without, the inputs themselves (a causal LM's next tokens).

A ``.pt`` file is read with ``weights_only=True`` and a tokenizer folder without remote code, so
none of these files can run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.config import DEFAULT_TEXT_WINDOW, DataSpec
from landscape.errors import DataError, first_line
from landscape.hf import PAD, require_transformers


def _raw(
    ids: torch.Tensor,
    notes: list[str] | None = None,
    one_set: bool = True,
    targets: torch.Tensor | None = None,
) -> Any:
    """The loader's result: the sequences, and as targets the sequences themselves (a causal
    LM's next tokens) unless ``targets`` (class labels) are given."""
    from landscape.raw import Raw

    y = ids if targets is None else targets
    return Raw(ids, y, one_set=one_set, notes=list(notes or []))


def _windows(stream: torch.Tensor, seq_len: int, where: str) -> tuple[torch.Tensor, list[str]]:
    """A flat stream cut into (N, seq_len) windows; the short remainder dropped."""
    n = stream.numel() // seq_len
    if n == 0:
        raise DataError(
            f"{where} holds {stream.numel()} tokens, fewer than one window of --seq-len "
            f"{seq_len}; give a smaller --seq-len"
        )
    notes = []
    rest = stream.numel() - n * seq_len
    if rest:
        notes.append(f"the last {rest} tokens (less than one {seq_len}-token window) are not used")
    return stream[: n * seq_len].reshape(n, seq_len).contiguous(), notes


def _integers(array: Any, where: str) -> torch.Tensor:
    t = torch.as_tensor(array)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise DataError(f"{where} holds {t.dtype} values; token ids must be integers")
    t = t.to(torch.int64)
    if t.ndim not in (1, 2) or t.numel() == 0:
        raise DataError(
            f"{where} holds an array of shape {tuple(t.shape)}; give (N, T) sequences or a flat "
            "stream of token ids"
        )
    return t


def load_tokens(file: str, split: str, spec: DataSpec) -> Any:
    path = Path(file)
    where = f"tokens file {file!r}"
    if not path.is_file():
        raise DataError(f"{where} does not exist; check the path after 'tokens:'")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{where} is not a plain .npy array ({exc})") from None
    elif path.suffix == ".pt":
        try:
            array = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a foreign file
            first = first_line(exc)
            raise DataError(f"{where} cannot be read as tensors ({first})") from None
        if isinstance(array, dict):
            array = array.get("input_ids", array.get("tokens"))
            if array is None:
                raise DataError(f"{where} holds a dict without 'input_ids'; save the id tensor")
    else:
        raise DataError(f"{where}: use a .npy or .pt integer array")
    ids = _integers(array, where)
    notes: list[str] = []
    if ids.ndim == 1:
        if spec.seq_len is None:
            raise DataError(
                f"{where} is a flat stream of {ids.numel()} tokens; give --seq-len T to cut it "
                "into windows of T tokens"
            )
        ids, notes = _windows(ids, spec.seq_len, where)
    elif spec.seq_len is not None and spec.seq_len < ids.shape[1]:
        ids = ids[:, : spec.seq_len].contiguous()
    ids = torch.where(ids < 0, torch.full_like(ids, PAD), ids)
    _check_predicted(ids, where)
    return _raw(ids, notes)


def _check_predicted(ids: torch.Tensor, where: str) -> None:
    if ids.shape[1] < 2 or not bool((ids[:, 1:] >= 0).any()):
        raise DataError(
            f"{where} has no token to predict (sequences of {ids.shape[1]} tokens); give "
            "sequences of at least 2 real tokens"
        )


def tokenizer(folder: str | None, where: str) -> Any:
    """The tokenizer saved in ``folder`` (no remote code)."""
    if not folder:
        raise DataError(
            f"{where} is text: name the tokenizer folder with --tokenizer DIR (the model's "
            "hf: folder is used when the model is one)"
        )
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    if not any((Path(folder) / f).is_file() for f in files):
        raise DataError(
            f"{where} is text, but {folder!r} holds no tokenizer ({', '.join(files)}); save one "
            "there with tokenizer.save_pretrained, or name its folder with --tokenizer DIR"
        )
    transformers = require_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError, KeyError) as exc:
        first = first_line(exc)
        raise DataError(f"cannot load the tokenizer in {folder!r}: {first}") from None


def load_text(file: str, split: str, spec: DataSpec) -> Any:
    path = Path(file)
    where = f"text file {file!r}"
    if not path.is_file():
        raise DataError(f"{where} does not exist; check the path after 'text:'")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where} cannot be read as UTF-8 text ({exc})") from None
    tok = tokenizer(spec.tokenizer, where)
    ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)
    if text.strip() and ids.numel() == 0:
        raise DataError(f"the tokenizer in {spec.tokenizer!r} encodes {where} as no tokens")
    windows, notes = _windows(ids, spec.seq_len or DEFAULT_TEXT_WINDOW, where)
    return _raw(windows, notes)


def load_hf_dataset(folder: str, split: str, spec: DataSpec) -> Any:
    where = f"hf-dataset folder {folder!r}"
    if not Path(folder).is_dir():
        raise DataError(f"{where} does not exist; give the folder save_to_disk wrote")
    try:
        import datasets
    except ImportError:
        raise DataError("hf-dataset: needs datasets: pip install 'landscape[hf]'") from None
    try:
        ds = datasets.load_from_disk(folder)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"{where} is not a saved dataset ({exc})") from None
    one_set = True
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{where} has splits {', '.join(ds)}, not {split!r}; choose --split")
        ds, one_set = ds[split], False
    column = spec.column or next((c for c in ("input_ids", "text") if c in ds.column_names), None)
    if column is None or column not in ds.column_names:
        raise DataError(
            f"{where} has columns {', '.join(ds.column_names)}; choose one with --column"
        )
    rows = ds[column]
    if rows and isinstance(rows[0], str):
        tok = tokenizer(spec.tokenizer, where)
        rows = [tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    ids = _padded([_integers(r, f"{where} column {column!r}") for r in rows], spec.seq_len)
    if spec.labels:  # a sequence classifier's set: the inputs, and one class label per row
        if spec.labels not in ds.column_names:
            raise DataError(
                f"{where} has no column {spec.labels!r} for --labels; it has "
                f"{', '.join(ds.column_names)}"
            )
        labels = _integers(ds[spec.labels], f"{where} column {spec.labels!r}")
        if labels.ndim != 1:
            raise DataError(f"{where} column {spec.labels!r} must hold one integer per row")
        return _raw(ids, one_set=one_set, targets=labels)
    _check_predicted(ids, where)
    return _raw(ids, [], one_set=one_set)


def _padded(rows: list[torch.Tensor], seq_len: int | None) -> torch.Tensor:
    """Rows cut to ``seq_len`` and padded with PAD to the longest: (N, T)."""
    if not rows:
        raise DataError("the dataset has no rows")
    rows = [r.reshape(-1)[:seq_len] if seq_len else r.reshape(-1) for r in rows]
    width = max(int(r.numel()) for r in rows)
    out = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out
