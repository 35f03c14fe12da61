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
gives on its checkpoint. The caller's model is never changed. A run writes a surface file as it
goes: ``out=`` names it (and a rerun resumes it), else it lives in a temporary folder for as long
as the returned surface does.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from landscape.config import (
    IN_MEMORY,
    ComputeConfig,
    CurvatureSpec,
    DataSpec,
    DirectionSpec,
    EvalSpec,
    GridSpec,
    InspectConfig,
    ModelSpec,
    default_of,
    parse_axis,
)
from landscape.errors import ConfigError
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
# agree (tests/test_settings.py checks it).
def compute(
    model: torch.nn.Module,
    data: Any,
    *,
    x: Axis = DEFAULT_X,
    y: Axis | None = GridSpec.y,
    direction: str = DirectionSpec.name,
    seed: int = DirectionSpec.seed,
    ignore: str = DirectionSpec.ignore,
    norm: str = DirectionSpec.norm,
    directions: Sequence[Mapping[str, torch.Tensor]] | None = None,
    trajectory: Sequence[Any] | None = None,
    target: Any = None,
    states: bool = DirectionSpec.states,
    hessian_samples: int = DirectionSpec.hessian_samples,
    orthogonal_to_weights: bool = DirectionSpec.orthogonal_to_weights,
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
    batch_size: int = DataSpec.batch_size,
    max_samples: int | None = DataSpec.max_samples,
    data_seed: int = DataSpec.seed,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Surface:
    """The loss surface of ``model`` on ``data`` around its weights θ.

    Grids are ``(min, max, num)`` or ``"min:max:num"``; no ``y`` gives a 1-D surface. Families
    as on the command line (``direction=``, with ``seed``, ``ignore``, ``norm``); or
    ``directions=[d1, d2]``, dicts parameter name → tensor, to move along given ones;
    ``trajectory=`` checkpoints saved during training in order (files, state dicts or models;
    ``model`` itself is the centre, the path's end); ``target=`` B, or ``[B, C]`` in 2-D, for
    ``direction="interpolate"`` (files, state dicts or models). ``loss``: a name or a callable
    ``(outputs, targets) -> one loss per sample``. ``bn="recalibrate"`` re-estimates BatchNorm
    statistics on ``train_data`` (default: ``data``). ``out``: the surface file, written while
    computing and resumed by a rerun. ``progress``: a tqdm bar. ``params`` / ``exclude``: globs of
    the parameter tensors the directions move (``"*lora_*"``, ``"model.layers.11.*"``);
    ``store_directions``: ``auto``, ``full`` or ``seed`` (as ``--store-directions``). A
    transformers model is fed token ids (``(ids, ids)`` for a causal LM's next-token loss) or
    pixels, as ``--model hf:DIR`` is.
    """
    session = Session.from_objects(
        model,
        data,
        loss=loss,
        device=device,
        max_samples=max_samples,
        data_seed=data_seed,
        train_data=train_data,
    )
    with tempfile.TemporaryDirectory(prefix="landscape-states-") as folder:
        paths = _Paths(Path(folder), session)
        if directions is not None:  # given: recorded as such, read back from the file on resume
            spec = DirectionSpec(name="filter-norm", seed=seed, file=GIVEN)
        else:
            spec = DirectionSpec(
                name=direction,
                seed=seed,
                ignore=ignore,
                norm=norm,
                trajectory=paths.trajectory(trajectory) if trajectory is not None else [],
                targets=paths.targets(target) if target is not None else [],
                states=states,
                hessian_samples=hessian_samples,
                repeat=repeat,
                orthogonal_to_weights=orthogonal_to_weights,
                params=[params] if isinstance(params, str) else list(params),
                exclude=[exclude] if isinstance(exclude, str) else list(exclude),
                store=store_directions,
            )
        keep = None if out is not None else tempfile.TemporaryDirectory(prefix="landscape-")
        target = out if keep is None else Path(keep.name) / "surface.h5"
        config = _config(
            model, session, spec, loss, x, y, bn, bn_batches, device, engine, dtype, batch_size,
            max_samples, data_seed, target,
        )  # fmt: skip
        from landscape.runs.surface import run_surface

        given = _given_directions(directions, session) if directions is not None else None
        result = run_surface(
            config,
            session,
            overwrite=overwrite,
            progress=_bar if progress else None,
            directions=given,
        )
    return _attach(load(result.path), keep)


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

    path = str(surface.path if isinstance(surface, Surface) else surface)
    session = Session.from_objects(model, data, loss=loss, device=device)
    keep = None if out is not None else tempfile.TemporaryDirectory(prefix="landscape-")
    target = str(out) if out is not None else str(Path(keep.name) / "curvature.h5")
    spec = CurvatureSpec(
        path, _axis(x) if x is not None else None, _axis(y) if y is not None else None,
        samples, tol, ignore, out=target,
    )  # fmt: skip
    result = run_curvature_on(
        spec, session, overwrite=overwrite, progress=_bar if progress else None
    )
    return _attach(read_curvature(result.path), keep)


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


def _config(
    model: torch.nn.Module,
    session: Session,
    spec: DirectionSpec,
    loss: Any,
    x: Axis,
    y: Axis | None,
    bn: str,
    bn_batches: int,
    device: str,
    engine: str,
    dtype: str,
    batch_size: int,
    max_samples: int | None,
    data_seed: int,
    out: str | Path,
) -> ComputeConfig:
    """The config a run records: the objects named as ``in-memory:`` specs (provenance only, never
    resolved), everything else as the command line would fill it."""
    loss_name = loss if isinstance(loss, str) else f"{IN_MEMORY}{getattr(loss, '__name__', 'loss')}"
    data_name = str(session.data.describe()["name"])
    return ComputeConfig(
        # the weights are the object's own: recorded as such (interpolate starts at them)
        model=ModelSpec(
            name=f"{IN_MEMORY}{type(model).__name__}", checkpoint=f"{IN_MEMORY}weights"
        ),
        data=DataSpec(
            name=data_name, max_samples=max_samples, seed=data_seed, batch_size=batch_size
        ),
        out=str(out),
        direction=spec,
        grid=GridSpec(x=_axis(x), y=_axis(y) if y is not None else None),
        eval=EvalSpec(
            loss=loss_name, device=device, engine=engine, bn=bn, bn_batches=bn_batches, dtype=dtype
        ),
    )


def _given_directions(directions: Sequence[Mapping[str, torch.Tensor]], session: Session) -> Any:
    """``[d1]`` or ``[d1, d2]`` as a DirectionSet, checked against the model's tensors."""
    from landscape.directions.base import DirectionSet

    vectors = []
    for axis, d in zip("xy", directions, strict=False):
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


class _Paths:
    """Checkpoints handed as objects, written as files for the run's directions to read."""

    def __init__(self, folder: Path, session: Session) -> None:
        self.folder, self.session, self.count = folder, session, 0

    def file(self, item: Any, name: str | None = None) -> str:
        if isinstance(item, (str, Path)):
            return str(item)
        state = item.state_dict() if isinstance(item, torch.nn.Module) else dict(item)
        path = self.folder / (name or f"state_{self.count:03d}.pt")
        self.count += 1
        torch.save({k: v.detach().cpu() for k, v in state.items()}, path)
        return str(path)

    def trajectory(self, items: Sequence[Any]) -> list[str]:
        """The path in training order, ending at the centre: the model is appended unless the
        last checkpoint given already holds its weights."""
        files = [self.file(item) for item in items]
        if not files or not self._is_centre(files[-1]):
            centre = {k: v.detach().cpu() for k, v in self.session.centre.items()}
            files.append(self.file(centre, "model.pt"))
        return files

    def targets(self, target: Any) -> list[str]:
        items = list(target) if isinstance(target, (list, tuple)) else [target]
        return [self.file(item) for item in items]

    def _is_centre(self, path: str) -> bool:
        state = self.session.load_state(path)
        return all(torch.equal(state[k], v.detach().cpu()) for k, v in self.session.centre.items())


def _bar(total: int, initial: int) -> Any:
    """A notebook widget where ipywidgets is installed, else tqdm's text bar: ``tqdm.auto``
    without ipywidgets warns "IProgress not found" in a notebook before falling back to it."""
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pt", desc="points", mininterval=0.5)


def _attach(result: Any, keep: tempfile.TemporaryDirectory | None) -> Any:
    """Keep a temporary folder alive as long as the object read from it."""
    if keep is not None:
        result._folder = keep  # removed when the object is garbage-collected
    return result
