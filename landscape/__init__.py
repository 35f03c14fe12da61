"""landscape: loss-landscape surfaces of trained PyTorch networks (Li et al. 2018 and beyond).

The Python API (``landscape.api``, imported on first use so that the command line starts fast):
``compute(model, data, ...)`` → a :class:`Surface`, ``load(path)``, ``inspect(model, data)``,
``curvature(model, data, surface)``. ``compute``, ``curvature`` and ``inspect`` are also the
names of modules of the package; those modules are callable as the functions
(``landscape._callable``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Surface", "__version__", "compute", "curvature", "inspect", "load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from landscape import api

        return api.load
    if name in ("compute", "curvature", "inspect"):  # modules callable as the API's functions
        import importlib

        return importlib.import_module(f"landscape.{name}")
    if name == "Surface":
        from landscape.surface import Surface

        return Surface
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")
