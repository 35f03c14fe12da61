"""Python's cyclic garbage collector tuned for a process that landscape owns: a command's (the
CLI), a ``--workers`` process.

Importing torch creates ~170,000 long-lived objects. At Python's default thresholds the collector
walks them again and again as they appear (three full collections, 0.15-0.2 s of a command's
start-up), and once more when the interpreter exits (0.35-0.4 s: ``landscape info`` took 1.7 s,
a third of it in that last collection). Here collections are rarer, and the last one is skipped:
``gc.freeze`` from ``atexit`` (which runs before the interpreter's own final collection) moves
every object still alive out of the collector's reach. Objects are still freed as their last
reference goes, and files are closed by their owners, not by the collector; only cyclic garbage
left at exit is not collected, which the process's end returns to the system anyway.

The Python API never calls this: a notebook's process and its collector are the user's
(``landscape.tune_process()`` is the explicit opt-in).
``LANDSCAPE_NO_GC_TUNING=1``: nothing is changed (as ``LANDSCAPE_NO_MALLOPT`` for the allocator),
which also times a command without the tuning.
"""

from __future__ import annotations

import atexit
import gc
import os

# (gen0 allocations, gen0 runs per gen1 run, gen1 runs per gen2 run); Python's are (700, 10, 10)
THRESHOLDS = (50_000, 20, 20)


def tune_for_process() -> None:
    """Rarer collections from now on, none at exit; once, however often it is called."""
    if os.environ.get("LANDSCAPE_NO_GC_TUNING"):
        return
    gc.set_threshold(*THRESHOLDS)
    atexit.unregister(gc.freeze)  # a second command in one process (tests) registers nothing more
    atexit.register(gc.freeze)
