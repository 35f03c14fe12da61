"""The spectrum file (HDF5, schema ``landscape.spectrum`` version 1): write once, read.

- attrs on ``/``: ``schema``, ``schema_version``, ``landscape_version``, ``created``;
  ``settings`` (JSON: the run's ``SpectrumSettings``), ``provenance`` (JSON: model, data and its
  sha256, weights sha256, loss, device, samples, parameters, tensors, the gradient-graph plan,
  Hessian-vector products, seconds, versions).
- ``/eigenvalues`` (float64, k) with attr ``ends`` (JSON: ``top``/``bottom`` per value: top ones
  first, descending, then bottom ones, ascending); ``/eigenvectors/<tensor name>`` (float32,
  ``(k, *shape)``): row j of every tensor together is the unit eigenvector of eigenvalue j.
- ``/trace`` (group, absent without a trace): attrs ``value``, ``se``, ``method``, ``products``.
- ``/density`` (group, absent without): ``grid``, ``values`` (float64), ``nodes``, ``weights``
  (float64, ``(runs, m)``: the Lanczos quadratures it came from), attr ``sigma2`` (the Gaussians'
  variance).
- attr ``per_layer`` (JSON): per module, its tensors, parameters, top eigenvalues and trace.

Written whole or not at all (``create_atomically``), under the output's lock; an existing file is
replaced only with ``overwrite``, and a symbolic link, FIFO or device at the path is refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landscape._files import Output, check_input
from landscape.errors import ConfigError, SurfaceFileError
from landscape.store.codec import encode, parsed, text
from landscape.store.core import checksummed, create_atomically, has_schema, read_values
from landscape.version import __version__

SCHEMA = "landscape.spectrum"
SCHEMA_VERSION = 1


@dataclass
class SpectrumData:
    """A Hessian spectrum as numbers: what the file holds, in memory."""

    eigenvalues: np.ndarray
    ends: list[str]  # "top" or "bottom", per eigenvalue
    eigenvectors: list[dict[str, Any]]  # one dict tensor name -> tensor (or array) per value
    trace: dict[str, Any] | None = None  # value, se, method, products
    density: dict[str, Any] | None = None  # grid, values, nodes, weights, sigma2
    per_layer: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # the file it was read from or saved to

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the spectrum file; an existing file is replaced only with ``overwrite``."""
        with contextlib.closing(Output(path, overwrite)) as output:
            if output.final.exists() and not overwrite:
                raise ConfigError(
                    f"{str(output.final)!r} exists; choose another --out, or pass --overwrite "
                    "to replace it"
                )
            create_atomically(output.final, self._write)
        self.path = str(output.final)
        return output.final

    @classmethod
    def read(cls, path: str | Path) -> Any:
        """A spectrum file written by ``save``; SurfaceFileError for any other file."""
        where = check_input(path, "spectrum file")
        try:
            with h5py.File(where, "r") as f:
                if text(f.attrs.get("schema", "")) != SCHEMA:
                    raise SurfaceFileError(f"{str(path)!r} is not a spectrum file")
                if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                    raise SurfaceFileError(
                        f"{str(path)!r} has spectrum schema version "
                        f"{f.attrs.get('schema_version')}; this landscape reads {SCHEMA_VERSION}"
                    )
                return cls(**_read(f), path=str(where))
        except OSError as exc:
            raise SurfaceFileError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None

    def _write(self, f: h5py.File) -> None:
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["landscape_version"] = __version__
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for key in ("settings", "provenance", "per_layer"):
            f.attrs[key] = encode(getattr(self, key))
        ds = checksummed(f, "eigenvalues", np.asarray(self.eigenvalues, dtype=np.float64))
        ds.attrs["ends"] = encode(list(self.ends))
        vectors = f.create_group("eigenvectors")
        for name in self.eigenvectors[0] if self.eigenvectors else []:
            rows = [np.asarray(_numpy(v[name]), dtype=np.float32) for v in self.eigenvectors]
            checksummed(vectors, name, np.stack(rows))
        if self.trace is not None:
            group = f.create_group("trace")
            for key, value in self.trace.items():
                group.attrs[key] = value
        if self.density is not None:
            group = f.create_group("density")
            for key in ("grid", "values", "nodes", "weights"):
                checksummed(group, key, np.asarray(self.density[key], dtype=np.float64))
            group.attrs["sigma2"] = float(self.density["sigma2"])


def _read(f: h5py.File) -> dict[str, Any]:
    values = read_values(f["eigenvalues"])
    names = list(f["eigenvectors"])
    stacked = {k: read_values(f["eigenvectors"][k]) for k in names}
    trace = None
    if "trace" in f:
        trace = {k: parsed(v) for k, v in f["trace"].attrs.items()}
    density = None
    if "density" in f:
        group = f["density"]
        density = {k: read_values(group[k]) for k in ("grid", "values", "nodes", "weights")}
        density["sigma2"] = float(group.attrs["sigma2"])
    return {
        "eigenvalues": values,
        "ends": list(parsed(f["eigenvalues"].attrs["ends"])),
        "eigenvectors": [{k: stacked[k][j] for k in names} for j in range(len(values))],
        "trace": trace,
        "density": density,
        "per_layer": parsed(f.attrs["per_layer"]),
        "settings": parsed(f.attrs["settings"]),
        "provenance": parsed(f.attrs["provenance"]),
    }


def _numpy(value: Any) -> np.ndarray:
    """A tensor or an array as a numpy array (tensors moved to the CPU)."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def is_spectrum_file(path: str | Path) -> bool:
    """Whether ``path`` is a spectrum file (for readers that take several kinds)."""
    return has_schema(path, SCHEMA)
