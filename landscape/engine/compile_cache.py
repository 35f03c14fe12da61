"""What compiling cost here before: a persistent inductor cache and measured compile times.

``torch.compile`` spends seconds to minutes building kernels on a first run; with inductor's cache
on disk a second run of the same model reuses them and compiles in a fraction of that. Two
things make ``--compile auto`` decide on facts instead of a guess:

- inductor's cache lives in the user's cache folder (``$LANDSCAPE_CACHE``, else
  ``$XDG_CACHE_HOME/landscape``, else ``~/.cache/landscape``: ``inductor/``), not in ``/tmp``
  where a reboot empties it; ``TORCHINDUCTOR_CACHE_DIR``, when set, wins;
- every compile's measured cost and speed-up are remembered there (``compile.json``), per model
  structure, device, engine, layout, batch and torch version; the next run's decision uses them
  (a warm cache's few seconds, the real gain), and falls back to the defaults only the first time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

RECORDS = "compile.json"


def cache_dir() -> Path:
    """The user's landscape cache folder (created on first use)."""
    root = os.environ.get("LANDSCAPE_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landscape"
    )
    return Path(root)


def use_persistent_inductor_cache() -> None:
    """Point inductor's on-disk cache into the user's cache folder, unless the user chose one."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return
    folder = cache_dir() / "inductor"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)


def key(model: torch.nn.Module, device: torch.device, engine: str, layout: bool, batch: int) -> str:
    """What a compile's cost depends on: the model's structure (module types and tensor shapes,
    not values), the device, the path, the layout, the batch and the torch version."""
    h = hashlib.sha256()
    h.update(f"{torch.__version__}|{device.type}|{engine}|{layout}|{batch}".encode())
    for name, module in model.named_modules():
        h.update(f"{name}:{type(module).__name__}".encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
    return h.hexdigest()[:24]


def recall(record_key: str) -> dict[str, float] | None:
    """The last measured ``{"seconds": ..., "speedup": ...}`` for this key, if any."""
    try:
        records = json.loads((cache_dir() / RECORDS).read_text())
    except (OSError, ValueError):
        return None
    found = records.get(record_key) if isinstance(records, dict) else None
    return found if isinstance(found, dict) else None


def remember(record_key: str, **figures: Any) -> None:
    """Store this compile's figures (merged with earlier ones), atomically; a cache folder that
    cannot be written is no error."""
    path = cache_dir() / RECORDS
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError):
            records = {}
        if not isinstance(records, dict):
            records = {}
        records[record_key] = {**records.get(record_key, {}), **figures}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".compile-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(records, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
