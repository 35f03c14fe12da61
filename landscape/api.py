"""The Python API: loss surfaces, diagnostics and curvature maps of in-memory models.

    import landscape
    s = landscape.compute(model, (x, y), x=(-1, 1, 51), y=(-1, 1, 51), direction="filter-norm")
    s.x, s.y, s.loss, s.acc          # numpy; loss and acc shaped (nx, ny), or (nx,) in 1-D
    s.directions                     # [d1, d2]: dicts parameter name -> tensor
    s.save("s.h5"); s.plot("plots/"); s.analysis()
    s.plot()                         # {name: Figure}: shown inline in Jupyter
    s = landscape.load("s.h5")       # any surface file, ours or Li et al.'s

Every function takes objects, a model (``nn.Module``) and data (``(x, y)`` tensors or arrays, a
Dataset, a DataLoader or ``(x, y)`` batches), and runs the same core as the command line
(``landscape.session``, ``landscape.runs.surface``): an in-memory model gives the surface the CLI
gives on its checkpoint. The caller's model is never changed. With ``out=`` a run writes its surface
file as it goes (and a rerun resumes it); without, the file is kept in memory and nothing is
written anywhere (``s.save(path)`` writes it).
"""

from __future__ import annotations

import inspect as _signatures
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from landscape import families
from landscape.checkpoint_paths import Weights
from landscape.config import (
    AXIS_NAMES,
    IN_MEMORY,
    ComputeConfig,
    CurvatureSpec,
    DataSpec,
    DirectionSpec,
    EvalSpec,
    GridSpec,
    InspectConfig,
    ModelSpec,
    check_grid,
    default_of,
    parse_axis,
)
from landscape.errors import ConfigError
from landscape.evaluation import Run
from landscape.grid import Grid
from landscape.runs.connect_settings import TrainSettings
from landscape.session import Session
from landscape.spectrum.settings import SpectrumSettings
from landscape.surface import Surface

Axis = tuple[float, float, int] | str


def _as_tuple(text: str) -> tuple[float, float, int]:
    """A config's ``MIN:MAX:NUM`` axis as the API's ``(min, max, num)``."""
    axis = parse_axis(text)
    return (axis.lo, axis.hi, axis.num)


DEFAULT_X = _as_tuple(GridSpec.x)  # grid.x as (min, max, num): (-1.0, 1.0, 51)


# Every keyword's default is its config field's (config.py), so that the API, the CLI and YAML
# agree (tests/test_settings.py checks it); each family's own options come as keywords from its
# declaration (landscape.families), added to the signature below.
def compute(
    model: torch.nn.Module,
    data: Any,
    *,
    x: Axis = DEFAULT_X,
    y: Axis | None = GridSpec.y,
    z: Axis | None = GridSpec.z,
    axes: Sequence[Axis] | None = GridSpec.axes,
    direction: str = DirectionSpec.name,
    seed: int = DirectionSpec.seed,
    ignore: str = DirectionSpec.ignore,
    norm: str = DirectionSpec.norm,
    directions: Sequence[Mapping[str, torch.Tensor]] | None = None,
    params: Sequence[str] | str = (),
    exclude: Sequence[str] | str = (),
    store_directions: str = DirectionSpec.store,
    repeat: int = DirectionSpec.repeat,
    loss: Any = EvalSpec.loss,
    bn: str = EvalSpec.bn,
    bn_batches: int = EvalSpec.bn_batches,
    train_data: Any = None,
    device: str = EvalSpec.device,
    engine: str = EvalSpec.engine,
    dtype: str = EvalSpec.dtype,
    split_forward: str = EvalSpec.split_forward,
    batch_size: int = DataSpec.batch_size,
    max_samples: int | None = DataSpec.max_samples,
    data_seed: int = DataSpec.seed,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **family_options: Any,
) -> Surface:
    """The loss surface of ``model`` on ``data`` around its weights θ, as ``landscape compute``.

    Grids: ``(min, max, num)`` or ``"min:max:num"`` (no ``y``: 1-D; ``z``: 3-D; ``axes=[...]``:
    k ≤ 5 axes, ``s.axes``). ``direction=`` a family with its options (below; checkpoints as
    files, state dicts or models), or ``directions=[d1, d2, ...]`` (dicts name → tensor).
    ``loss``: a name or ``(outputs, targets) -> per-sample losses``. ``bn="recalibrate"`` uses
    ``train_data`` (default ``data``). ``out``: the file, written as it goes and resumed; without
    it nothing is written (``s.save(path)``). ``params``/``exclude``: globs of the tensors that
    move; ``split_forward`` (auto|on|off): the part of the forward no moved tensor reaches once
    per batch (the file's engine record says which ran). Token ids feed a transformers model.
    """
    session = Session.from_objects(
        model, data, loss=loss, device=device, max_samples=max_samples, data_seed=data_seed,
        train_data=train_data,
    )  # fmt: skip
    shared = {
        "name": direction, "seed": seed, "ignore": ignore, "norm": norm, "repeat": repeat,
        "params": _globs(params), "exclude": _globs(exclude), "store": store_directions,
    }  # fmt: skip
    spec = _direction_spec(shared, directions is not None, family_options, session)
    evaluation = EvalSpec(loss=_loss_name(loss), device=device, engine=engine, bn=bn, dtype=dtype,
                          bn_batches=bn_batches, split_forward=split_forward)  # fmt: skip
    data_spec = DataSpec(str(session.data.describe()["name"]), max_samples=max_samples,
                         seed=data_seed, batch_size=batch_size)  # fmt: skip
    run = _run(session, spec, _grid(x, y, z, axes), evaluation, data_spec, model, directions, out)
    return _surface(run, overwrite, progress)


