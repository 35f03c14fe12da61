"""Checkpoint lists as users give them: files, folders and globs, in training order; or, from
the Python API, the weights themselves (:class:`Weights`)."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.errors import DirectionError, LandscapeError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".t7", ".ckpt", ".safetensors", ".bin")


@dataclass(frozen=True, eq=False)
class Weights:
    """A checkpoint handed as an object: a state dict or a model (of the run's architecture),
    where the command line hands a file. ``name`` labels it in the surface file and the plots."""

    state: Any
    name: str

    def __str__(self) -> str:
        return self.name


Checkpoint = Path | Weights  # one checkpoint of a list, as a direction family reads it


def checkpoint_name(item: Checkpoint) -> str:
    """What plots and the file call a checkpoint: its file's name, or the object's label."""
    return item.name


def natural_key(path: Path) -> list[object]:
    """Sort ``epoch_2`` before ``epoch_10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def expand_checkpoints(
    items: Sequence[str | Weights],
    what: str = "trajectory",
    error: type[LandscapeError] = DirectionError,
) -> list[Any]:
    """Files as given; a folder's checkpoint files and a glob's matches in natural order;
    ``Weights`` (objects, from the Python API) as they are.

    ``what`` names the option in messages; ``error`` is the exception a bad item raises.
    """
    out: list[Any] = []
    for item in items:
        if isinstance(item, Weights):
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES), key=natural_key
            )
            if not found:
                raise error(
                    f"{what} folder {item!r} holds no checkpoint files "
                    f"({', '.join(CHECKPOINT_SUFFIXES)})"
                )
            out.extend(found)
        elif any(ch in item for ch in "*?["):
            found = sorted((Path(p) for p in glob.glob(item)), key=natural_key)
            if not found:
                raise error(f"{what} pattern {item!r} matches no file; check the glob")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise error(f"{what} file {item!r} does not exist; check the path")
    return out
