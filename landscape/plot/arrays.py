"""A surface as plain arrays, for numpy, pandas or a spreadsheet: ``.npz`` and long-format ``.csv``.

Both hold the values in our orientation and units (``value[i, j]`` at ``(x[i], y[j])``,
accuracies as fractions, NaN where not computed), Li et al.'s files converted on read as ``info``
says. Names are the file's own:

- **npz**: ``xcoordinates``, ``ycoordinates`` (2-D), every stored quantity (``train_loss``,
  ``train_acc``, ``train_loss_se``, ...), ``done`` (bool), and for a ``--repeat`` file the same
  under ``repeats/<r>/`` (``repeats/1/train_loss``, ``repeats/1/done``, ...);
- **csv**: one row per grid point, row-major (``x`` varies slowest): ``x[,y]``, then the same
  columns as the npz's per-point arrays (``done`` as 0/1), each value written so that it reads
  back exactly (``nan`` where not computed).
"""

from __future__ import annotations

import io

import numpy as np

from landscape.store.values import SurfaceValues


def point_arrays(surface: SurfaceValues) -> dict[str, np.ndarray]:
    """Every per-point array of the surface by its name in the file, each of the grid's shape."""
    out: dict[str, np.ndarray] = {}
    groups = [("", surface.values, surface.done)]
    groups += [(f"repeats/{r}/", rep.values, rep.done) for r, rep in enumerate(surface.repeats, 1)]
    for prefix, values, done in groups:
        for name, v in values.items():
            out[prefix + name] = np.asarray(v, dtype=np.float64)
        out[prefix + "done"] = np.asarray(done, dtype=bool)
    return out


def npz_bytes(surface: SurfaceValues) -> bytes:
    """The surface as an uncompressed ``.npz`` (``np.load`` gives the arrays by name)."""
    coords = {"xcoordinates": np.asarray(surface.x, dtype=np.float64)}
    if surface.y is not None:
        coords["ycoordinates"] = np.asarray(surface.y, dtype=np.float64)
    buf = io.BytesIO()
    np.savez(buf, **coords, **point_arrays(surface))
    return buf.getvalue()


def csv_text(surface: SurfaceValues) -> str:
    """The surface in long format: a header, then one row per grid point."""
    arrays = point_arrays(surface)
    if surface.y is None:
        axes = {"x": np.asarray(surface.x, dtype=np.float64)}
    else:  # indexing="ij": row k is the point (x[i], y[j]) with k = i * ny + j
        xs, ys = np.meshgrid(surface.x, surface.y, indexing="ij")
        axes = {"x": xs, "y": ys}
    columns = {**axes, **arrays}
    header = ",".join(_field(name) for name in columns)
    flat = [np.ravel(v) for v in columns.values()]
    rows = (",".join(_cell(col[k]) for col in flat) for k in range(flat[0].size))
    return "\n".join([header, *rows, ""])


def _cell(value: np.generic) -> str:
    """A value as text that reads back exactly: ``repr`` of the float, 0/1 for a flag."""
    if isinstance(value, np.bool_):
        return str(int(value))
    return repr(float(value))


def _field(name: str) -> str:
    """A column name, quoted (RFC 4180) when it holds a comma, a quote or a line break."""
    if any(c in name for c in ',"\r\n'):
        return '"' + name.replace('"', '""') + '"'
    return name
