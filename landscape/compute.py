"""One ``landscape compute`` run: config → model, data, directions → store → evaluated points."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from landscape import checkpoint, grid, params
from landscape.config import ComputeConfig
from landscape.data import EvalData, load_data
from landscape.directions import DirectionContext, DirectionSet, build, load_directions, summarize
from landscape.directions.paths import expand_checkpoints
from landscape.engine import ReferenceEvaluator, eval_mode, resolve_device
from landscape.engine.reference import PointEvaluatorBase
from landscape.engine.select import EngineRequest, choose_engine, parse_bytes
from landscape.errors import ConfigError, DirectionError, LandscapeError
from landscape.losses import correct_count, get_loss
from landscape.models import build_model
from landscape.store import RunHeader, SurfaceStore, check_resumable

FLUSH_SECONDS = 1.0  # a killed run loses at most about this much work
FLUSH_POINTS = 64


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def close(self) -> None: ...


ProgressFactory = Callable[[int, int], Progress]  # (total points, points already done)


@dataclass
class RunResult:
    path: str
    total: int
    computed: int  # points evaluated by this run
    resumed: bool
    nonfinite: int  # points whose loss is NaN or infinite (stored as such)
    seconds: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def points_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else math.nan


@dataclass
class Prepared:
    """Everything loaded for a run, before any file is touched."""

    model: torch.nn.Module
    centre: OrderedDict[str, torch.Tensor]  # parameters and buffers, on the device
    theta: OrderedDict[str, torch.Tensor]  # parameters only
    data: EvalData
    device: torch.device
    checkpoint_sha256: str
    weights_sha256: str


def prepare(config: ComputeConfig) -> Prepared:
    """Load the model (with its checkpoint), the data and the loss; check they fit together."""
    device = resolve_device(config.eval.device)
    model = build_model(config.model.name, config.model.args)
    ckpt = centre_checkpoint(config)
    ckpt_sha = ""
    if ckpt:
        state = checkpoint.load_state_dict(ckpt, unsafe_pickle=config.model.unsafe_pickle)
        checkpoint.check_finite(state)
        checkpoint.apply_state_dict(model, state)
        ckpt_sha = checkpoint.file_sha256(ckpt)
    else:
        checkpoint.check_finite(model.state_dict())
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"model {config.model.name!r} has no parameters; nothing to move along")
    model = model.to(device)
    theta = params.parameters_of(model)
    centre = OrderedDict(theta)
    centre.update(params.buffers_of(model))
    data = load_data(config.data)
    return Prepared(model, centre, theta, data, device, ckpt_sha, weights_sha256(centre))


def centre_checkpoint(config: ComputeConfig) -> str | None:
    """The checkpoint at the centre: --checkpoint, or for a trajectory its last checkpoint."""
    d = config.direction
    if d.name != "trajectory" or d.file or not d.trajectory:
        return config.model.checkpoint
    last = str(expand_checkpoints(d.trajectory)[-1])
    given = config.model.checkpoint
    if given and Path(given).resolve() != Path(last).resolve():
        raise ConfigError(
            f"--checkpoint {given!r} is not the last trajectory checkpoint {last!r}, which is the "
            "centre of a trajectory surface; drop --checkpoint or reorder --trajectory"
        )
    return last


def other_checkpoint_loader(prep: Prepared, config: ComputeConfig) -> Callable[[str], OrderedDict]:
    """``load_state(path)``: another checkpoint of this architecture, checked against the centre."""
    reference = OrderedDict((k, v.detach().cpu()) for k, v in prep.centre.items())

    def load_state(path: str) -> OrderedDict[str, torch.Tensor]:
        try:
            state = checkpoint.load_state_dict(str(path), unsafe_pickle=config.model.unsafe_pickle)
            checkpoint.check_finite(state)
        except LandscapeError as exc:
            raise DirectionError(str(exc)) from None
        out = OrderedDict()
        for name, ref in reference.items():
            if name not in state:
                if name.endswith("num_batches_tracked"):
                    out[name] = ref
                    continue
                raise DirectionError(
                    f"checkpoint {str(path)!r} has no tensor {name}; was it saved from another model?"
                )
            t = state[name]
            if tuple(t.shape) != tuple(ref.shape):
                raise DirectionError(
                    f"checkpoint {str(path)!r}: tensor {name} has shape {tuple(t.shape)}, the centre's "
                    f"{tuple(ref.shape)}; all checkpoints must come from the same architecture"
                )
            out[name] = t.detach().cpu().to(ref.dtype)
        return out

    return load_state


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of the tensors' names and bytes: identifies the centre θ whatever file it came from."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def probe(prep: Prepared, config: ComputeConfig, directions: list[dict[str, torch.Tensor]]) -> None:
    """Run one small batch at θ so a model/data/loss mismatch fails before any file is written."""
    x, y = next(iter(prep.data.batches(min(config.data.batch_size, 8), prep.device)))
    loss_fn = get_loss(config.eval.loss)
    plain = ReferenceEvaluator(
        prep.model, prep.centre, directions, lambda: iter(()), loss_fn, correct_count
    )
    try:
        with eval_mode(prep.model), torch.inference_mode():
            logits = plain.forward(prep.centre)(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model {config.model.name!r} cannot run on data {config.data.name!r} "
            f"(inputs of shape {tuple(x.shape[1:])}): {first}; check --model, --model-arg and --data"
        ) from None
    try:
        loss_fn(logits, y)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ConfigError(
            f"loss {config.eval.loss!r} cannot compare the model's outputs {tuple(logits.shape)} "
            f"with targets {tuple(y.shape)}: {str(exc).splitlines()[0]}; check --loss"
        ) from None


def directions_for(
    config: ComputeConfig, prep: Prepared, *, resume_from: Path | None
) -> DirectionSet:
    """The run's directions: read back from the file being resumed, from --directions, or built."""
    count = config.dims
    if resume_from is not None:
        return load_directions(str(resume_from), prep.theta, prep.centre, count)
    if config.direction.file:
        return load_directions(config.direction.file, prep.theta, prep.centre, count)
    data = prep.data
    if config.direction.name == "hessian":  # the Hessian is taken over a seeded subset, loaded once
        n = min(config.direction.hessian_samples, len(prep.data))
        data = load_data(replace(config.data, max_samples=n)) if n < len(prep.data) else prep.data
    ctx = DirectionContext(
        theta=OrderedDict((k, v.detach().cpu().float()) for k, v in prep.theta.items()),
        spec=config.direction,
        count=count,
        state=OrderedDict((k, v.detach().cpu()) for k, v in prep.centre.items()),
        load_state=other_checkpoint_loader(prep, config),
        model=prep.model,
        batches=lambda: data.batches(config.data.batch_size, prep.device),
        loss_fn=get_loss(config.eval.loss),
        device=prep.device,
    )
    return build(ctx)


