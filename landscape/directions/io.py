"""Reuse directions stored in a file: our surface files, or Li et al.'s direction files.

Our files key directions by tensor name (``/directions/x/<name>``). The reference code's
direction files (groups ``xdirection``/``ydirection``) key them by position: ``0..N-1`` in
``model.parameters()`` order ("weights"), or in ``model.state_dict()`` order for its "states"
directions (``--dir_type states``): one dataset per state-dict entry, parameters interleaved with
the BatchNorm running means and variances and, from PyTorch 0.4.1 on, the ``num_batches_tracked``
scalars (shape ``()``). Those are mapped to names by position, with a shape check on every tensor;
parameters then move along their entries and running statistics along theirs, as the reference
evaluates a states direction, and ``num_batches_tracked`` (a counter, not a statistic) is ignored.
"""

from __future__ import annotations

from collections import OrderedDict

import h5py
import numpy as np
import torch

from landscape._files import result_file
from landscape.config import AXIS_NAMES
from landscape.directions.base import LEGACY_SEED, DirectionSet
from landscape.errors import DirectionError


class DirectionsNotStored(DirectionError):
    """The file keeps its directions as their seed (``--store-directions seed``): whoever has the
    model regenerates them with the file's ``derivation`` of the generator from the seed (a file
    without one: the legacy ``manual_seed(seed)``) and checks them against ``fingerprint``."""

    def __init__(self, message: str, fingerprint: list, derivation: str = LEGACY_SEED) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint
        self.derivation = derivation


def fingerprint(vectors: list) -> list[list[float]]:
    """Per direction, [Σd, Σd²] over every tensor in float64, in name order: what a file that
    keeps its directions by seed stores to check the regenerated ones against."""
    out = []
    for vec in vectors:
        total, squares = 0.0, 0.0
        for name in sorted(vec):
            t = vec[name].detach().double()
            total += float(t.sum())
            squares += float(t.square().sum())
        out.append([total, squares])
    return out


def load_directions(
    path: str,
    params: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    count: int,
    group: str = "directions",
    state_order: list[str] | None = None,
) -> DirectionSet:
    """Read ``count`` directions from ``path`` and check them against the model's tensors.

    ``params`` are the model's parameters (``model.parameters()`` order), ``state`` its full
    state (parameters and buffers) by name; ``state_order`` the names in ``state_dict()`` order,
    which a reference "states" file follows (default: ``state``'s own order). ``group``: where in
    our files the directions are (``repeats/<r>/directions`` for a repeat of a ``--repeat`` run).
    """
    if not result_file(path).exists():
        raise DirectionError(f"direction file {path!r} does not exist; check --directions")
    try:
        with h5py.File(path, "r") as f:
            if group in f:
                return _read_named(f[group], path, state, count)
            if "xdirection" in f:
                order = list(state) if state_order is None else state_order
                return _read_positional(f, path, params, state, order, count)
            if "dir_file" in f:
                ref = f["dir_file"][()]
                ref = ref.decode() if isinstance(ref, bytes) else str(ref)
                raise DirectionError(
                    f"{path!r} is a reference surface file without directions; pass the direction "
                    f"file it was made from ({ref}) to --directions"
                )
    except OSError as exc:
        raise DirectionError(
            f"direction file {path!r} is not a readable HDF5 file ({exc})"
        ) from None
    raise DirectionError(
        f"{path!r} holds no directions (no /directions group, no xdirection group); "
        "pass a landscape surface file or a reference direction file"
    )


