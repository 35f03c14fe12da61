"""The curvature file (HDF5, schema ``landscape.curvature`` version 1): create, resume, write, read.

- attrs on ``/``: ``schema``, ``schema_version``, ``landscape_version``, ``torch_version``,
  ``created``, ``dims``; the settings a resume must match (``SETTINGS``: ``samples``, ``tol``,
  ``ignore``, ``seed``, ``weights_sha256``, ``directions_sha256``, ``source_fingerprint``); and
  provenance: ``source`` (the surface file), ``source_created``, ``source_config``,
  ``checkpoint_sha256``, ``data`` (JSON), ``moved_parameters``, ``device``.
- ``/xcoordinates``, ``/ycoordinates``: the curvature grid (float64); no ``ycoordinates`` in 1-D.
- ``/lambda_min``, ``/lambda_max``: the extreme eigenvalues of the Hessian at each point
  (float64, NaN where not computed); ``/ratio``: ``abs(lambda_min / lambda_max)`` (Li et al. 2018,
  Fig. 7); ``/loss``: the mean loss over the Hessian samples at each point.
- ``/hvps``: Hessian-vector products spent on each point (int64); ``/done``: bool, a point is
  done only once its values are written.

As in surface files, ``value[i, j]`` is the point ``(x[i], y[j])``. Every point is flushed as it
is written, values before the flag that vouches for them, so a killed run loses one point.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from landscape._files import Output, check_input, os_error_text, result_file
from landscape.errors import SurfaceFileError
from landscape.store.codec import decode as _plain
from landscape.store.codec import encode as _attr
from landscape.store.core import (
    RESUME_FIX,
    DamagedData,
    RunFile,
    checksummed,
    create_atomically,
    existing_file,
    first_difference,
    has_schema,
    open_for_reading,
    read_values,
)
from landscape.store.values import OnGrid
from landscape.version import __version__

SCHEMA = "landscape.curvature"
SCHEMA_VERSION = 1
MAPS = ("ratio", "lambda_min", "lambda_max", "loss")  # float64 arrays of the grid's shape
# attributes that determine the values: a run resumes a file only if all of them match
SETTINGS = (
    "samples",
    "tol",
    "ignore",
    "seed",
    "weights_sha256",
    "directions_sha256",
    "source_fingerprint",
)
_FIX = RESUME_FIX


@dataclass
class PointCurvature:
    """The curvature at one point: the extreme eigenvalues of the Hessian there."""

    lambda_min: float
    lambda_max: float
    loss: float  # mean loss over the Hessian samples
    hvps: int  # Hessian-vector products spent

    @property
    def ratio(self) -> float:
        """``|λmin / λmax|``: ~0 where the surface is convex, large with negative curvature."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.abs(np.float64(self.lambda_min) / np.float64(self.lambda_max)))


@dataclass
class CurvatureHeader:
    """What a run writes once, before any point: its grid, settings and provenance."""

    x: np.ndarray
    y: np.ndarray | None
    settings: dict[str, Any]  # keys SETTINGS; a dict value is stored as JSON
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.x),) if self.y is None else (len(self.x), len(self.y))


@dataclass
class CurvatureMap(OnGrid):
    """A curvature file read back: ``maps[q][i, j]`` is quantity ``q`` at ``(x[i], y[j])``."""

    path: str
    x: np.ndarray
    y: np.ndarray | None
    maps: dict[str, np.ndarray]  # ratio, lambda_min, lambda_max, loss
    hvps: np.ndarray
    done: np.ndarray
    attrs: dict[str, Any]

    @property
    def failed(self) -> int:
        """Points done whose eigenvalues are NaN (no convergence, or a non-finite loss)."""
        return int(np.sum(self.done & ~np.isfinite(self.maps["lambda_max"])))

    def __repr__(self) -> str:
        """A few lines, as for a surface: the grid, what is computed, the ratio's range
        (``.maps`` holds the arrays)."""
        grid = " x ".join(str(n) for n in self.shape)
        lines = [
            f"<landscape curvature map {self.path}>",
            f"grid {grid}: {int(self.done.sum())} of {self.done.size} points computed, "
            f"{self.failed} failed",
        ]
        ratio = self.maps["ratio"][self.done & np.isfinite(self.maps["ratio"])]
        if ratio.size:
            lines.append(f"|λmin/λmax|: {ratio.min():.3g} to {ratio.max():.3g}")
        return "\n".join(lines)


