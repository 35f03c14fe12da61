"""The surface file: HDF5, schema ``landscape.surface`` version 1 (1-D and 2-D grids) or 2
(grids of 3 to 5 axes; DESIGN §6).

Layout::

    /                      attrs: schema, schema_version, config (resolved YAML), versions, created,
                                  checkpoint_sha256, direction, seed, dims, data (JSON provenance)
    /xcoordinates          (nx,) float64           /ycoordinates (ny,) float64 (2-D only)
    /<split>_loss          (nx[, ny]) float64      NaN until computed; value[i, j] is at (x[i], y[j])
    /<split>_acc           (nx[, ny]) float64      fraction correct
    /done                  (nx[, ny]) bool         a point is done only once its values are written
    /directions/{x,y}/<tensor name>                the directions themselves, by name
    /directions            attrs: method, cosine, norms, the method's own figures
    /analysis/<quantity>   (ANALYSIS_BYTES,) uint8: one JSON text per loss quantity
                           (landscape.analysis), NUL-padded; reserved when the file is created and
                           filled once every point is done (files of earlier versions: attrs)
    /repeats/<r>/          only with --repeat R > 1 (root attr repeats=R), for r = 1..R-1: the
                           surface along directions of seed + r, laid out as the top level
                           (<split>_loss, <split>_acc, done, directions/{x,y}/<name>; attr seed);
                           the top level is repeat 0, so readers that know nothing of repeats
                           read an ordinary surface

Version 2 (k = 3..5 axes, an n-D grid) is version 1 with more axes: /zcoordinates, then
/ucoordinates and /vcoordinates (``config.AXIS_NAMES``), values, ``done`` and repeats of shape
(nx, ny, nz[, nu[, nv]]), directions under directions/{x,y,z[,u[,v]]}. 1-D and 2-D files are
written as version 1, byte for byte the layout they always had, so older readers read them.

Crash safety: a new file is built in memory (HDF5's core driver) and written to a temporary name
with plain writes, renamed into place only once complete, so a refused or failed run (a full disk
included) never damages an existing file nor leaves a stray one. Point values go into datasets
allocated at creation (no resizing), so writing them touches no HDF5 metadata and needs no new
disk space; values are flushed before their ``done`` flags, so a kill at any moment leaves a
readable file in which every point marked done holds its final value. The analysis is written
into space reserved at creation, so finishing a run needs no copy of the file either.

Integrity: value datasets (coordinates, values, ``done``, directions, analysis) are chunked with
HDF5's fletcher32 checksum, so a damaged block is an error on read, not a wrong number. Files
written before (contiguous, no checksum) read as they are.

One writer: a run holds ``_files.OutputLock`` on the file while it writes; with ``--overwrite`` it
writes ``.NAME.partial`` beside an existing file and renames it over that file once complete.

A run's points are numbered over every repeat: point k of repeat r is ``r * P + k`` (P points per
grid, k row-major), so repeat 0's numbers are the grid's flat indices.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape import quantities
from landscape._files import (
    MemoryFile,
    Output,
    check_input,
    os_error_text,
    replaced_atomically,
    result_file,
)
from landscape.config import AXIS_NAMES, ComputeConfig, load_yaml
from landscape.directions.base import DirectionSet, summarize
from landscape.errors import SurfaceFileError
from landscape.store.codec import decode as _decode
from landscape.store.codec import encode as _attr_value
from landscape.store.codec import parsed as _parsed
from landscape.store.codec import text as _text
from landscape.store.core import (
    RESUME_FIX,
    DamagedData,
    RunFile,
    checksummed,
    create_atomically,
    existing_file,
    first_difference,
    open_for_reading,
    read_values,
)
from landscape.store.validate import (
    SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_PLANE,
    check_surface,
    coordinate_names,
    schema_version_for,
)
from landscape.store.values import Repeat, SurfaceValues
from landscape.version import __version__

ANALYSIS_BYTES = 1 << 16  # reserved per loss quantity; an analysis is a few KiB of JSON


@dataclass
class RunHeader:
    """What a run writes once, before any point: its identity and provenance."""

    config: ComputeConfig
    x: np.ndarray
    y: np.ndarray | None
    directions: DirectionSet
    direction_attrs: dict[str, Any]
    checkpoint_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # data description, device, ...
    repeats: list[DirectionSet] = field(default_factory=list)  # directions of repeats 1..R-1
    store_directions: str = "full"  # or "seed": only their fingerprint (direction.store)
    beyond: tuple[np.ndarray, ...] = ()  # the coordinates of axes 3..k of an n-D grid

    @property
    def axes(self) -> tuple[np.ndarray, ...]:
        """Every axis' coordinates, x first."""
        return (self.x,) if self.y is None else (self.x, self.y, *self.beyond)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)


