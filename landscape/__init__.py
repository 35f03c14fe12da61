"""landscape: loss-landscape surfaces of trained PyTorch networks (Li et al. 2018 and beyond).

The Python API (``landscape.api``, imported on first use so that the command line starts fast):
``compute(model, data, ...)`` → a :class:`Surface`, ``load(path)``, ``inspect(model, data)``,
``curvature(model, data, surface)``, ``hessian(model, data)`` → a :class:`Spectrum`,
``connect(model_a, model_b, data)`` → a :class:`Curve` (a trained curve between two networks): plain
functions (the runs behind them live in ``landscape.runs``, the diagnostics in
``landscape.diagnostics``); ``align(model_a, model_b)``: B's hidden units permuted to match A's
(``landscape.alignment``).

Importing the package and calling the API change nothing in the caller's process (matplotlib's
backend, the garbage collector, the allocator, ``os.environ``, torch's threads and flags):
``tune_process()`` is the explicit opt-in to the tuning a command does for its own process.
"""

from __future__ import annotations

from typing import Any

from landscape.tuning import tune_process
from landscape.version import __version__

__all__ = [
    "Curve",
    "Spectrum",
    "Surface",
    "__version__",
    "align",
    "compute",
    "connect",
    "curvature",
    "hessian",
    "inspect",
    "load",
    "tune_process",
]


def __getattr__(name: str) -> Any:
    if name in ("compute", "connect", "curvature", "hessian", "inspect", "load"):  # the API's
        from landscape import api

        return getattr(api, name)
    if name == "align":  # B permuted to match A (issue 25)
        from landscape.alignment.matching import align

        return align
    if name == "Surface":
        from landscape.surface import Surface

        return Surface
    if name == "Curve":
        from landscape.curves import Curve

        return Curve
    if name == "Spectrum":
        from landscape.runs.hessian import Spectrum

        return Spectrum
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")
