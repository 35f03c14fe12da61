"""A model's task: how it is fed and scored (``causal-lm``, ``image-classification``, ...).

A model source that knows the task (``hf:``) records it on the model as ``TASK_ATTR``; the engine,
the loss and the run read it with ``task_of``. A plain torch model has none. Base layer: the engine
and the losses ask this without importing the model sources above them.
"""

from __future__ import annotations

from typing import Any

TASK_ATTR = "_landscape_task"  # set by a loader on a model fed for a task (``causal-lm``, ...)


def task_of(model: Any) -> str | None:
    """The task a model is fed for (``causal-lm``, ...), or None for a plain torch model."""
    return getattr(model, TASK_ATTR, None)