class SurfaceStore(RunFile):
    """An open surface file that a run writes points into."""

    def __init__(
        self,
        path: Path,
        handle: h5py.File,
        split: str,
        on_complete: Callable[[Path], object] | None = None,
    ) -> None:
        super().__init__(path, handle)
        self.split = split
        # called with the file's path once the last point is written, before an --overwrite
        # file replaces the old one (the run passes landscape.analysis.store_analysis)
        self.on_complete = on_complete
        self.shape = tuple(handle["done"].shape)
        self.points = int(np.prod(self.shape))  # P, points per repeat
        self.repeats = repeat_count(handle)
        self.size = self.repeats * self.points  # points over every repeat

    @classmethod
    def open_for_run(
        cls,
        path: str | Path | Output,
        header: RunHeader,
        *,
        overwrite: bool = False,
        on_complete: Callable[[Path], object] | None = None,
    ) -> SurfaceStore:
        """Create the file for ``header``, or reopen an existing one of the same run to resume.

        ``path`` is a file name, or an ``Output`` the caller already holds (its lock taken
        before it read anything). An existing file of another run is refused
        (SurfaceFileError) unless ``overwrite``; with ``overwrite`` it is replaced only once the
        new file is complete (``Output``).
        """
        return cls._open_run(
            path,
            overwrite,
            lambda p: check_resumable(p, header),
            lambda p: _create_atomically(p, header),
            split=header.config.data.split,
            on_complete=on_complete,
        )

    # --- points ----------------------------------------------------------------------------

    def pending(self) -> np.ndarray:
        """Indices of the points not done yet over every repeat (``r * P + k``), in the order a
        run takes them (:func:`pending_points`)."""
        return pending_points(self._f, self.shape)

    def write_block(
        self,
        indices: Sequence[int],
        values: Sequence[Mapping[str, float]] | Sequence[float],
        accs: Sequence[float] | None = None,
    ) -> None:
        """Write a block of points (each point's quantities by suffix, ``quantities.TABLE``; or
        ``(indices, losses, accs)``, the loss and accuracy alone), then mark them done; each step
        is flushed to disk. A quantity the file has no dataset for (a file written before it
        existed) is left out; one a point does not give is NaN."""
        if accs is not None:
            values = [{"loss": lo, "acc": ac} for lo, ac in zip(values, accs, strict=True)]
        flat = np.asarray(indices, dtype=np.int64)
        parts = []  # (repeat's group, the block's entries in it, runs of its points)
        for r in np.unique(flat // self.points):
            mine = np.flatnonzero(flat // self.points == r)
            runs = list(_runs(flat[mine] - r * self.points, self.shape))
            parts.append((repeat_group(self._f, int(r)), mine, runs))
        columns = {
            q.suffix: np.asarray([v.get(q.suffix, np.nan) for v in values], dtype=np.float64)
            for q in quantities.TABLE
        }
        try:
            for group, mine, runs in parts:
                for suffix, column in columns.items():
                    name = f"{self.split}_{suffix}"
                    if name not in group:
                        continue
                    for where, part in runs:
                        group[name][where] = column[mine][part]
            self._f.flush()  # values reach the disk before the flags that vouch for them
            for group, _, runs in parts:
                for where, part in runs:
                    group["done"][where] = np.ones(part.stop - part.start, dtype=bool)
            self._f.flush()
        except OSError as exc:
            raise SurfaceFileError(
                f"cannot write points to {str(self.path)!r} ({os_error_text(exc)}); the points "
                "written before are kept: fix that and rerun the same command to resume"
            ) from None

    def nonfinite_count(self) -> int:
        """Points done whose loss is NaN or infinite (stored as such, never fatal), all repeats."""
        count = 0
        for r in range(self.repeats):
            group = repeat_group(self._f, r)
            count += int(np.sum(group["done"][()] & ~np.isfinite(group[f"{self.split}_loss"][()])))
        return count

    def _complete(self) -> None:
        if self.on_complete is not None:
            self.on_complete(self.path)  # e.g. the analysis into /analysis, in place
        super()._complete()


def _runs(flat: np.ndarray, shape: tuple[int, ...]):
    """Split flat indices into runs of consecutive points within one grid row.

    Yields ``(where, part)``: ``where`` indexes the dataset with a slice (one h5py write per
    run rather than per point), ``part`` the matching slice of the block's values.
    """
    ny = shape[-1]  # a row: the last axis, the others fixed
    start = 0
    for end in range(1, len(flat) + 1):
        if end < len(flat) and flat[end] == flat[end - 1] + 1 and flat[end] % ny != 0:
            continue
        first = int(flat[start])
        row, j = divmod(first, ny)
        span = slice(j, j + end - start)
        lead = tuple(int(i) for i in np.unravel_index(row, shape[:-1])) if len(shape) > 1 else ()
        yield (*lead, span), slice(start, end)
        start = end


def repeat_count(f: h5py.File) -> int:
    """R of a ``--repeat R`` file; 1 for every other file."""
    return int(f.attrs.get("repeats", 1))


def repeat_group(f: h5py.File, r: int) -> h5py.Group:
    """Where repeat ``r`` lives: the file's top level for 0, ``/repeats/<r>`` for the others."""
    return f if r == 0 else f[f"repeats/{r}"]


def done_flags(f: h5py.File) -> np.ndarray:
    """The done flags of every repeat, shape ``(R, *grid)``."""
    return np.stack([repeat_group(f, r)["done"][()] for r in range(repeat_count(f))])


def pending_points(f: h5py.File, shape: tuple[int, ...]) -> np.ndarray:
    """The points of ``f`` not done yet over every repeat (``r * P + k``), coarse to fine
    (``grid.coarse_to_fine``): every prefix of the run covers the whole plane."""
    from landscape.grid import coarse_to_fine

    return coarse_to_fine(np.flatnonzero(~done_flags(f).reshape(-1)), shape)


def _create_atomically(path: Path, header: RunHeader) -> None:
    create_atomically(path, lambda f: _write_header(f, header))


def _write_header(f: h5py.File, h: RunHeader) -> None:
    cfg = h.config
    f.attrs.update(
        {
            "schema": SCHEMA,
            "schema_version": schema_version_for(len(h.shape)),
            "config": cfg.to_yaml(),
            "landscape_version": __version__,
            "torch_version": str(torch.__version__),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint_sha256": h.checkpoint_sha256,
            "direction": h.directions.method,
            "seed": cfg.direction.seed,
            "dims": cfg.dims,
        }
    )
    for key, value in h.extra.items():  # numbers as numbers; text and dicts as JSON, as always
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        f.attrs[key] = value if number else json.dumps(value, sort_keys=True, default=str)
    for name, coords in zip(coordinate_names(len(h.axes)), h.axes, strict=True):
        checksummed(f, name, np.asarray(coords, dtype=np.float64))
    _write_points(f, cfg.data.split, h.shape)
    _write_directions(f, h.directions, h.direction_attrs, h.store_directions)
    # room for the analysis of each loss, filled in place once every point is done
    analysis = f.create_group("analysis")
    checksummed(analysis, f"{cfg.data.split}_loss", np.zeros(ANALYSIS_BYTES, dtype=np.uint8))
    if h.repeats:
        f.attrs["repeats"] = 1 + len(h.repeats)
    for r, ds in enumerate(h.repeats, start=1):
        group = f.create_group(f"repeats/{r}")
        group.attrs["seed"] = cfg.direction.seed + r
        _write_points(group, cfg.data.split, h.shape)
        _write_directions(group, ds, summarize(ds), h.store_directions)
    for group, arrays in (
        ("trajectory", h.directions.trajectory),
        ("landmarks", h.directions.landmarks),
    ):
        if arrays:
            _write_arrays(f.create_group(group), arrays)


def _write_points(group: h5py.Group, split: str, shape: tuple[int, ...]) -> None:
    # data= allocates and fills the storage now, so later point writes change no metadata
    for name in quantities.dataset_names(split):
        checksummed(group, name, np.full(shape, np.nan, dtype=np.float64))
    checksummed(group, "done", np.zeros(shape, dtype=bool))


def _write_arrays(group: h5py.Group, arrays: dict[str, Any]) -> None:
    """Numeric arrays as float64, lists of names as variable-length UTF-8 strings."""
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "USO":
            group.create_dataset(
                key, data=[str(v) for v in arr.tolist()], dtype=h5py.string_dtype()
            )
        else:
            checksummed(group, key, arr.astype(np.float64))


def _write_directions(
    f: h5py.Group, ds: DirectionSet, attrs: dict[str, Any], store: str = "full"
) -> None:
    """The directions' tensors under ``x``, ``y`` (``z``, ...) with the family's attributes; ``store="seed"``
    keeps only a fingerprint (``stored: seed``) that regenerated directions are checked against."""
    group = f.create_group("directions")
    for key, value in attrs.items():
        group.attrs[key] = _attr_value(value)
    if store == "seed":
        from landscape.directions.io import fingerprint

        group.attrs["stored"] = "seed"
        group.attrs["fingerprint"] = json.dumps(fingerprint(ds.vectors))
        return
    for axis, vec in zip(AXIS_NAMES, ds.vectors, strict=False):  # 1 to MAX_AXES directions
        sub = group.create_group(axis)
        for name, t in vec.items():
            t = t.detach().cpu()
            if t.dtype in (torch.bfloat16, torch.float16):
                t = t.float()  # numpy has no bfloat16; exact, and read back in the weights' dtype
            checksummed(sub, name, t.numpy())


def check_resumable(path: Path, header: RunHeader) -> None:
    """Refuse to resume ``path`` unless it was made by a run of the same config and checkpoint."""
    fix = RESUME_FIX
    # either version: a file of another grid than this run's is told by its config and shape
    versions = (SCHEMA_VERSION_PLANE, SCHEMA_VERSION)
    attrs, shape = existing_file(path, SCHEMA, versions, "landscape surface", _grid_of)
    old = ComputeConfig.from_yaml(_text(attrs["config"]))
    diff = first_difference(old.value_fingerprint(), header.config.value_fingerprint())
    if diff is not None:
        key, was, now = diff
        raise SurfaceFileError(
            f"{str(path)!r} was made with a different config ({key}: {was!r} there, {now!r} now); {fix}"
        )
    # the weights are compared by their hash when the caller has loaded them (compute), else by
    # the checkpoint file's hash alone (sweep status, which loads no model)
    old_weights = json.loads(_text(attrs.get("weights_sha256", "null")))
    other_file = _text(attrs.get("checkpoint_sha256", "")) != header.checkpoint_sha256
    if other_file or (
        "weights_sha256" in header.extra and old_weights != header.extra["weights_sha256"]
    ):
        raise SurfaceFileError(
            f"{str(path)!r} was made from other weights (checkpoint sha256 differs); {fix}"
        )
    old_data = _data_sha256(attrs.get("data"))
    new_data = _data_sha256(header.extra.get("data"))
    if old_data and new_data and old_data != new_data:  # same spec, other samples (or objects)
        raise SurfaceFileError(
            f"{str(path)!r} was made from other data (the samples' sha256 differs); {fix}"
        )
    if shape != header.shape:
        raise SurfaceFileError(
            f"{str(path)!r} has grid shape {shape}, this run {header.shape}; {fix}"
        )


def _grid_of(f: h5py.File) -> tuple[int, ...] | None:
    """The grid's shape of one of our files, once ``check_surface`` has passed it (None for a
    file of another kind, which ``existing_file`` refuses)."""
    if _text(f.attrs.get("schema", "")) != SCHEMA:
        return None
    check_surface(f, f.filename)
    return tuple(f["done"].shape)


def _data_sha256(described: Any) -> str | None:
    """The samples' content hash in a data description (a dict, or its JSON text)."""
    value = _parsed(described)
    return value.get("data_sha256") if isinstance(value, dict) else None


def read_surface(path: str | Path) -> SurfaceValues:
    """Read a surface file: ours (schema v1 or v2) or one of Li et al.'s reference surface
    files."""
    path = check_input(path, "surface file")
    with _checked(path) as (f, kind):
        return _read_ours(f, path) if kind == "landscape" else _read_reference(f, path)


@contextlib.contextmanager
def _checked(path: Path) -> Iterator[tuple[h5py.File, str]]:
    """``path`` open for reading once ``check_surface`` has passed it, with its format; a
    damaged block or an unreadable file is a SurfaceFileError."""
    try:
        with open_for_reading(path) as f:
            yield f, check_surface(f, path)
    except DamagedData as exc:
        raise SurfaceFileError(
            f"{str(path)!r} is damaged: a block of {exc.name} fails its checksum (the file was "
            "changed on disk or in transfer); restore a copy, or recompute it with --overwrite"
        ) from None
    except OSError as exc:
        raise SurfaceFileError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None


def _read_ours(f: h5py.File, path: Path | MemoryFile) -> SurfaceValues:
    names = coordinate_names(len(f["done"].shape))
    x, y, *beyond = [read_values(f[n]) for n in names] + ([None] if len(names) == 1 else [])
    values = {
        k: read_values(f[k]) for k in f if quantities.is_value(k) and isinstance(f[k], h5py.Dataset)
    }
    attrs = {k: _decode(v) for k, v in f.attrs.items()}
    dir_attrs = (
        {k: _decode(v) for k, v in f["directions"].attrs.items()} if "directions" in f else {}
    )
    trajectory = _read_arrays(f["trajectory"]) if "trajectory" in f else None
    landmarks = _read_arrays(f["landmarks"]) if "landmarks" in f else None
    analysis = _read_analysis(f["analysis"]) if "analysis" in f else {}
    repeats = [_read_repeat(repeat_group(f, r)) for r in range(1, repeat_count(f))]
    file = result_file(path)
    return SurfaceValues(
        file.label,
        x,
        y,
        values,
        read_values(f["done"]),
        attrs,
        dir_attrs,
        "landscape",
        [],
        trajectory,
        landmarks,
        stored_analysis=analysis,
        repeats=repeats,
        image=file.image,
        beyond=tuple(beyond),
    )


def read_directions(path: str | Path, group: str = "directions") -> list[dict[str, torch.Tensor]]:
    """The directions of one of our surface files: ``[d1]``, ``[d1, d2]`` or ``[d1, ..., dk]``,
    each a dict tensor name → CPU tensor (``group``: ``repeats/<r>/directions`` for a repeat)."""
    path = check_input(path, "surface file")
    with _checked(path) as (f, _):
        if group not in f:
            return []
        return [
            {
                name: torch.from_numpy(np.array(read_values(ds)))
                for name, ds in f[group][axis].items()
            }
            for axis in AXIS_NAMES
            if axis in f[group]
        ]


def _read_repeat(group: h5py.Group) -> Repeat:
    values = {k: read_values(group[k]) for k in group if quantities.is_value(k)}
    dir_attrs = {k: _decode(v) for k, v in group["directions"].attrs.items()}
    return Repeat(int(group.attrs["seed"]), values, read_values(group["done"]), dir_attrs)


def _read_arrays(group: h5py.Group) -> dict[str, np.ndarray]:
    out = {}
    for key in group:
        ds = group[key]
        out[key] = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else read_values(ds)
    return out


def _read_analysis(group: h5py.Group) -> dict[str, Any]:
    """The stored analysis by quantity: reserved byte datasets (NUL-padded JSON) or, in files of
    earlier versions, JSON attributes. One not (yet) written, damaged, not valid JSON or not a
    JSON object is left out: ``info`` then computes it from the values."""
    texts = {key: _text(value) for key, value in group.attrs.items()}
    for key, ds in group.items():
        try:
            texts[key] = bytes(ds[()]).rstrip(b"\0").decode()
        except (OSError, UnicodeDecodeError):
            continue
    out = {}
    for key, text in texts.items():
        try:
            value = json.loads(text)  # nesting bounded by check_surface
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):  # an analysis is an object; anything else is left out
            out[key] = value
    return out


def write_analysis(path: str | Path | MemoryFile, texts: dict[str, str]) -> None:
    """Write ``/analysis`` (one JSON text per quantity) into a closed surface file.

    Files of this version reserve the space when they are created: the text is written into it
    in place, with no change of HDF5 metadata and no new disk space (a kill mid-write leaves a
    text that does not parse, which readers leave out). A text too long for it is not stored
    (``info`` computes it anew). Files of earlier versions have no such space: adding
    attributes changes metadata, which a kill could leave half-written, so that file is copied,
    changed under a temporary name and renamed into place (a symbolic link: its file). A
    ``MemoryFile`` is of this version: written in place.
    """
    path = result_file(path).resolved()
    with h5py.File(path, "r+") as f:
        group = f.get("analysis")
        if group is not None and all(isinstance(group.get(q), h5py.Dataset) for q in texts):
            for quantity, text in texts.items():
                _write_text(group[quantity], text)
            return
    with replaced_atomically(path, "analysis") as tmp:
        shutil.copy2(path, tmp)
        with h5py.File(tmp, "r+") as f:
            group = f.require_group("analysis")
            for key in list(group.attrs):
                del group.attrs[key]
            for quantity, text in texts.items():
                group.attrs[quantity] = text


def _write_text(ds: h5py.Dataset, text: str) -> None:
    raw = text.encode()
    if len(raw) > ds.shape[0]:
        return  # not stored: computed anew when read
    buf = np.zeros(ds.shape[0], dtype=np.uint8)
    buf[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
    ds[...] = buf


def _read_reference(f: h5py.File, path: Path) -> SurfaceValues:
    """Li et al.'s files: -1 means not computed, accuracy in percent, 2-D in meshgrid(x, y) order."""
    x = np.asarray(f["xcoordinates"][()], dtype=np.float64)
    y = np.asarray(f["ycoordinates"][()], dtype=np.float64) if "ycoordinates" in f else None
    notes = ["read from a Li et al. (2018) reference file: -1 read as not computed"]
    values: dict[str, np.ndarray] = {}
    for key in f:
        if quantities.kind_of(key) not in ("loss", "acc"):
            continue
        arr = np.asarray(f[key][()], dtype=np.float64)
        arr = np.where(arr == -1, np.nan, arr)
        if y is not None:
            # filled in meshgrid(x, y) order, shape (ny, nx): flat element i*nx + j is the point
            # (x[j], y[i]) whatever shape it is declared; ours is (x[i], y[j])
            arr = arr.reshape(len(y), len(x)).T
        if quantities.kind_of(key) == "acc":
            arr = arr / 100.0
        values[key] = arr
    if y is not None:
        notes.append("2-D arrays transposed from meshgrid(x, y) order to (x, y) order")
    if any(quantities.kind_of(k) == "acc" for k in values):
        notes.append("accuracy converted from percent to a fraction")
    losses = [v for k, v in values.items() if quantities.kind_of(k) == "loss"]
    done = np.all([np.isfinite(v) for v in losses], axis=0)
    attrs: dict[str, Any] = {"schema": "li2018", "dims": 1 if y is None else 2}
    if "dir_file" in f:
        attrs["dir_file"] = _text(f["dir_file"][()])
    return SurfaceValues(
        str(path), x, y, values, done, attrs, {"method": "li2018"}, "li2018", notes
    )


def stored_config(surface: SurfaceValues) -> dict[str, Any] | None:
    """The resolved config a landscape surface was made with, as a dict (None for Li's files)."""
    text = surface.attrs.get("config")
    return load_yaml(text) if isinstance(text, str) else None