def _surface(run: Run, overwrite: bool, progress: bool) -> Surface:
    """``run`` computed (its file written as it goes, or kept in memory without ``out``) and
    read back as the Surface compute() returns."""
    from landscape.runs.surface import run_surface

    result = run_surface(run, overwrite=overwrite, progress=_bar if progress else None)
    return load(result.path)


def _run(
    session: Session,
    spec: DirectionSpec,
    grid: Grid,
    evaluation: EvalSpec,
    data: DataSpec,
    model: torch.nn.Module,
    directions: Sequence[Mapping[str, torch.Tensor]] | None,
    out: str | Path | None,
) -> Run:
    """The ``Run`` of compute()'s objects: given directions checked against the model, and the
    record (the config as strings) made."""
    if directions is not None and len(directions) != grid.dims:
        raise ConfigError(
            f"directions= holds {len(directions)} direction(s) but the grid has {grid.dims} "
            "axes; give one direction per axis"
        )
    given = _given_directions(directions, session) if directions is not None else None
    record = _record(model, spec, grid, evaluation, data, out)
    return Run(session, spec, grid, evaluation, data.batch_size, record, given, _text(out))


def _direction_spec(
    shared: dict[str, Any], given: bool, options: dict[str, Any], session: Session
) -> DirectionSpec:
    """The run's direction recipe: the family with its options, or (``given`` directions)
    a record that says so (the file's own directions are read back on resume)."""
    if given:
        return DirectionSpec(name="filter-norm", seed=shared["seed"], file=GIVEN)
    globs = {key: list(shared[key]) for key in ("params", "exclude")}  # lists, as YAML gives
    return DirectionSpec(**{**shared, **globs}, **_family_options(options, session))


def _grid(x: Axis, y: Axis | None, z: Axis | None, axes: Sequence[Axis] | None) -> Grid:
    """The grid of ``x`` (``y``, ``z``) or of ``axes``, checked as the config checks a grid."""
    if axes is not None:
        if x != DEFAULT_X or y is not None or z is not None:
            raise ConfigError("compute() takes axes= or x=/y=/z=, not both; drop one")
        spec = GridSpec(axes=[_axis(a) for a in axes])
    else:
        texts = [_axis(a) if a is not None else None for a in (x, y, z)]
        spec = GridSpec(*texts)
    check_grid(spec)
    return Grid.of(spec)


def _loss_name(loss: Any) -> str:
    """A loss's name for the record: its own, or an object's (provenance only)."""
    return loss if isinstance(loss, str) else f"{IN_MEMORY}{getattr(loss, '__name__', 'loss')}"


def _family_options(given: dict[str, Any], session: Session) -> dict[str, Any]:
    """The keywords of the families' own options as ``DirectionSpec`` fields: checkpoints held
    as ``Weights`` (nothing written), a path to the centre ending at the model; an unknown
    keyword is refused, naming the known ones."""
    declared = {opt.api_keyword: opt for opt, _ in families.options()}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            f"compute() got an unexpected keyword {unknown[0]!r}; the families' own options are "
            f"{', '.join(declared)}"
        )
    fields = {}
    for keyword, value in given.items():
        opt = declared[keyword]
        if opt.kind == "files" and value is not None:
            value = _checkpoints(value, keyword, session, opt.to_centre)
        fields[opt.field] = opt.initial if value is None else value
    return fields


