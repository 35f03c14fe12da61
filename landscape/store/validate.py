"""The one structural check of a surface file, run by every reader before it reads a value.

A surface file may come from anywhere (a colleague, a download, a crafted attack), so its
structure is data to check, not to trust: ``check_surface`` accepts our schema
(``landscape.surface``) or a Li et al. reference file (no ``schema`` attribute, their layout),
and raises ``SurfaceFileError`` naming the dataset or attribute at fault and the fix for
anything else. What it checks, and why:

- the schema: known, or absent on a file in Li et al.'s layout (an unknown one read as theirs
  would divide accuracies by 100 and read -1 as "not computed");
- the axes: x (and y) in version 1; in version 2 (an n-D grid) x, y, z and up to
  ``MAX_AXES`` in all, named by ``AXIS_NAMES``, each present only after the one before;
- the coordinates: 1-D real numbers, finite, strictly increasing, at most ``MAX_COORDINATE``
  in size (1e308 overflows every spacing and fit computed from them);
- every per-point quantity (``<split>_loss``, ...): a real numeric dataset of the grid's shape;
  ``done`` (ours): a bool dataset of the grid's shape; the same for each ``--repeat`` group;
- the ``config`` attribute (ours): YAML text of a mapping;
- every JSON text (attributes, ``/analysis``): at most ``MAX_TEXT_BYTES``, nested at most
  ``MAX_JSON_DEPTH`` deep (Python's parser recurses once per level);
- a seed-kept ``/directions`` group: its ``fingerprint`` is one ``[Σd, Σd²]`` pair of finite
  numbers per direction, which regenerated directions are compared with.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from landscape import quantities
from landscape.config import AXIS_NAMES, MAX_AXES, MAX_COORDINATE, load_yaml
from landscape.errors import ConfigError, SurfaceFileError
from landscape.grid import BYTES_PER_POINT, available_memory
from landscape.store.codec import decode, text
from landscape.store.core import read_values

SCHEMA = "landscape.surface"
SCHEMA_VERSION = 2  # the version this landscape writes (n-D grids) and reads up to
SCHEMA_VERSION_PLANE = 1  # 1-D and 2-D grids are written as version 1, as they always were
MAX_JSON_DEPTH = 64  # our texts nest 4 deep; Python's json recurses once per level
MAX_TEXT_BYTES = 1 << 20  # an attribute's or analysis' text; ours are a few KiB
MAX_REPEATS = 10_000
FIX = "restore a copy of the file, or recompute it with landscape compute --overwrite"
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# attributes readers interpret, by the kind they must be: text, an integer, a real number, or
# JSON text of a mapping (others are shown as they are)
ROOT_ATTRS = {
    "schema": "text", "checkpoint_sha256": "text", "created": "text", "direction": "text",
    "landscape_version": "text", "torch_version": "text", "schema_version": "integer",
    "dims": "integer", "seed": "integer", "repeats": "integer", "data": "mapping",
}  # fmt: skip
DIRECTION_ATTRS = {
    "method": "text", "stored": "text", "cosine": "number",
    **{f"{kind}_{axis}": "number" for kind in ("norm", "cos_theta") for axis in AXIS_NAMES},
}  # fmt: skip


def check_surface(f: h5py.File, path: str | Path) -> str:
    """Check ``f``'s structure; its format (``landscape`` or ``li2018``), else SurfaceFileError."""
    where = str(path)
    schema = f.attrs.get("schema")
    if schema is None:
        _check_reference(f, where)
        return "li2018"
    if text(schema) != SCHEMA:
        raise SurfaceFileError(
            f"{where!r} has schema {_short(text(schema))!r}, which landscape does not know (it "
            f"reads {SCHEMA!r} files and Li et al.'s files, which have no schema); {FIX}"
        )
    _check_ours(f, where)
    return "landscape"


def _bad(where: str, name: str, problem: str) -> SurfaceFileError:
    return SurfaceFileError(f"{where!r}: {name} {problem}; {FIX}")


def _short(value: str, most: int = 60) -> str:
    return value if len(value) <= most else value[:most] + "..."


# --- ours ----------------------------------------------------------------------------------------


def schema_version_for(dims: int) -> int:
    """The version a file of a ``dims``-axis grid is written as: 1 for a line or a plane (as
    every landscape wrote them, for readers that know only version 1), 2 for n-D."""
    return SCHEMA_VERSION_PLANE if dims <= 2 else SCHEMA_VERSION


