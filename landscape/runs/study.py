"""``landscape study pair``: the straight, aligned and curved paths between two networks, and
the plane through them, in one command.

For model A (the model spec at its checkpoint) and a target checkpoint B, the study trains a
connecting curve (``landscape.runs.connect``: a quadratic Bézier or a polychain whose bend C is
fitted on the data's training split, ``out/curve.safetensors``), then computes one 1-D surface per
path (``PATHS``: the straight path, the path to B aligned by weight matching, the path to B
aligned by activation matching on the evaluation data, all ``interpolate``; the trained curve,
family ``curve``, on the grid's points in [0, 1]), each ``out/<name>.h5``, and the plane through
A, B and C (``out/plane.h5``, the curve family's 2-D mode; its y axis by default from -0.3 to 1.3
times C's height over the line AB). Then the comparison figure (``plot --compare``: loss and
error against t, ± 2 s.e., barriers marked), the plane view (``landscape.plot.plane``) and
``out/summary.txt``, the barriers in a few lines.

It is a sweep over ``direction.align`` (``runs.sweep``): complete files are skipped and partial
ones resumed, so a rerun after a kill finishes it. Its interpolate paths as a YAML sweep (the
curve is ``landscape connect``, then ``compute --direction curve``, in 1-D and with ``--y``)::

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
from landscape.config import ComputeConfig, DataSpec, EvalSpec, ModelSpec, parse_axis
from landscape.errors import ConfigError
from landscape.runs.connect_settings import ConnectConfig, TrainSettings

if TYPE_CHECKING:  # the command line reads PATHS and DEFAULT_X: nothing heavy at import
    from landscape.barrier import Barrier
    from landscape.runs.sweep import SweepOutcome, SweepRun

# the study's paths: file name → the interpolate family's ``align`` option (``curve``: the
# curve family along the trained curve, CURVE_FILE)
PATHS: dict[str, str] = {
    "straight": "none",
    "aligned-weights": "weights",
    "aligned-activations": "activations",
    "curve": "curve",
}
DEFAULT_X = "-0.2:1.2:29"  # t from -0.2 to 1.2 in steps of 0.05: A (t=0) and B (t=1) on it
DEFAULT_Y = "auto"  # the plane's y axis: auto (from C's height), none (no plane) or MIN:MAX:NUM
PLANE_X = "-0.2:1.2:29"  # the plane's x axis (A at 0, B at 1)
PLANE_Y_POINTS = 21  # points along y when --y is auto
PLANE_Y_MARGIN = 0.3  # auto: y from -0.3·h to 1.3·h, h = max(y_C, PLANE_MIN_HEIGHT)
PLANE_MIN_HEIGHT = 0.05
CURVE_FILE = "curve.safetensors"
PLANE_FILE = "plane.h5"
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
    curve: str = TrainSettings.curve
    curve_epochs: int = TrainSettings.epochs
    y: str = DEFAULT_Y
    plane_x: str = PLANE_X
    plane_y_points: int = PLANE_Y_POINTS  # along y when ``y`` is auto

    @property
    def with_curve(self) -> bool:
        return "curve" in self.paths

    @property
    def with_plane(self) -> bool:
        return self.with_curve and self.y != "none"

    @property
    def curve_file(self) -> Path:
        return Path(self.out) / CURVE_FILE

    def check(self) -> None:
        """The study's own options, before anything runs."""
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
        if self.y not in ("auto", "none"):
            parse_axis(self.y, "--y")
        parse_axis(self.plane_x, "--plane-x")
        TrainSettings(curve=self.curve, epochs=self.curve_epochs)  # ConfigError if bad

    def runs(self) -> list[SweepRun]:
        """One compute run per path, each a validated config writing ``out/<path>.h5``, and
        the plane's (``out/plane.h5``); the curve's runs read the trained curve file."""
        self.check()
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
            grid = base["grid"]
            if name == "curve":  # θ(t) is the curve itself on [0, 1]; beyond, an extrapolation
                direction, grid = (
                    {"name": "curve", "curve": [str(self.curve_file)]},
                    {"x": unit_part(self.x)},
                )
            out = str(check_output(Path(self.out) / f"{name}.h5"))
            config = ComputeConfig.from_dict(
                {**base, "grid": grid, "direction": direction, "out": out}
            )
            runs.append(SweepRun(k, config, {"path": name}))
        if self.with_plane:
            direction = {"name": "curve", "curve": [str(self.curve_file)]}
            grid = {"x": self.plane_x, "y": self.plane_y()}
            out = str(check_output(Path(self.out) / PLANE_FILE))
            config = ComputeConfig.from_dict(
                {**base, "grid": grid, "direction": direction, "out": out}
            )
            runs.append(SweepRun(len(runs), config, {"path": "plane"}))
        return runs

    def plane_y(self) -> str:
        """The plane's y axis: as given, or (auto) from -0.3·y_C to 1.3·y_C, where y_C is the
        bend's height over the line AB in the plane's units (‖B − A‖ = 1)."""
        if self.y != "auto":
            return self.y
        from landscape.curves import load_curve

        height = max(bend_height(load_curve(self.curve_file)), PLANE_MIN_HEIGHT)
        lo, hi = -PLANE_Y_MARGIN * height, (1 + PLANE_Y_MARGIN) * height
        return f"{lo:.4g}:{hi:.4g}:{self.plane_y_points}"


