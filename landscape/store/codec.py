"""The one codec for HDF5 attributes: what a result file stores and how it reads back.

HDF5 attributes hold scalars, strings and numeric arrays. ``encode`` stores ``None`` as the text
``null``, a list of numbers as a float64 array, a dict or any other value as JSON text. Reading
gives bytes for strings written by other tools and numpy scalars for numbers: ``decode`` turns
them into ``str`` and Python numbers, ``text`` into a ``str``, and ``parsed`` also decodes JSON
text (``{...}``, ``[...]``, ``"..."``, ``null``, ``true``, ``false``), leaving anything else as
it is.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def encode(value: Any) -> Any:
    """A value as an HDF5 attribute can hold it."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value, dtype=np.float64)
    return json.dumps(value, sort_keys=True, default=str)


def decode(value: Any) -> Any:
    """An attribute as read: ``str`` for bytes, a Python number for a numpy scalar."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def text(value: Any) -> str:
    """An attribute as text."""
    return str(decode(value))


def parsed(value: Any) -> Any:
    """An attribute with JSON text decoded (dicts, lists, null); anything else as ``decode``."""
    value = decode(value)
    stripped = value.strip() if isinstance(value, str) else ""
    if stripped[:1] in ("{", "[", '"') or stripped in ("null", "true", "false"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