def coordinate_names(dims: int) -> list[str]:
    """The coordinate datasets of a ``dims``-axis grid: ``xcoordinates``, ``ycoordinates``, ..."""
    return [f"{axis}coordinates" for axis in AXIS_NAMES[:dims]]


def _check_ours(f: h5py.File, where: str) -> None:
    version = _check_version(f, where)
    shape = _grid_shape(f, where, version)
    dims = f.attrs.get("dims")
    if dims is not None and _integer(dims) != len(shape):
        raise _bad(where, "attribute dims", f"is {decode(dims)!r} but the grid has {len(shape)}")
    _check_config(f, where)
    _check_attrs(f.attrs, where, "attribute", ROOT_ATTRS)
    repeats = _integer(f.attrs.get("repeats", 1))
    if repeats is None or not 1 <= repeats <= MAX_REPEATS:
        raise _bad(where, "attribute repeats", f"is {decode(f.attrs['repeats'])!r}")
    for r in range(repeats):
        name = "repeats/" + str(r)
        group = f if r == 0 else _member(f, name, h5py.Group, where)
        prefix = "" if r == 0 else name + "/"
        if r and _integer(group.attrs.get("seed")) is None:
            raise _bad(where, f"{name} attribute seed", "is missing or not an integer")
        _check_points(group, shape, where, prefix)
        _check_directions(group, len(shape), where, prefix)
    _check_analysis(f, where)
    for name in ("trajectory", "landmarks"):
        if name in f:
            _check_arrays(_member(f, name, h5py.Group, where), where, name)


def _check_version(f: h5py.File, where: str) -> int:
    version = _integer(f.attrs.get("schema_version"))
    if version is None or version < 1:
        raise _bad(where, "attribute schema_version", "is missing or not a positive integer")
    if version > SCHEMA_VERSION:
        raise SurfaceFileError(
            f"{where!r} has schema version {version}; this landscape reads up to "
            f"{SCHEMA_VERSION}, upgrade landscape"
        )
    return version


def _grid_shape(f: h5py.File, where: str, version: int = SCHEMA_VERSION_PLANE) -> tuple[int, ...]:
    """The grid's shape from the checked coordinates: ``(nx,)`` or ``(nx, ny)`` in version 1
    (and Li et al.'s files); ``(nx, ny, nz, ...)``, 3 to ``MAX_AXES`` axes, in version 2."""
    most = 2 if version == SCHEMA_VERSION_PLANE else MAX_AXES
    names = []
    for name in coordinate_names(MAX_AXES):
        if name not in f:
            break
        names.append(name)
    stray = [n for n in coordinate_names(MAX_AXES)[len(names) :] if n in f]
    if not names:
        raise _bad(where, "xcoordinates", "is missing")
    if stray:
        raise _bad(where, stray[0], f"is there without {coordinate_names(len(names) + 1)[-1]}")
    if len(names) > most:
        raise _bad(where, names[most], f"does not belong in a version-{version} file (1-D or 2-D)")
    if version > SCHEMA_VERSION_PLANE and len(names) < 3:
        raise _bad(where, "zcoordinates", f"is missing: a version-{version} file is 3-D or more")
    _check_fits([_member(f, n, h5py.Dataset, where) for n in names], where)
    return tuple(len(_coordinates(f, n, where)) for n in names)


def _check_fits(axes: list[h5py.Dataset], where: str) -> None:
    """Refuse, from the datasets' headers, a grid whose values would not fit in memory: a
    crafted file declaring 10^9 coordinates (a few KB on disk, its chunks never written) was
    read whole, 16 GB, before any check on its length."""
    points = math.prod(int(ds.size) for ds in axes)
    have = available_memory()
    if have is not None and points * BYTES_PER_POINT > have:
        raise _bad(
            where,
            "the coordinates",
            f"declare a grid of {points:,} points, more than the {have / 2**30:.1f} GiB of "
            "memory available can hold",
        )