def _family_keywords() -> list[_signatures.Parameter]:
    """The families' options as keyword-only parameters (checkpoint lists default to None)."""
    return [
        _signatures.Parameter(
            opt.api_keyword,
            _signatures.Parameter.KEYWORD_ONLY,
            default=None if opt.kind == "files" else opt.initial,
        )
        for opt, _ in families.options()
    ]


def _with_family_keywords(function: Any) -> None:
    """``function``'s signature and docstring with each family option's keyword in the place of
    ``**family_options`` (``help(landscape.compute)``, a notebook's completion)."""
    signature = _signatures.signature(function)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    function.__signature__ = signature.replace(parameters=[*fixed, *_family_keywords()])
    lines = [
        f"    ``{opt.api_keyword}`` ({', '.join(names)}): {opt.help}"
        for opt, names in families.options()
    ]
    function.__doc__ += "\n    The families' own options:\n\n" + "\n".join(lines) + "\n"


_with_family_keywords(compute)


def load(path: str | Path) -> Surface:
    """Any surface file, ours or one of Li et al.'s reference files."""
    return Surface.read(path)


def inspect(
    model: torch.nn.Module,
    data: Any,
    *,
    trained: bool = False,
    epsilon: float = InspectConfig.epsilon,
    batch_size: int = default_of("data.batch_size", InspectConfig),
    max_samples: int | None = default_of("data.max_samples", InspectConfig),
    device: str = InspectConfig.device,
) -> Any:
    """The pre-/post-training diagnostics of ``landscape inspect`` on an in-memory model: a
    report with ``findings``, per-layer statistics, activations and saturation
    (``report.has_errors``; ``report.to_dict()`` is the JSON report). ``trained``: judge it as a
    trained network (before training, saturation and activation growth are stricter)."""
    from landscape.runs.inspect import inspect_model

    session = Session.from_objects(model, data, device=device, max_samples=max_samples)
    batches = session.data.batches(batch_size, session.device)
    return inspect_model(session.model, batches, epsilon=epsilon, trained=trained)