def unit_part(x: str) -> str:
    """The grid ``x``'s step over t in [0, 1] (``-0.2:1.2:29`` → ``0:1:21``)."""
    axis = parse_axis(x, "--x")
    step = (axis.hi - axis.lo) / (axis.num - 1)
    return f"0:1:{max(2, round(1.0 / step) + 1)}"


def bend_height(curve: Any) -> float:
    """y_C of the plane through A, B and C (interpolate's construction): the part of C − A
    orthogonal to d1 = B − A, over ‖d1‖; on the floating-point tensors of the curve."""
    import torch

    names = [k for k, v in curve.a.items() if v.is_floating_point() and "running_" not in k]
    d1 = torch.cat([(curve.b[k].double() - curve.a[k].double()).ravel() for k in names])
    d2 = torch.cat([(curve.c[k].double() - curve.a[k].double()).ravel() for k in names])
    n1 = float(d1.norm())
    if n1 == 0.0:
        return 0.0
    across = d2 - (d2 @ d1) / (n1 * n1) * d1  # Gram-Schmidt: C − A less its part along d1
    return float(across.norm()) / n1


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
    curve_progress: Any = None,
) -> PairResult:
    """Train (or resume) the curve, compute (or resume) every path and the plane, then draw
    the comparison and the plane view and write the summary."""
    from landscape.plot.compare import render_compare
    from landscape.runs.sweep import run_sweep
    from landscape.store import read_surface

    writable_folder(study.out)  # a file, a link or a FIFO there is refused
    study.check()
    if study.with_curve:
        train_pair_curve(study, overwrite=overwrite, progress=curve_progress, log=log)
    runs = study.runs()
    outcomes = run_sweep(runs, overwrite=overwrite, progress=progress, log=log)
    paths = [r for r in runs if r.varying["path"] != "plane"]
    surfaces = [read_surface(r.config.out) for r in paths]
    names = [r.varying["path"] for r in paths]
    barriers = {n: _barrier(s) for n, s in zip(names, surfaces, strict=True)}
    figures = render_compare(surfaces, study.out, kinds=["1d"], scales=("linear",))
    plane = None
    if study.with_plane:
        plane = read_surface(str(Path(study.out) / PLANE_FILE))
        figures.append(draw_plane(plane, study.out, study.data.split))
    text = summary_text(study, barriers, plane)
    path = Path(study.out) / SUMMARY
    write_bytes_atomically(check_output(path), text.encode())
    return PairResult(outcomes, barriers, figures, path, text)


def train_pair_curve(
    study: PairStudy,
    *,
    overwrite: bool = False,
    progress: Any = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """The Bézier (or polychain) between A and B, trained on the data's training split into
    ``out/curve.safetensors``: a finished curve of this very training is kept, a killed one
    resumed (``landscape.runs.connect``)."""
    from landscape.runs.connect import run_connect

    config = ConnectConfig(
        model=study.model,
        data=dataclasses.replace(study.data, split="train", max_samples=None),
        target=study.target,
        out=str(study.curve_file),
        train=TrainSettings(curve=study.curve, epochs=study.curve_epochs),
        device=study.device,
    )
    if log is not None:
        log(f"curve: {study.curve}, {study.curve_epochs} epochs -> {study.curve_file}")
    run_connect(config, overwrite=overwrite, progress=progress)


def draw_plane(surface: Any, out: str, split: str) -> Path:
    """``out/plane_<split>.png``: the loss on the A-B-C plane, the points and paths marked."""
    from landscape.plot.plane import plane_figure
    from landscape.plot.render import save_figure

    quantity = f"{split}_loss" if f"{split}_loss" in surface.values else "train_loss"
    path = check_output(Path(out) / f"plane_{split}.png")
    return save_figure(lambda: plane_figure(surface, quantity), path, dpi=150)


def _barrier(surface: Any) -> Barrier | None:
    """The first loss quantity's barrier (stored in the file's /analysis, or computed)."""
    from landscape.analysis import stored_or_computed

    found = stored_or_computed(surface)
    first = next(iter(found.values()), None)
    return None if first is None else first[0].barrier


def summary_text(study: PairStudy, barriers: dict[str, Barrier | None], plane: Any = None) -> str:
    """A few lines: the pair, per path its loss and error barrier ± 1 s.e. and where, and
    where the plane view put C."""
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
    if "curve" in barriers:
        lines.append(f"curve: {study.curve}, {study.curve_epochs} epochs, {study.curve_file}")
    if plane is not None:
        from landscape.plot.plane import plane_marks

        c = plane_marks(plane).get("C")
        where = "" if c is None else f", the bend C at ({c[0]:.3g}, {c[1]:.3g})"
        lines.append(
            f"plane: {Path(study.out) / PLANE_FILE} (A at (0, 0), B at (1, 0){where}; "
            f"figure plane_{study.data.split}.png)"
        )
    return "\n".join(lines) + "\n"