def _coordinates(f: h5py.File, name: str, where: str) -> np.ndarray:
    ds = _member(f, name, h5py.Dataset, where)
    if ds.ndim != 1 or ds.shape[0] < 1 or ds.dtype.kind not in "fiu":
        raise _bad(where, name, f"must be a 1-D array of numbers, not {_kind(ds)}")
    values = np.asarray(read_values(ds), dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.max(np.abs(values)) > MAX_COORDINATE:
        raise _bad(
            where,
            name,
            f"holds NaN, infinite or huge values (|x| > {MAX_COORDINATE:g} or not finite)",
        )
    if np.any(np.diff(values) <= 0):
        raise _bad(where, name, "is not strictly increasing")
    return values


def _check_points(group: h5py.Group, shape: tuple[int, ...], where: str, prefix: str) -> None:
    """Every quantity a real numeric dataset of the grid's shape, at least one loss; ``done``
    a bool dataset of that shape."""
    names = [k for k in group if quantities.is_value(k)]
    if not any(quantities.kind_of(k) == "loss" for k in names):
        raise _bad(where, prefix + "<split>_loss", "is missing: the file holds no loss values")
    for name in names:
        ds = _member(group, name, h5py.Dataset, where, prefix)
        if ds.dtype.kind not in "fiu" or ds.shape != shape:
            raise _bad(
                where,
                prefix + name,
                f"must be numbers of the grid's shape {shape}, not {_kind(ds)}",
            )
    ds = _member(group, "done", h5py.Dataset, where, prefix)
    if ds.dtype.kind != "b" or ds.shape != shape:
        raise _bad(
            where, prefix + "done", f"must be bools of the grid's shape {shape}, not {_kind(ds)}"
        )


def _check_config(f: h5py.File, where: str) -> None:
    raw = decode(f.attrs.get("config"))
    if not isinstance(raw, str) or len(raw) > MAX_TEXT_BYTES:
        raise _bad(where, "attribute config", "is missing or not YAML text")
    try:
        cfg = load_yaml(raw)
    except (yaml.YAMLError, ConfigError, RecursionError, ValueError):
        cfg = None
    if not isinstance(cfg, dict):
        raise _bad(where, "attribute config", "is not a YAML mapping (model:, data:, ...)")


def _check_directions(group: h5py.Group, dims: int, where: str, prefix: str) -> None:
    if "directions" not in group:
        return
    dirs = _member(group, "directions", h5py.Group, where, prefix)
    name = prefix + "directions"
    _check_attrs(dirs.attrs, where, f"{name} attribute", DIRECTION_ATTRS)
    if text(dirs.attrs.get("stored", "full")) == "seed":
        _check_fingerprint(dirs.attrs.get("fingerprint"), dims, where, name)
        return
    for axis in AXIS_NAMES[:dims]:
        if axis not in dirs:
            continue
        for key, ds in _member(dirs, axis, h5py.Group, where, name + "/").items():
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fiu":
                raise _bad(
                    where, f"{name}/{axis}/{key}", f"must be an array of numbers, not {_kind(ds)}"
                )


def _check_fingerprint(raw: Any, dims: int, where: str, name: str) -> None:
    """``[[Σd, Σd²], ...]``: one pair of finite numbers per direction."""
    value = _json(raw)
    try:
        pairs = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        pairs = np.zeros(0)
    if pairs.shape != (dims, 2) or not np.all(np.isfinite(pairs)):
        raise _bad(
            where,
            f"{name} attribute fingerprint",
            f"must be {dims} pair(s) of finite numbers [sum, sum of squares], one per direction",
        )


def _check_analysis(f: h5py.File, where: str) -> None:
    if "analysis" not in f:
        return
    group = _member(f, "analysis", h5py.Group, where)
    _check_attrs(group.attrs, where, "analysis attribute", {})
    for key, ds in group.items():
        name = f"analysis/{key}"
        if not isinstance(ds, h5py.Dataset) or ds.dtype != np.uint8 or ds.ndim != 1:
            raise _bad(where, name, f"must be bytes of JSON text, not {_kind(ds)}")
        if ds.shape[0] > MAX_TEXT_BYTES:
            raise _bad(where, name, f"holds more than {MAX_TEXT_BYTES} bytes")
        try:
            raw = bytes(read_values(ds)).rstrip(b"\0").decode()
        except (OSError, UnicodeDecodeError):
            continue  # damaged or half-written: readers leave it out and compute it anew
        _check_depth(raw, where, name)


def _check_arrays(group: h5py.Group, where: str, prefix: str) -> None:
    for key, ds in group.items():
        ok = isinstance(ds, h5py.Dataset) and (
            ds.dtype.kind in "fiu" or h5py.check_string_dtype(ds.dtype) is not None
        )
        if not ok:
            raise _bad(where, f"{prefix}/{key}", f"must be numbers or text, not {_kind(ds)}")


# --- Li et al.'s files ---------------------------------------------------------------------------


def _check_reference(f: h5py.File, where: str) -> None:
    """Li et al.'s layout: coordinates, ``<split>_loss``/``_acc``, maybe ``dir_file``; none of
    our datasets (one of our files stripped of its schema is not theirs)."""
    ours = [k for k in ("done", "directions", "analysis") if k in f] + (
        ["config"] if "config" in f.attrs else []
    )
    if ours or "xcoordinates" not in f:
        found = f"landscape's {ours[0]}" if ours else "no xcoordinates"
        raise SurfaceFileError(
            f"{where!r} is neither a landscape surface file nor a Li et al. surface file (no "
            f"schema attribute {SCHEMA!r}, and {found}); {FIX}"
        )
    shape = _grid_shape(f, where)
    if "dir_file" in f:
        _member(f, "dir_file", h5py.Dataset, where)
    names = [k for k in f if quantities.kind_of(k) in ("loss", "acc")]
    if not any(quantities.kind_of(k) == "loss" for k in names):
        raise _bad(where, "<split>_loss", "is missing: the file holds no loss values")
    for name in names:
        ds = _member(f, name, h5py.Dataset, where)
        if ds.dtype.kind not in "fiu" or ds.shape != shape:
            raise _bad(where, name, f"must be numbers of the grid's shape {shape}, not {_kind(ds)}")


# --- parts ---------------------------------------------------------------------------------------


def _member(group: h5py.Group, name: str, kind: type, where: str, prefix: str = "") -> Any:
    """``group[name]``, which must exist and be a ``kind`` (Dataset or Group)."""
    try:
        found = group.get(name)
    except (KeyError, OSError, ValueError):  # e.g. a dangling external or soft link
        found = None
    noun = "dataset" if kind is h5py.Dataset else "group"
    if not isinstance(found, kind):
        problem = "is missing" if found is None else f"is not a {noun}"
        raise _bad(where, prefix + name, problem)
    return found


def _kind(obj: Any) -> str:
    """What a member is, for a message: ``float64 (3, 3)``, ``a group``."""
    if not isinstance(obj, h5py.Dataset):
        return "a group"
    return f"{obj.dtype} {tuple(obj.shape)}"


def _integer(value: Any) -> int | None:
    """An attribute that is an integer (a numpy or Python int, not bool), else None."""
    value = decode(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _check_attrs(
    attrs: h5py.AttributeManager, where: str, what: str, kinds: dict[str, str]
) -> None:
    """Every text attribute bounded in size and in JSON nesting; those named in ``kinds`` of
    their kind."""
    for key in attrs:
        value = decode(attrs[key])
        if isinstance(value, str):
            _check_depth(value, where, f"{what} {key}")
        kind = kinds.get(key)
        if kind is not None and not _is_kind(value, kind):
            raise _bad(
                where, f"{what} {key}", f"must be {_KIND_WORDS[kind]}, not {_short(repr(value))}"
            )


_KIND_WORDS = {
    "text": "text",
    "integer": "an integer",
    "number": "a number",
    "mapping": "JSON text of a mapping",
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "integer":
        return _integer(value) is not None
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(_json(value), dict)


def _check_depth(raw: str, where: str, name: str) -> None:
    if len(raw) > MAX_TEXT_BYTES:
        raise _bad(where, name, f"is longer than {MAX_TEXT_BYTES} characters")
    if _nests_deeper(raw, MAX_JSON_DEPTH):
        raise _bad(where, name, f"is JSON nested more than {MAX_JSON_DEPTH} levels deep")


def _nests_deeper(raw: str, most: int) -> bool:
    """Whether ``[`` and ``{`` nest more than ``most`` deep in a JSON text (brackets inside
    strings not counted), found without parsing it."""
    if raw.count("[") + raw.count("{") <= most:  # too few brackets to: no scan
        return False
    depth = 0
    for char in _JSON_STRING.sub("", raw):
        if char in "[{":
            depth += 1
            if depth > most:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _json(raw: Any) -> Any:
    """An attribute's JSON text parsed (it was checked for depth); None when it is not JSON."""
    value = decode(raw)
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None
