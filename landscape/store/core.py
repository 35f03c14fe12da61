"""The HDF5 core every result file stands on (surface and curvature files alike).

- ``create_atomically``: a new file built in memory and written whole, or not at all;
- ``checksummed``: value datasets chunked with fletcher32, storage allocated at creation;
- ``read_values`` / ``DamagedData``: reads that tell a damaged chunk from a bad file;
- ``open_for_reading``: reading while a run writes (no HDF5 file lock);
- ``existing_file`` / ``first_difference`` / ``RESUME_FIX``: the shared part of resume checks;
- ``RunFile``: an open file one run writes through its ``Output`` (lock, partial file);
- ``codec``: the one attribute codec (``encode``, ``decode``, ``text``, ``parsed``).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape._files import MemoryFile, MemoryOutput, Output, os_error_text, result_file
from landscape.errors import SurfaceFileError
from landscape.store.codec import decode
from landscape.store.codec import text as _text

CHUNK_VALUES = 4096  # values per chunk of a checksummed dataset (32 KiB of float64)
READ_ATTEMPTS = 3  # reads of a chunk whose checksum fails before it counts as damaged


class RunFile:
    """An open result file that one run writes: the part surface and curvature stores share.

    The run's ``Output`` (its lock, and under ``--overwrite`` the partial file) is the caller's
    when it passes one in, else taken and released by the store. Closing a complete file runs
    ``_complete`` (the analysis, the rename over the old file).
    """

    def __init__(self, path: Path, handle: h5py.File) -> None:
        self.path, self._f = path, handle
        self.resumed = False
        self.output: Output | None = None
        self.owned = False  # the store took the output's lock itself, and releases it

    @classmethod
    def _open_run(
        cls,
        path: str | Path | Output,
        overwrite: bool,
        check: Callable[[Path], None],
        create: Callable[[Path], None],
        **kwargs: Any,
    ) -> Any:
        """Resume the file ``check`` accepts, or ``create`` one, and open it for writing."""
        owned = not isinstance(path, (Output, MemoryOutput))
        output = Output(path, overwrite) if owned else path
        try:
            where = output.open(check, create)
            store = cls(where, _open(where, "r+"), **kwargs)
        except BaseException:
            if owned:
                output.close()
            raise
        store.output, store.owned, store.resumed = output, owned, output.resumed
        return store

    def pending(self) -> np.ndarray:  # pragma: no cover - each store says what is pending
        raise NotImplementedError

    def close(self) -> None:
        """Close the file; a complete one is completed; then the lock is released (if owned)."""
        try:
            if self._f.id.valid:
                complete = not len(self.pending())
                self._f.close()
                if complete:
                    self._complete()
        finally:
            if self.owned and self.output is not None:
                self.output.close()

    def _complete(self) -> None:
        """Under ``--overwrite``, the complete partial file replaces the old one."""
        if self.output is not None:
            self.output.commit()
            self.path = self.output.final

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_images = itertools.count()


def create_atomically(path: Path | MemoryFile, write: Callable[[h5py.File], None]) -> None:
    """Create ``path`` whole or not at all: ``write`` fills an HDF5 file in memory, whose bytes
    go to a temporary file with plain writes, renamed into place.

    HDF5 writing to a disk that fills up fails in its metadata cache (tracebacks, then a crash
    on close); a plain write fails with ENOSPC, the temporary file is removed and ``path`` is
    as it was. An existing file at ``path`` is replaced only once the new one is complete. A
    ``MemoryFile`` (a run kept in memory) is made of those bytes instead.
    """
    name = f"landscape-image-{os.getpid()}-{next(_images)}.h5"  # no file: backing_store=False
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        write(f)
        f.flush()
        image = f.id.get_file_image()
    try:
        result_file(path).replace_with(image)
    except OSError as exc:
        raise SurfaceFileError(
            f"cannot write {str(path)!r} ({os_error_text(exc)}); nothing was written: free "
            "some space or choose another --out"
        ) from None


def checksummed(group: h5py.Group, name: str, data: np.ndarray, **kwargs: Any) -> h5py.Dataset:
    """A dataset of ``data``, chunked with the fletcher32 checksum: a damaged chunk fails to
    read instead of giving wrong values. Its storage is allocated and filled now, so later
    writes of the same shape change no metadata."""
    data = np.asarray(data)
    chunks = _chunks(data.shape)
    if chunks is None:  # a scalar or an empty array cannot be chunked
        return group.create_dataset(name, data=data, **kwargs)
    return group.create_dataset(name, data=data, chunks=chunks, fletcher32=True, **kwargs)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """About CHUNK_VALUES values a chunk: whole rows of a grid, as many as fit."""
    if not shape or 0 in shape:
        return None
    if len(shape) == 1:
        return (min(shape[0], CHUNK_VALUES),)
    rest = int(np.prod(shape[1:]))
    if rest > CHUNK_VALUES:  # a row alone is larger: cut the last axis
        return (1,) * (len(shape) - 1) + (min(shape[-1], CHUNK_VALUES),)
    return (max(1, min(shape[0], CHUNK_VALUES // rest)), *shape[1:])


RESUME_FIX = "choose another --out, or pass --overwrite to replace it"


def existing_file(
    path: Path,
    schema: str,
    version: int | tuple[int, ...],
    kind: str,
    read: Callable[[h5py.File], Any],
) -> tuple[dict[str, Any], Any]:
    """The root attributes of an existing ``schema`` file of ``version`` (or one of several),
    and ``read(file)``; a ``SurfaceFileError`` naming the problem when the file is unreadable or
    of another kind."""
    versions = (version,) if isinstance(version, int) else version
    try:
        with h5py.File(path, "r") as f:
            attrs, extra = dict(f.attrs), read(f)
    except OSError:
        raise SurfaceFileError(
            f"{str(path)!r} exists but is not a readable HDF5 file; {RESUME_FIX}"
        ) from None
    if _text(attrs.get("schema", "")) != schema:
        raise SurfaceFileError(f"{str(path)!r} exists and is not a {kind} file; {RESUME_FIX}")
    if int(attrs.get("schema_version", -1)) not in versions:
        raise SurfaceFileError(
            f"{str(path)!r} has {kind} schema version {attrs.get('schema_version')}, this "
            f"landscape writes {' or '.join(map(str, versions))}; {RESUME_FIX}"
        )
    return attrs, extra


def first_difference(a: Any, b: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key at which two nested dicts differ, with both values. Keys both hold
    are compared first, at every depth: a key that exists under one setting only (the batch
    size under --bn train) is named only when no setting that both hold differs."""
    return _difference(a, b, prefix, missing=False) or _difference(a, b, prefix, missing=True)