class CurvatureStore(RunFile):
    """An open curvature file that a run writes points into."""

    def __init__(self, path: Path, handle: h5py.File) -> None:
        super().__init__(path, handle)
        self.shape = tuple(handle["done"].shape)

    @classmethod
    def open_for_run(
        cls, path: str | Path | Output, header: CurvatureHeader, *, overwrite: bool = False
    ) -> CurvatureStore:
        """Create the file, or reopen one of the same settings to resume its missing points.

        ``path`` is a file name or an ``Output`` the caller holds. An existing file of other
        settings is refused unless ``overwrite``; then it is replaced only once the new file is
        complete (``Output``).
        """
        return cls._open_run(
            path,
            overwrite,
            lambda p: check_resumable(p, header),
            lambda p: create_atomically(p, lambda f: _write_header(f, header)),
        )

    def pending(self) -> np.ndarray:
        """Flat (row-major) indices of the points not done yet, in order."""
        return np.flatnonzero(~self._f["done"][()].reshape(-1))

    def write_point(self, flat: int, point: PointCurvature) -> None:
        """Write one point's values, flush, then mark it done and flush again."""
        where = np.unravel_index(int(flat), self.shape)
        values = {
            "ratio": point.ratio,
            "lambda_min": point.lambda_min,
            "lambda_max": point.lambda_max,
            "loss": point.loss,
        }
        try:
            for name, value in values.items():
                self._f[name][where] = value
            self._f["hvps"][where] = point.hvps
            self._f.flush()  # values reach the disk before the flag that vouches for them
            self._f["done"][where] = True
            self._f.flush()
        except OSError as exc:
            raise SurfaceFileError(
                f"cannot write to {str(self.path)!r} ({os_error_text(exc)}); the points written "
                "before are kept: fix that and rerun the same command to resume"
            ) from None

    def failed_count(self) -> int:
        done = self._f["done"][()]
        return int(np.sum(done & ~np.isfinite(self._f["lambda_max"][()])))


def _write_header(f: h5py.File, h: CurvatureHeader) -> None:
    attrs: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "landscape_version": __version__,
        "torch_version": str(torch.__version__),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dims": 1 if h.y is None else 2,
    }
    for key, value in {**h.provenance, **h.settings}.items():
        attrs[key] = _attr(value)
    f.attrs.update(attrs)
    checksummed(f, "xcoordinates", np.asarray(h.x, dtype=np.float64))
    if h.y is not None:
        checksummed(f, "ycoordinates", np.asarray(h.y, dtype=np.float64))
    # data= allocates the storage now, so later point writes change no metadata
    for name in MAPS:
        checksummed(f, name, np.full(h.shape, np.nan, dtype=np.float64))
    checksummed(f, "hvps", np.zeros(h.shape, dtype=np.int64))
    checksummed(f, "done", np.zeros(h.shape, dtype=bool))


# --- resuming ---------------------------------------------------------------------------------


def check_resumable(path: Path, header: CurvatureHeader) -> None:
    """Refuse to resume ``path`` unless it is a curvature file of the same grid and settings."""

    def axes(f: h5py.File) -> tuple[np.ndarray | None, np.ndarray | None]:
        return tuple(f[k][()] if k in f else None for k in ("xcoordinates", "ycoordinates"))

    raw, (x, y) = existing_file(path, SCHEMA, SCHEMA_VERSION, "curvature", axes)
    attrs = {k: _plain(v) for k, v in raw.items()}
    if not _same_axis(x, header.x) or not _same_axis(y, header.y):
        raise SurfaceFileError(f"{str(path)!r} has another grid than this run; {_FIX}")
    for key in SETTINGS:
        was, now = attrs.get(key), _attr(header.settings[key])
        if was == now:
            continue
        if isinstance(header.settings[key], dict):  # name the first differing key inside
            diff = first_difference(json.loads(str(was or "{}")), header.settings[key])
            if diff is not None:
                key, was, now = f"{key}.{diff[0]}", diff[1], diff[2]
        raise SurfaceFileError(
            f"{str(path)!r} was made with other settings ({key}: {was!r} there, {now!r} now); {_FIX}"
        )


def _same_axis(stored: np.ndarray | None, new: np.ndarray | None) -> bool:
    if stored is None or new is None:
        return stored is None and new is None
    return stored.shape == new.shape and bool(np.all(stored == new))


# --- reading ----------------------------------------------------------------------------------


def is_curvature_file(path: str | Path) -> bool:
    """True when ``path`` is a readable HDF5 file of the curvature schema (False otherwise)."""
    return has_schema(path, SCHEMA)


def read_curvature(path: str | Path) -> CurvatureMap:
    """Read a curvature file (also while a run is writing it)."""
    path = check_input(path, "curvature file")
    try:
        with open_for_reading(path) as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            if attrs.get("schema") != SCHEMA:
                raise SurfaceFileError(f"{str(path)!r} is not a curvature file")
            if int(attrs.get("schema_version", -1)) > SCHEMA_VERSION:
                raise SurfaceFileError(
                    f"{str(path)!r} has curvature schema version {attrs['schema_version']}; this "
                    f"landscape reads up to {SCHEMA_VERSION}, upgrade landscape"
                )
            x = read_values(f["xcoordinates"])
            y = read_values(f["ycoordinates"]) if "ycoordinates" in f else None
            maps = {name: read_values(f[name]) for name in MAPS}
            hvps, done = read_values(f["hvps"]), read_values(f["done"])
            return CurvatureMap(result_file(path).label, x, y, maps, hvps, done, attrs)
    except DamagedData as exc:
        raise SurfaceFileError(
            f"{str(path)!r} is damaged: a block of {exc.name} fails its checksum; restore a "
            "copy, or recompute it with --overwrite"
        ) from None
    except OSError as exc:
        raise SurfaceFileError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
