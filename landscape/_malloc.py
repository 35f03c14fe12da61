"""glibc's allocator tuned for a run: large buffers kept in the heap instead of mmapped anew.

By default glibc serves every allocation above its mmap threshold (128 KiB, rising dynamically to
at most 32 MiB) with a fresh ``mmap`` and returns it to the kernel on ``free``. A forward pass
allocates and frees the same activation buffers at every layer of every point (500 × 16 × 32 × 32
float32 = 33 MB for a ResNet-20 batch), so each is faulted in page by page again: millions of
minor faults, a third of the CPU time spent in the kernel. Raising the mmap threshold (buffers up
to ``MMAP_THRESHOLD`` come from the heap) and the trim threshold (up to ``TRIM_THRESHOLD`` of free
heap is kept for reuse) makes the buffers reusable. ``mallopt`` applies to the calling process
from then on (the ``MALLOC_*_`` environment variables only work before it starts), so only a
process landscape owns does it: a command's (the CLI's entry point), a ``--workers`` process, or
a caller that opts in with ``landscape.tune_process()``; no run does it by itself. Not glibc, or
``LANDSCAPE_NO_MALLOPT=1``: nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30

_done = False


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they were set."""
    global _done
    if _done:
        return True
    if os.environ.get("LANDSCAPE_NO_MALLOPT") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(
            M_TRIM_THRESHOLD, TRIM_THRESHOLD
        )
    except (OSError, AttributeError):
        return False
    _done = bool(ok)
    return _done
