"""Where a split forward's frontiers are kept: in memory, the host's memory, or on disk (issue 27).

The static part of a split forward (``engine.split``) gives each data batch's frontier once, at θ;
every grid point then reads all of them. They are kept in the device's memory when the whole
evaluation set's frontiers fit the memory budget (:func:`where`, the one rule the engine and the
memory plan share); from a GPU, over its budget, in the host's memory when they fit HOST_SHARE
of what it has free (pinned, copied back batch by batch); otherwise each batch's frontier is
written to a private temporary folder as it is made and read back, memory-mapped, at each point:

- a frontier is a tree (a tuple of values for the graph split; a dict of module outputs for the
  module split, whose values may be tuples or transformers' ``ModelOutput``), flattened with
  ``torch.utils._pytree``: its tensors go to one safetensors file per batch (no pickle: the file
  holds bytes and shapes only), its structure and its plain Python leaves (None, numbers) stay in
  memory; a leaf of any other kind refuses the spill (:func:`unspillable`);
- the folder (``tempfile.TemporaryDirectory``, prefix ``landscape-frontier-``) is removed when
  the store is closed, when it is collected, and at the interpreter's exit, after an exception
  too (the directory object's finalizer).

Whether reading a batch back pays is measured on the first batch (:func:`timed_spill`): one
static pass timed against one read of its copy, on the host or in its spilled file.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from landscape.errors import ConfigError
from landscape.memory import available_bytes

MEMORY, HOST, DISK = "memory", "host", "disk"  # memory.FRONTIER_PLACES says them
HOST_SHARE = 0.5  # of the host's free memory, what a GPU run's frontiers may take there
PREFIX = "landscape-frontier-"
PLAIN = (type(None), bool, int, float, complex, str)  # leaves kept with the tree's structure


def where(need: int, budget: int, device: torch.device | None = None) -> str:
    """Where ``need`` bytes of frontiers are kept: in the device's memory when they fit the
    memory budget (bytes, ``select.memory_budget``); from a GPU, in the host's memory when they
    fit HOST_SHARE of what it has free (copied back batch by batch, pinned); else on disk. The
    engine and the memory plan both ask here."""
    if need <= budget:
        return MEMORY
    if device is not None and device.type == "cuda":
        free = available_bytes(torch.device("cpu"))
        if free is not None and need <= HOST_SHARE * free:
            return HOST
    return DISK


def unspillable(item: Any) -> str | None:
    """Why ``item`` (a batch's frontier and targets) cannot go to a safetensors file: a leaf that
    is neither a dense tensor nor a plain Python value (None: it can)."""
    leaves, _ = tree_flatten(item)
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            if leaf.layout != torch.strided or leaf.is_meta:
                return f"the frontier holds a {leaf.layout} tensor, which a file cannot keep"
        elif not isinstance(leaf, PLAIN):
            return f"the frontier holds a {type(leaf).__name__}, which a file cannot keep"
    return None


@dataclass
class _Spilled:
    """One batch on disk: its file, its tree's structure, its leaves (a tensor's file key in
    place of each tensor, plain values as they were) and the device each tensor came from."""

    path: Path
    spec: TreeSpec
    leaves: list[Any]
    devices: dict[int, torch.device]


@dataclass
class _Hosted:
    """One batch in the host's memory (from a GPU run over its budget): its tensors copied to the
    CPU, pinned where CUDA can pin them, each with the device it goes back to."""

    spec: TreeSpec
    leaves: list[Any]
    devices: dict[int, torch.device]

    @classmethod
    def of(cls, item: Any) -> _Hosted:
        leaves, spec = tree_flatten(item)
        devices = {i: t.device for i, t in enumerate(leaves) if _is_tensor(t)}
        pin = torch.cuda.is_available()
        kept = [
            (t.to("cpu", copy=True).pin_memory() if pin else t.to("cpu", copy=True))
            if i in devices else t
            for i, t in enumerate(leaves)
        ]  # fmt: skip
        return cls(spec, kept, devices)

    def back(self) -> Any:
        """The batch on its devices again (an asynchronous copy from pinned memory)."""
        return _rebuilt(self.leaves, self.devices, self.spec, non_blocking=True)


def _rebuilt(
    leaves: list[Any], devices: dict[int, torch.device], spec: TreeSpec, non_blocking: bool = False
) -> Any:
    """A batch's tree from its leaves, each tensor back on the device it came from."""
    return tree_unflatten(
        [t.to(devices[i], non_blocking=non_blocking) if i in devices else t
         for i, t in enumerate(leaves)],
        spec,
    )  # fmt: skip