def _difference(a: Any, b: Any, prefix: str, missing: bool) -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if not missing and (key not in a or key not in b):
                continue
            found = _difference(a.get(key), b.get(key), f"{prefix}{key}.", missing)
            if found:
                return found
        return None
    return None if a == b else (prefix.rstrip("."), a, b)


def _open(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise SurfaceFileError(
            f"cannot open {str(path)!r} for writing ({os_error_text(exc)}); check its permissions "
            "(a program other than landscape may hold it open)"
        ) from None


def open_for_reading(path: Path) -> h5py.File:
    """Open without HDF5's file lock, so a file can be read while a run is writing it.

    Safe here: a run writes point values into storage allocated at creation and never changes
    the file's metadata, so a reader sees every point either before or after its write.
    """
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "locking flag" not in str(exc):  # the same process holds it open with the lock
            raise
        return h5py.File(path, "r")


def has_schema(path: str | Path, schema: str) -> bool:
    """Whether ``path`` is a readable HDF5 file of ``schema`` (readers that take several kinds
    ask this first). Only a regular file is opened: a FIFO would block the open for ever."""
    if not Path(path).is_file():
        return False
    try:
        with open_for_reading(Path(path)) as f:
            found = decode(f.attrs.get("schema", ""))
        return isinstance(found, str) and found == schema  # an array compares elementwise
    except OSError:
        return False


class DamagedData(OSError):
    """A dataset's chunk failed its fletcher32 checksum."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def read_values(ds: h5py.Dataset) -> np.ndarray:
    """A dataset's values; ``DamagedData`` naming it when a chunk fails its checksum.

    A reader may catch a chunk in the middle of a running writer's write (a read does not wait
    for a write to the same pages), so a failed checksum is read again before it counts.
    """
    for attempt in range(READ_ATTEMPTS):
        try:
            return ds[()]
        except OSError as exc:
            if not (ds.fletcher32 or "filter" in str(exc).lower()):
                raise
            if attempt == READ_ATTEMPTS - 1:
                raise DamagedData(ds.name.lstrip("/")) from None
            time.sleep(0.05)
    raise AssertionError("unreachable")  # pragma: no cover
