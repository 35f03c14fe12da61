"""The tuning a ``landscape`` command does for its own process, offered to Python callers as an
explicit opt-in (``landscape.tune_process``); a library call never does it by itself."""

from __future__ import annotations


def tune_process() -> None:
    """Tune this process as a ``landscape`` command tunes its own: glibc's allocator keeps large
    buffers for reuse (``landscape._malloc``; ``LANDSCAPE_NO_MALLOPT=1``: not) and Python's
    collector runs rarely and skips its last collection at exit (``landscape._collector``;
    ``LANDSCAPE_NO_GC_TUNING=1``: not). For the rest of the process, and never undone: the CLI
    and ``--workers`` processes call it; from Python it is the caller's choice."""
    from landscape import _collector, _malloc

    _collector.tune_for_process()
    _malloc.tune()
