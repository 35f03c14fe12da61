"""A restricted unpickler for data files that are pickles (CIFAR-10's python batches).

``pickle.load`` calls whatever a file names (``os.system`` with any command), so a data folder
from elsewhere could run code. A CIFAR batch holds only dicts, lists, strings, bytes, numbers and
numpy arrays; those need no globals but numpy's array reconstruction (and ``_codecs.encode``,
which Python 3 uses for bytes in protocol-2 pickles). Every other global is refused.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

ALLOWED_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2
        ("numpy.core.multiarray", "_reconstruct"),  # numpy < 2, and pickles written by it
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that plain data does not need."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified = f"{module}.{name}"


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(module, name)
        return super().find_class(module, name)


def load_data_pickle(file: IO[bytes], encoding: str = "latin1") -> Any:
    """Unpickle plain data: containers, scalars, strings, bytes and numpy arrays only.

    Raises ``RefusedGlobal`` (an ``UnpicklingError``) naming the first global it refused.
    """
    return _DataUnpickler(file, encoding=encoding).load()