def run_compute(
    config: ComputeConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
) -> RunResult:
    """Compute (or resume) the surface described by ``config`` into ``config.out``."""
    start = time.perf_counter()
    out = Path(config.out)
    prep = prepare(config)
    x, y = grid.coordinates(config.grid)
    extra = {"data": prep.data.describe(), "weights_sha256": prep.weights_sha256}
    resuming = out.exists() and not overwrite
    if resuming:  # refuse a file of another run before reading anything from it
        check_resumable(
            out, RunHeader(config, x, y, DirectionSet("", []), {}, prep.checkpoint_sha256, extra)
        )
    directions = directions_for(config, prep, resume_from=out if resuming else None)
    device_dirs = directions.to(prep.device).vectors
    probe(prep, config, device_dirs)
    choice = choose_engine(
        prep.model,
        prep.centre,
        device_dirs,
        lambda: prep.data.batches(config.data.batch_size, prep.device),
        get_loss(config.eval.loss),
        correct_count,
        engine_request(config, prep),
        _pending_guess(out, resuming, x, y),
    )
    evaluator = choice.evaluator
    extra["engine"] = choice.report
    header = RunHeader(
        config, x, y, directions, summarize(directions), prep.checkpoint_sha256, extra
    )
    with (
        SurfaceStore.open_for_run(out, header, overwrite=overwrite) as store,
        numerics(config, prep.device),
    ):
        pending = store.pending()
        total = int(np.prod(store.shape))
        bar = progress(total, total - len(pending)) if progress else None
        eval_start = time.perf_counter()
        try:
            _evaluate_pending(evaluator, store, pending, x, y, bar)
        finally:
            if bar is not None:
                bar.close()
        eval_seconds = time.perf_counter() - eval_start
        nonfinite = store.nonfinite_count()
        resumed = store.resumed
    seconds = time.perf_counter() - start
    return RunResult(
        str(out),
        total,
        len(pending),
        resumed,
        nonfinite,
        seconds,
        str(prep.device),
        {"engine": choice.report, "eval_seconds": eval_seconds},
    )