class FrontierStore:
    """Each batch's ``(frontier, y)`` in the order added, kept in memory or (``DISK``) spilled to
    a private temporary folder; read back in the same order by iterating. ``nbytes``: the tensors'
    bytes added. Shared by an evaluator's copies (``along`` other directions), like a list."""

    def __init__(self, place: str = MEMORY) -> None:
        self.place = place
        self.nbytes = 0
        self._items: list[Any] = []
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def folder(self) -> Path | None:
        """The temporary folder of a spilled store (None: in memory, or closed)."""
        return None if self._folder is None else Path(self._folder.name)

    def append(self, item: Any) -> None:
        leaves, _ = tree_flatten(item)
        self.nbytes += sum(t.numel() * t.element_size() for t in leaves if _is_tensor(t))
        if self.place == DISK:
            item = self._spill(item)
        elif self.place == HOST:
            item = _Hosted.of(item)
        self._items.append(item)

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:  # one at a time: a spilled batch leaves memory before the next
            self.append(item)

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            if isinstance(item, _Spilled):
                yield _read(item)
            else:
                yield item.back() if isinstance(item, _Hosted) else item

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def head(self, n: int) -> FrontierStore:
        """The first ``n`` batches, shared (not copied) in a store that does not own the folder:
        closing it forgets them and leaves this store's files in place."""
        other = FrontierStore(self.place)
        other._items = self._items[:n]
        return other

    def close(self) -> None:
        """Forget every batch and remove the folder (safe to call twice)."""
        self._items.clear()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _spill(self, item: Any) -> _Spilled:
        why = unspillable(item)
        if why is not None:
            raise ConfigError(f"--split-forward: {why}; use --split-forward off")
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix=PREFIX)
        path = Path(self._folder.name) / f"{len(self._items)}.safetensors"
        try:
            return _write(path, item)
        except OSError as exc:
            raise ConfigError(
                f"the split forward's frontier could not be written to {path.parent} ({exc}); "
                "free space there (or point TMPDIR elsewhere), or use --split-forward off"
            ) from None


def _is_tensor(leaf: Any) -> bool:
    return isinstance(leaf, torch.Tensor)


def _write(path: Path, item: Any) -> _Spilled:
    """``item``'s tensors written to ``path``: the same tensor twice is written once (and read
    back as one tensor); a view of a storage written already is copied, since safetensors keeps
    one tensor per stretch of bytes."""
    from safetensors.torch import save_file

    leaves, spec = tree_flatten(item)
    tensors: dict[str, torch.Tensor] = {}
    keys: dict[tuple, str] = {}
    storages: set[int] = set()
    devices: dict[int, torch.device] = {}
    kept: list[Any] = []
    for i, leaf in enumerate(leaves):
        if not _is_tensor(leaf):
            kept.append(leaf)
            continue
        devices[i] = leaf.device
        view = (leaf.data_ptr(), leaf.dtype, tuple(leaf.shape), leaf.stride(), leaf.device)
        if view not in keys:
            t = leaf.detach().contiguous()
            storage = t.untyped_storage().data_ptr()
            if t.numel() and storage in storages:
                t = t.clone()
            storages.add(t.untyped_storage().data_ptr())
            keys[view] = str(len(tensors))
            tensors[keys[view]] = t
        kept.append(keys[view])
    save_file(tensors, str(path))
    return _Spilled(path, spec, kept, devices)


def _read(spilled: _Spilled) -> Any:
    """A spilled batch read back: its tensors memory-mapped from its file onto the devices they
    came from (the same key twice: one tensor), its tree rebuilt."""
    from safetensors import safe_open

    devices = set(spilled.devices.values())
    first = next(iter(devices)) if len(devices) == 1 else torch.device("cpu")
    with safe_open(str(spilled.path), framework="pt", device=str(first)) as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    leaves = [
        tensors[leaf] if i in spilled.devices else leaf for i, leaf in enumerate(spilled.leaves)
    ]
    return _rebuilt(leaves, spilled.devices, spilled.spec)


def timed_spill(
    compute: Callable[[], Any], device: torch.device, place: str = DISK
) -> dict[str, Any] | str:
    """One batch's static pass (``compute``) timed against one read of it kept at ``place``
    (its spilled file, or its copy in the host's memory): the figures ``static_seconds``,
    ``read_seconds``; or why the frontier cannot go to disk."""
    start = _clock(device)
    item = compute()
    static = _clock(device) - start
    why = unspillable(item) if place == DISK else None
    if why is not None:
        return why
    store = FrontierStore(place)
    try:
        store.append(item)
        del item
        start = _clock(device)
        next(iter(store))
        read = _clock(device) - start
    finally:
        store.close()
    return {"static_seconds": float(f"{static:.3g}"), "read_seconds": float(f"{read:.3g}")}


def _clock(device: torch.device) -> float:
    """``perf_counter`` once the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
