"""``landscape study pair``: the straight and aligned paths between two networks, in one command.

For model A (the model spec at its checkpoint) and a target checkpoint B, the study computes one
1-D ``interpolate`` surface per path (``PATHS``: the straight path, the path to B aligned by
weight matching, the path to B aligned by activation matching on the evaluation data), each
``out/<name>.h5``, then the comparison figures (``plot --compare``: loss and error against t,
± 2 s.e., barriers marked) and ``out/summary.txt``, the barriers in a few lines.

It is a sweep over ``direction.align`` (``runs.sweep``): complete files are skipped and partial
ones resumed, so a rerun after a kill finishes it. The same study as a YAML sweep::

    direction: {name: interpolate, targets: [b.pt]}
    grid: {x: "-0.2:1.2:29"}
    out: study/path.h5
    sweep: {direction.align: [none, weights, activations]}

followed by ``landscape plot --compare study/path_*.h5``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape._files import check_output, writable_folder, write_bytes_atomically
from landscape.config import ComputeConfig, DataSpec, EvalSpec, ModelSpec
from landscape.errors import ConfigError

if TYPE_CHECKING:  # the command line reads PATHS and DEFAULT_X: nothing heavy at import
    from landscape.barrier import Barrier
    from landscape.runs.sweep import SweepOutcome, SweepRun

# the study's paths: file name → the interpolate family's ``align`` option
PATHS: dict[str, str] = {
    "straight": "none",
    "aligned-weights": "weights",
    "aligned-activations": "activations",
}
DEFAULT_X = "-0.2:1.2:29"  # t from -0.2 to 1.2 in steps of 0.05: A (t=0) and B (t=1) on it
SUMMARY = "summary.txt"


@dataclass(frozen=True)
class PairStudy:
    """What to study: model A (``model`` at its checkpoint), B (``target``), the data, the grid
    along t, which paths (``PATHS``' names), the BatchNorm mode and device, and the folder."""

    model: ModelSpec
    target: str
    data: DataSpec
    out: str
    x: str = DEFAULT_X
    paths: tuple[str, ...] = tuple(PATHS)
    bn: str = EvalSpec.bn
    device: str = EvalSpec.device

    def runs(self) -> list[SweepRun]:
        """One compute run per path, each a validated config writing ``out/<path>.h5``."""
        unknown = [p for p in self.paths if p not in PATHS]
        if unknown or not self.paths:
            raise ConfigError(
                f"unknown path {unknown[0] if unknown else '(none given)'!r}; choose from "
                f"{', '.join(PATHS)}"
            )
        if not self.model.checkpoint:
            raise ConfigError("study pair starts at model A: give --checkpoint A (and --target B)")
        if _same_file(self.model.checkpoint, self.target):
            raise ConfigError(
                f"--target {self.target!r} is the same file as --checkpoint; give the checkpoint "
                "of the second model, B"
            )
        base = {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "grid": {"x": self.x},
            "eval": {"bn": self.bn, "device": self.device},
        }
        from landscape.runs.sweep import SweepRun

        runs = []
        for k, name in enumerate(dict.fromkeys(self.paths)):
            direction = {"name": "interpolate", "targets": [self.target], "align": PATHS[name]}
            out = str(check_output(Path(self.out) / f"{name}.h5"))
            config = ComputeConfig.from_dict({**base, "direction": direction, "out": out})
            runs.append(SweepRun(k, config, {"path": name}))
        return runs


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: the run names the missing file
        return False


@dataclass
class PairResult:
    """What the study wrote: each path's file and barrier, the figures and the summary."""

    outcomes: list[SweepOutcome]
    barriers: dict[str, Barrier | None]
    figures: list[Path] = field(default_factory=list)
    summary: Path | None = None
    text: str = ""


def run_pair(
    study: PairStudy,
    *,
    overwrite: bool = False,
    progress: Any = None,
    log: Callable[[str], None] | None = None,
) -> PairResult:
    """Compute (or resume) every path, then draw the comparison and write the summary."""
    from landscape.plot.compare import render_compare
    from landscape.runs.sweep import run_sweep
    from landscape.store import read_surface

    writable_folder(study.out)  # a file, a link or a FIFO there is refused
    runs = study.runs()
    outcomes = run_sweep(runs, overwrite=overwrite, progress=progress, log=log)
    surfaces = [read_surface(r.config.out) for r in runs]
    names = [r.varying["path"] for r in runs]
    barriers = {n: _barrier(s) for n, s in zip(names, surfaces, strict=True)}
    figures = render_compare(surfaces, study.out, kinds=["1d"], scales=("linear",))
    text = summary_text(study, barriers)
    path = Path(study.out) / SUMMARY
    write_bytes_atomically(check_output(path), text.encode())
    return PairResult(outcomes, barriers, figures, path, text)


def _barrier(surface: Any) -> Barrier | None:
    """The first loss quantity's barrier (stored in the file's /analysis, or computed)."""
    from landscape.analysis import stored_or_computed

    found = stored_or_computed(surface)
    first = next(iter(found.values()), None)
    return None if first is None else first[0].barrier


def summary_text(study: PairStudy, barriers: dict[str, Barrier | None]) -> str:
    """A few lines: the pair, then per path its loss and error barrier ± 1 s.e. and where."""
    lines = [
        f"pair: A = {study.model.checkpoint}, B = {study.target} ({study.model.name}, data "
        f"{study.data.name} {study.data.split}, bn {study.bn})",
        "barrier: max over t in [0, 1] of L(t) - [(1-t) L(A) + t L(B)]; +- 1 s.e. "
        "(the conservative sum of the three points' s.e.)",
    ]
    for name, b in barriers.items():
        if b is None:
            lines.append(f"{name:<20} no barrier (see landscape info)")
            continue
        se = "" if b.se is None else f" +- {b.se:.2g}"
        text = f"{name:<20} loss barrier {b.value:.4g}{se} at t={b.t:.3g}"
        if b.error is not None:
            ese = "" if b.error_se is None else f" +- {100 * b.error_se:.2g}"
            text += f"; error barrier {100 * b.error:.3g}%{ese} at t={b.error_t:.3g}"
        lines.append(text)
    return "\n".join(lines) + "\n"
