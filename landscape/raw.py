"""What a data format's loader returns (``data`` and ``tokens`` both build it): the whole split,
before ``data`` takes its subset and checks it."""

from __future__ import annotations

import dataclasses

from torch import Tensor


@dataclasses.dataclass
class Raw:
    """A loaded split: inputs ``x`` and targets ``y``, before subsetting."""

    x: Tensor
    y: Tensor
    normalized: bool = False  # whether a normalization was applied
    one_set: bool = False  # the format has no splits
    num_classes: int | None = None
    notes: list[str] = dataclasses.field(default_factory=list)  # what the loader left out, say
