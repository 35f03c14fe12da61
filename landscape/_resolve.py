"""Resolve user specs ``pkg.module:attr`` and ``path/to/file.py:attr`` to Python objects."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from landscape.errors import ConfigError


def is_callable_spec(spec: str) -> bool:
    """True for ``pkg.module:attr`` or ``path/file.py:attr`` (not for ``cifar10:DIR``-style specs)."""
    if ":" not in spec:
        return False
    target, attr = spec.rsplit(":", 1)
    return bool(attr.isidentifier() and (target.endswith(".py") or _is_dotted(target)))


def _is_dotted(target: str) -> bool:
    return all(part.isidentifier() for part in target.split("."))


def resolve_callable(spec: str, what: str) -> Any:
    """Import the object named by ``spec``; ``what`` names its role in error messages."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ConfigError(
            f"{what} spec {spec!r} is not of the form pkg.module:name or file.py:name"
        )
    module = _load_file(target, what) if target.endswith(".py") else _import(target, what)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(
            f"{what} spec {spec!r}: {target} has no attribute {attr!r}; check the name after ':'"
        ) from None


def _import(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"{what} module {name!r} cannot be imported ({exc}); install it or add it to PYTHONPATH"
        ) from None


def _load_file(path: str, what: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} file {path!r} does not exist; check the path before ':'")
    name = f"_landscape_user_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{what} file {path!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"{what} file {path!r} failed to import: {exc}") from None
    return module
