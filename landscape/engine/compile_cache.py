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

Inductor loads and runs what it finds in its cache, so the cache must be the user's alone: a
folder is used only when the user owns it, no other user can write into it (nor into a folder
above it, bar a sticky one like ``/tmp``), and it is created ``0700``. A folder that fails this
is not used, with a warning: the kernels go to a new private temporary folder instead, and the
records are neither read nor written. Malformed records are ignored.

Inductor reads its folder from the environment only (``TORCHINDUCTOR_CACHE_DIR``, in
``cache_dir()`` of ``torch/_inductor/runtime/cache_dir_utils.py``, which writes it back too;
``torch._inductor.config`` has no setting for it); a run sets it while it compiles, within
``inductor_env`` (``numerics`` in ``landscape.evaluation``), which restores the caller's value
(or its absence) when the run ends, whatever torch wrote meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from landscape.errors import LandscapeWarning

RECORDS = "compile.json"
RECORDS_MAX_BYTES = 16 << 20  # a records file larger than this is ignored, never read whole
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def cache_dir() -> Path:
    """The user's landscape cache folder (created on first use)."""
    root = os.environ.get("LANDSCAPE_CACHE") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landscape"
    )
    return Path(root)


def unsafe(folder: Path) -> str | None:
    """Why ``folder`` may hold another user's files (None: it is the user's alone).

    The folder must be owned by this user and writable by no one else; every folder above it
    must be owned by this user or root and not writable by others, unless sticky (``/tmp``:
    others cannot rename what is ours there)."""
    uid = os.geteuid()
    try:
        info = os.stat(folder)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if info.st_uid != uid:
        return f"is owned by user id {info.st_uid}, not by you"
    if info.st_mode & 0o022:
        return f"can be written by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    for parent in Path(os.path.realpath(folder)).parents:
        try:
            above = os.stat(parent)
        except OSError as exc:
            return f"is inside {str(parent)!r}, which cannot be read ({exc.strerror})"
        others = above.st_mode & 0o002 and not above.st_mode & stat.S_ISVTX
        if above.st_uid not in (uid, 0) or others:
            return f"is inside {str(parent)!r}, which another user owns or can write into"
    return None


def private_folder(folder: Path) -> tuple[Path | None, str | None]:
    """``folder`` created ``0700`` if missing, and checked with :func:`unsafe`; (None, why)
    when it cannot be made or is not the user's alone."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        return None, f"cannot be created ({exc.strerror})"
    why = unsafe(folder)
    return (None, why) if why else (folder, None)


def _warn(text: str) -> None:
    warnings.warn(text, LandscapeWarning, stacklevel=3)


_chosen: list[Path] = []  # the folder this process compiles into, once a run chose one


def use_persistent_inductor_cache() -> None:
    """Point inductor's on-disk cache at a folder only this user can write: the one the user
    chose (``TORCHINDUCTOR_CACHE_DIR``) if it is safe, else ``inductor/`` in the cache folder,
    else a new private temporary folder; an unsafe folder is named in a warning. The choice
    holds within every later :func:`inductor_env` of the process (a recompile mid-run)."""
    chosen = os.environ.get(INDUCTOR_ENV)
    if chosen and chosen not in map(str, _chosen):
        why = unsafe(Path(chosen))
        if why is None:
            _chosen[:] = [Path(chosen)]
            return
        _warn(
            f"{INDUCTOR_ENV} {chosen!r} {why}: compiled code found there could be another "
            "user's, so it is not used; set it to a folder only you can write"
        )
    folder, why = private_folder(cache_dir() / "inductor")
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="landscape-inductor-"))  # 0700, new: empty
        _warn(
            f"the compile cache {str(cache_dir() / 'inductor')!r} {why}, so it is not used "
            f"(kernels go to {str(folder)!r} for this run); set LANDSCAPE_CACHE to a folder "
            "only you can write"
        )
    _chosen[:] = [folder]
    os.environ[INDUCTOR_ENV] = str(folder)


@contextlib.contextmanager
def inductor_env() -> Iterator[None]:
    """A run's scope for ``TORCHINDUCTOR_CACHE_DIR``: the folder chosen for compiling, if any,
    while it lasts; the caller's value (or none) again when it ends, whatever the run or torch
    itself set meanwhile."""
    before = os.environ.get(INDUCTOR_ENV)
    if _chosen and (before is None or unsafe(Path(before))):  # else the user's own, safe
        os.environ[INDUCTOR_ENV] = str(_chosen[0])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(INDUCTOR_ENV, None)
        else:
            os.environ[INDUCTOR_ENV] = before


def key(
    model: torch.nn.Module,
    device: torch.device,
    engine: str,
    layout: bool,
    batch: int,
    fused: bool = False,
) -> str:
    """What a compile's cost depends on: the model's structure (module types and tensor shapes,
    not values), the device, the path (``fused``: the BatchNorm-folded one, ``engine+fused``),
    the layout, the batch and the torch version."""
    engine = f"{engine}+fused" if fused else engine
    h = hashlib.sha256()
    h.update(f"{torch.__version__}|{device.type}|{engine}|{layout}|{batch}".encode())
    for name, module in model.named_modules():
        h.update(f"{name}:{type(module).__name__}".encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
    return h.hexdigest()[:24]


def recall(record_key: str) -> dict[str, float] | None:
    """The last measured figures (``{"seconds": ..., "speedup": ...}``) for this key, if any;
    entries that are not finite non-negative numbers are left out."""
    found = _records().get(record_key)
    if not isinstance(found, dict):
        return None
    figures = {k: float(v) for k, v in found.items() if _figure(v)}
    return figures or None


def quiet_seconds(known: dict[str, Any] | None) -> float | None:
    """A recorded compile's cost on a quiet machine: its measured seconds divided by the load
    they were measured under (a load that is not a positive finite number counts as 1); None
    when no cost was measured."""
    if not known or "seconds" not in known:
        return None
    load = known.get("load", 1.0)
    ok = isinstance(load, int | float) and not isinstance(load, bool) and 0 < load < math.inf
    return float(known["seconds"]) / (float(load) if ok else 1.0)


def remember_compile(record_key: str, seconds: float, load: float, speedup: float | None) -> None:
    """Store a compile's cost, the machine's load it ran under and its measured speed-up (below
    1: the next run on this machine does not compile this model again; none when not measured)
    for the next run (:func:`remember`)."""
    figures: dict[str, float] = {"seconds": float(seconds), "load": round(load, 2)}
    if speedup:
        figures["speedup"] = round(speedup, 3)
    remember(record_key, **figures)


def _figure(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def _records() -> dict[str, Any]:
    """compile.json as a dict: empty when absent, unreadable, malformed, too large, or in a
    folder that is not the user's alone (records there could be anyone's)."""
    path = cache_dir() / RECORDS
    try:
        if unsafe(path.parent) or os.stat(path).st_size > RECORDS_MAX_BYTES:
            return {}
        records = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return records if isinstance(records, dict) else {}


def remember(record_key: str, **figures: Any) -> None:
    """Store this compile's figures (merged with earlier ones), atomically; a cache folder that
    cannot be written, or is not the user's alone, is no error (nothing is stored)."""
    folder, _ = private_folder(cache_dir())
    if folder is None:
        return
    records = _records()
    earlier = records.get(record_key)
    records[record_key] = {**(earlier if isinstance(earlier, dict) else {}), **figures}
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".compile-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(records, f, indent=1, sort_keys=True)
        os.replace(tmp, folder / RECORDS)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