def engine_request(config: ComputeConfig, prep: Prepared) -> EngineRequest:
    """The evaluator options the config asks for (BN policy, precision, layout, compile, budget)."""
    ev = config.eval
    options: dict[str, Any] = {"bn": ev.bn, "autocast": autocast_dtype(ev.dtype, prep.device)}
    if ev.bn == "recalibrate":
        train = load_data(replace(config.data, split="train"))
        bs, n = config.data.batch_size, ev.bn_batches
        options["train_batches"] = lambda: itertools.islice(train.batches(bs, prep.device), n)
    return EngineRequest(
        engine=ev.engine,
        compile=ev.compile,
        memory_format=ev.memory_format,
        memory_budget=parse_bytes(ev.memory_budget),
        batch_size=config.data.batch_size,
        options=options,
    )


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """float32 → no autocast; bfloat16/float16 only where the device runs them."""
    if name == "float32":
        return None
    dtype = getattr(torch, name)
    if device.type == "cpu" and dtype is torch.float16:
        raise ConfigError("--dtype float16 needs a GPU; on a CPU use --dtype bfloat16 or float32")
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bfloat16; use --dtype float16 or float32")
    return dtype


@contextlib.contextmanager
def numerics(config: ComputeConfig, device: torch.device) -> Iterator[None]:
    """Threads and TF32 for the run's duration, restored afterwards."""
    threads = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if config.eval.threads:
        torch.set_num_threads(config.eval.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = config.eval.tf32
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _pending_guess(out: Path, resuming: bool, x: np.ndarray, y: np.ndarray | None) -> int:
    """Points this run will evaluate, for the compile decision (a read-only peek when resuming)."""
    total = len(x) * (1 if y is None else len(y))
    if not resuming:
        return total
    import h5py

    with h5py.File(out, "r") as f:
        return int((~f["done"][()]).sum())


def _evaluate_pending(
    evaluator: PointEvaluatorBase,
    store: SurfaceStore,
    pending: np.ndarray,
    x: np.ndarray,
    y: np.ndarray | None,
    bar: Progress | None,
) -> None:
    """Evaluate points chunk by chunk (K at a time on the batched path), writing in blocks of at
    most FLUSH_POINTS points or FLUSH_SECONDS seconds."""
    chunk = getattr(evaluator, "k", 1)
    block: list[tuple[int, float, float]] = []
    last = time.perf_counter()
    for start in range(0, len(pending), chunk):
        flats = [int(f) for f in pending[start : start + chunk]]
        results = evaluator.evaluate_block([grid.point_coords(f, x, y) for f in flats])
        block.extend((f, r.loss, r.acc) for f, r in zip(flats, results, strict=True))
        if bar is not None:
            bar.update(len(flats))
        if len(block) >= FLUSH_POINTS or time.perf_counter() - last >= FLUSH_SECONDS:
            store.write_block(*zip(*block, strict=True))
            block, last = [], time.perf_counter()
    if block:
        store.write_block(*zip(*block, strict=True))