def curvature(
    model: torch.nn.Module,
    data: Any,
    surface: Surface | str | Path,
    *,
    x: Axis | None = CurvatureSpec.x,
    y: Axis | None = CurvatureSpec.y,
    samples: int = CurvatureSpec.samples,
    tol: float = CurvatureSpec.tol,
    ignore: str = CurvatureSpec.ignore,
    loss: Any = EvalSpec.loss,
    device: str = EvalSpec.device,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """The |λmin/λmax| map of ``landscape curvature`` over ``surface``'s plane, for the model
    and data it was computed on (checked by the weights' hash). Returns the curvature map
    (``maps["ratio"]``, ``maps["lambda_min"]``, ``maps["lambda_max"]``, ``x``, ``y``)."""
    from landscape.runs.curvature import run_curvature_on
    from landscape.store.curvature import read_curvature

    source = _surface_file(surface)
    session = Session.from_objects(model, data, loss=loss, device=device)
    spec = CurvatureSpec(
        source, _axis(x) if x is not None else None, _axis(y) if y is not None else None,
        samples, tol, ignore, out=str(out) if out is not None else None,
    )  # fmt: skip
    result = run_curvature_on(
        spec,
        session,
        overwrite=overwrite,
        progress=_bar if progress else None,
        in_memory=out is None,
    )
    return read_curvature(result.path)


def connect(
    model_a: torch.nn.Module,
    model_b: Any,
    data: Any,
    curve: str = TrainSettings.curve,
    *,
    epochs: int = TrainSettings.epochs,
    lr: float = TrainSettings.lr,
    momentum: float = TrainSettings.momentum,
    weight_decay: float = TrainSettings.weight_decay,
    batch_size: int = TrainSettings.batch_size,
    seed: int = TrainSettings.seed,
    loss: Any = EvalSpec.loss,
    device: str = EvalSpec.device,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """A curve between ``model_a`` (A) and ``model_b`` (B, a model or state dict of the same
    architecture) through a bend C trained on ``data`` (the training data), as ``landscape
    connect``: ``curve="bezier"`` or ``"polychain"``, SGD with a fresh t ~ U(0, 1) each step.

    Returns a :class:`landscape.Curve`: ``.a``, ``.b``, ``.c`` (state dicts), ``.kind``,
    ``.record`` (settings, losses per epoch), ``.at(t)`` (the state at t), ``.save(path)``. With
    ``out`` the curve file is written (and an interrupted training there is resumed). Neither
    model is changed. Evaluate it with ``compute(model_a, data, direction="curve", curve=c)``.
    """
    from landscape.runs.connect import pair_of, train_curve

    settings = TrainSettings(
        curve=curve, epochs=epochs, lr=lr, momentum=momentum, weight_decay=weight_decay,
        batch_size=batch_size, seed=seed,
    )  # fmt: skip
    session = Session.from_objects(model_a, data, loss=loss, device=device)
    pair = pair_of(session, Weights(model_b, "model_b"))
    bar = _steps_bar if progress else None
    return train_curve(pair, settings, out, overwrite=overwrite, progress=bar)


def _steps_bar(total: int, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="curve", mininterval=0.5)


def _surface_file(surface: Surface | str | Path) -> Any:
    """The file of a surface: its path, or its bytes when it was computed in memory."""
    if isinstance(surface, Surface):
        return surface.file
    return str(surface)


def hessian(
    model: torch.nn.Module,
    data: Any,
    *,
    k: int = SpectrumSettings.top_k,
    which: str = SpectrumSettings.which,
    tol: float = SpectrumSettings.tol,
    max_restarts: int = SpectrumSettings.max_restarts,
    trace: str = SpectrumSettings.trace,
    trace_samples: int = SpectrumSettings.trace_samples,
    density: bool = SpectrumSettings.density,
    lanczos_steps: int = SpectrumSettings.lanczos_steps,
    density_runs: int = SpectrumSettings.density_runs,
    sigma2: float = SpectrumSettings.sigma2,
    density_points: int = SpectrumSettings.density_points,
    per_layer: bool = SpectrumSettings.per_layer,
    samples: int | None = SpectrumSettings.samples,
    graph: str = SpectrumSettings.graph,
    params: Sequence[str] | str = (),
    exclude: Sequence[str] | str = (),
    seed: int = SpectrumSettings.seed,
    loss: Any = EvalSpec.loss,
    device: str = EvalSpec.device,
    batch_size: int = DataSpec.batch_size,
    max_samples: int | None = DataSpec.max_samples,
    data_seed: int = DataSpec.seed,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Any:
    """The Hessian spectrum of ``model``'s mean loss on ``data`` at its weights, as
    ``landscape hessian`` computes it: the ``k`` largest (``which="top"``), smallest
    (``"bottom"``) or both (``"extreme"``) eigenvalues with their eigenvectors, the trace
    (``trace="hutchinson"``, ``"hutch++"`` or ``"none"``, over ``trace_samples`` products, with its
    standard error), the spectral density (``density=True``: SLQ, ``lanczos_steps`` steps x
    ``density_runs`` starts) and, with ``per_layer``, each module's block. H is over the
    parameter tensors ``params`` selects (globs; all by default) less ``exclude``, for the mean
    loss over a seeded subset of ``samples`` samples (None: all). Returns a ``Spectrum``
    (``.eigenvalues``, ``.eigenvectors``, ``.trace``, ``.density``, ``.save(path)``,
    ``.plot()``); ``out=`` also writes it there. Defaults and PyHessian's equivalents:
    ``landscape.spectrum.settings``."""
    from landscape.runs.hessian import hessian_of

    settings = SpectrumSettings(
        top_k=k, which=which, tol=tol, max_restarts=max_restarts, trace=trace,
        trace_samples=trace_samples, density=density, lanczos_steps=lanczos_steps,
        density_runs=density_runs, sigma2=sigma2, density_points=density_points,
        per_layer=per_layer, samples=samples, graph=graph, params=_globs(params),
        exclude=_globs(exclude), seed=seed,
    )  # fmt: skip
    session = Session.from_objects(
        model, data, loss=loss, device=device, max_samples=max_samples, data_seed=data_seed
    )
    loss_name = loss if isinstance(loss, str) else f"{IN_MEMORY}{getattr(loss, '__name__', 'loss')}"
    result = hessian_of(
        session, settings, model_name=f"{IN_MEMORY}{type(model).__name__}", loss_name=loss_name,
        batch_size=batch_size,
    )  # fmt: skip
    if out is not None:
        result.save(out, overwrite=overwrite)
    return result


# --- helpers -----------------------------------------------------------------------------------


def _globs(value: Sequence[str] | str) -> tuple[str, ...]:
    """``params=``/``exclude=``: one glob or several."""
    return (value,) if isinstance(value, str) else tuple(value)


def _axis(value: Axis) -> str:
    """``(min, max, num)`` or ``"min:max:num"`` as the config's ``MIN:MAX:NUM`` text."""
    if isinstance(value, str):
        return value
    try:
        lo, hi, num = value
    except (TypeError, ValueError):
        raise ConfigError(
            f"a grid axis is (min, max, num) or 'min:max:num', got {value!r}"
        ) from None
    return f"{float(lo)!r}:{float(hi)!r}:{int(num)}"


GIVEN = "<given tensors>"  # direction.file of a run along given directions


def _record(
    model: torch.nn.Module,
    spec: DirectionSpec,
    grid: Grid,
    evaluation: EvalSpec,
    data: DataSpec,
    out: str | Path | None,
) -> ComputeConfig:
    """The config a run on objects records (provenance, never resolved): the model by its
    class, checkpoints handed as objects by their labels, the rest as the command line fills it;
    its checks are the command line's."""
    labels = {  # every family's checkpoint lists (trajectory, targets, curve) by their labels
        opt.field: [str(t) for t in getattr(spec, opt.field)]
        for opt, _ in families.options()
        if opt.kind == "files"
    }
    return ComputeConfig(
        # the weights are the object's own: recorded as such (interpolate starts at them)
        model=ModelSpec(
            name=f"{IN_MEMORY}{type(model).__name__}", checkpoint=f"{IN_MEMORY}weights"
        ),
        data=data,
        out=str(out) if out is not None else "",
        direction=replace(spec, **labels),
        grid=grid.spec(),
        eval=evaluation,
    )


def _given_directions(directions: Sequence[Mapping[str, torch.Tensor]], session: Session) -> Any:
    """``[d1]``, ``[d1, d2]`` or ``[d1, ..., dk]`` as a DirectionSet, checked against the
    model's tensors."""
    from landscape.directions.base import DirectionSet

    vectors = []
    for axis, d in zip(AXIS_NAMES, directions, strict=False):
        vec = OrderedDict()
        for name, t in d.items():
            if name not in session.centre:
                raise ConfigError(f"direction {axis} moves {name!r}, which the model does not have")
            ref = session.centre[name]
            t = torch.as_tensor(t).detach().cpu()
            if tuple(t.shape) != tuple(ref.shape):
                raise ConfigError(
                    f"direction {axis}: {name} has shape {tuple(t.shape)}, the model's "
                    f"{tuple(ref.shape)}"
                )
            vec[name] = t.to(torch.float32)
        vectors.append(vec)
    return DirectionSet("given", vectors, {"source": "given tensors"})


def _checkpoints(value: Any, keyword: str, session: Session, to_centre: bool) -> list[Any]:
    """One checkpoint or a list of them: files as they are, objects as ``Weights`` (named
    ``target B``, ``trajectory 0``, ...); a path to the centre (``to_centre``) ends at the
    model itself, appended unless the last checkpoint given holds its weights."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    names = [f"{keyword} {'BCDEFG'[i] if keyword == 'target' else i}" for i in range(len(items))]
    path = [_checkpoint(item, name) for item, name in zip(items, names, strict=False)]
    if to_centre and (not path or not _holds_centre(path[-1], session)):
        path.append(Weights(session.centre, "model"))
    return path


def _text(path: str | Path | None) -> str | None:
    return str(path) if path is not None else None


def _checkpoint(item: Any, name: str) -> str | Weights:
    """A file's path, or a state dict / model held as it is (no copy written anywhere)."""
    return str(item) if isinstance(item, (str, Path)) else Weights(item, name)


def _holds_centre(item: str | Weights, session: Session) -> bool:
    state = session.load_state(item)
    return all(torch.equal(state[k], v.detach().cpu()) for k, v in session.centre.items())


def _bar(total: int, initial: int) -> Any:
    """A notebook widget where ipywidgets is installed, else tqdm's text bar: ``tqdm.auto``
    without ipywidgets warns "IProgress not found" in a notebook before falling back to it."""
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pt", desc="points", mininterval=0.5)