def _read_named(
    group: h5py.Group, path: str, state: dict[str, torch.Tensor], count: int
) -> DirectionSet:
    stored = group.attrs.get("stored", "full")
    if (stored.decode() if isinstance(stored, bytes) else str(stored)) == "seed":
        derivation = group.attrs.get("seed_derivation", LEGACY_SEED)  # absent: an older file
        raise DirectionsNotStored(
            f"{path!r} keeps its directions as their seed (--store-directions seed), not their "
            "tensors; recompute them with the same model and seed (`landscape compute` resumes "
            "such a file), or make the surface with --store-directions full",
            _fingerprint(group.attrs.get("fingerprint")),
            derivation.decode() if isinstance(derivation, bytes) else str(derivation),
        )
    chart = group.attrs.get("chart")  # a 1-D surface along a curve: two directions, charted
    chart = chart.decode() if isinstance(chart, bytes) else chart
    vectors = []
    for axis in AXIS_NAMES[: 2 if chart else count]:
        if axis not in group:
            held = sum(a in group for a in AXIS_NAMES)
            raise DirectionError(
                f"{path!r} has no {axis} direction (it holds {held}); this grid needs {count}: "
                "use a file of as many directions, or fewer axes"
            )
        sub = group[axis]
        names = list(sub.keys())
        unknown = [n for n in names if n not in state]
        if unknown:
            raise DirectionError(
                f"{path!r}: direction tensors {', '.join(unknown[:5])} are not in the model; "
                "was it made for another --model?"
            )
        vectors.append(
            OrderedDict((n, _tensor(sub[n], state[n], n, path)) for n in state if n in sub)
        )
    attrs = {k: _plain(v) for k, v in group.attrs.items()}
    method = str(attrs.pop("method", "file"))
    kept = {"source": path, "source_method": method}
    if chart:
        kept["chart"] = str(chart)
    return DirectionSet(method, vectors, kept, chart=str(chart) if chart else None)


def _read_positional(
    f: h5py.File,
    path: str,
    params: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    state_order: list[str],
    count: int,
) -> DirectionSet:
    # the reference stores parameters only ("weights") or the whole state_dict ("states"), the
    # latter with or without the num_batches_tracked counters (PyTorch >= 0.4.1 has them)
    layouts = {
        "weights": list(params),
        "states": list(state_order),
        "states-without-counters": [n for n in state_order if not _is_counter(n)],
    }
    vectors, kind = [], None
    for axis in "xy"[:count]:
        key = f"{axis}direction"
        if key not in f:
            raise DirectionError(f"{path!r} has no {key} group (a 1-D direction file); drop --y")
        group = f[key]
        n = len(group)
        kind = next((k for k, names in layouts.items() if len(names) == n), None)
        if kind is None:
            raise DirectionError(
                f"{path!r}: {key} has {n} tensors but the model has {len(params)} parameters "
                f"({len(layouts['states'])} state-dict entries); was it made for another --model?"
            )
        vectors.append(
            OrderedDict(
                (name, _tensor(group[str(i)], state[name], name, path))
                for i, name in enumerate(layouts[kind])
                if not _is_counter(name)  # a count of batches seen: nothing to move along
            )
        )
    source = "li2018-weights" if kind == "weights" else "li2018-states"
    return DirectionSet("li2018-file", vectors, {"source": path, "source_format": source})


def _is_counter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] == "num_batches_tracked"


def _tensor(ds: h5py.Dataset, like: torch.Tensor, name: str, path: str) -> torch.Tensor:
    # kind and shape from the dataset's header, before its values are read: a crafted file
    # declaring billions of elements costs no memory
    if ds.dtype.kind not in "fiu":  # text, objects, compounds: not a direction
        raise DirectionError(
            f"{path!r}: direction for {name} holds {ds.dtype}, not numbers; pass a direction "
            "file written by landscape or Li et al.'s code"
        )
    if tuple(ds.shape) != tuple(like.shape):
        raise DirectionError(
            f"{path!r}: direction for {name} has shape {tuple(ds.shape)} but the model's tensor "
            f"has {tuple(like.shape)}; was it made for another --model?"
        )
    out = torch.from_numpy(np.asarray(ds[()]).astype(np.float32, copy=False)).clone()
    if not torch.isfinite(out).all():  # NaN moves every point, the centre too, to NaN
        raise DirectionError(
            f"{path!r}: direction for {name} holds NaN or infinite values (or values beyond "
            "float32's range); restore a copy of the file, or pass other --directions"
        )
    # in the weight's own dtype when that is a half type (a bfloat16 model's, stored as float32)
    return out.to(like.dtype) if like.dtype in (torch.bfloat16, torch.float16) else out


def _fingerprint(raw: object) -> list:
    """The stored fingerprint; [] when it is not JSON (a resumed file's is checked by
    ``store.validate`` before its directions are regenerated)."""
    import json

    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (ValueError, RecursionError):
        return []


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
