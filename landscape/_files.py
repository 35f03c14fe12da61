"""Writing a result file whole or not at all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_atomically(path: Path, tag: str = "tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when the
    block ends without an error, removed otherwise. A kill or a failure at any moment leaves
    either the old file or the complete new one at ``path``."""
    tmp = path.with_name(f".{path.name}.{tag}-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
