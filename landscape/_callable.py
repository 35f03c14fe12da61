"""Modules that are also the Python API's functions of the same name.

``landscape.compute``, ``landscape.curvature`` and ``landscape.inspect`` name both a module of
the package (the orchestrator, the curvature maps, the diagnostics) and a function of the API
(``landscape.api``). Python sets a package's attribute to its submodule once that is imported, so
the attribute cannot simply be the function; instead each of these modules is made callable,
calling the API function. ``landscape.compute(model, data)`` then works whichever was loaded first.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def api_callable(module_name: str, function: str) -> None:
    """Make the module ``module_name`` callable as ``landscape.api.<function>``."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            from landscape import api

            return getattr(api, function)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"landscape.api.{function}(...)"
    sys.modules[module_name].__class__ = CallableModule
