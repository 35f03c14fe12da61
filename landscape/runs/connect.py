"""Train the bend of a curve between two networks (``landscape connect``, ``landscape.connect``;
Garipov et al., "Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs", NeurIPS 2018).

The ends A and B stay fixed; the bend C starts at the midpoint (A + B)/2 and is trained to
minimize the expected loss over the curve, ``E_{t ~ U(0,1)} L(θ(t))`` (``landscape.curves``
defines θ(t) for the quadratic Bézier and the polychain): at every SGD step a fresh t is drawn,
the model is run at θ(t) on one batch and the gradient flows to C through
``∂θ(t)/∂C = w_C(t)``. BatchNorm layers run in train mode (batch statistics) during training,
as Garipov et al. do; the statistics of a point are re-estimated when it is evaluated (``compute
--direction curve --bn recalibrate``). Only parameters are trained; C's floating-point buffers
are the midpoint of A's and B's (``Curve.at`` mixes them, recalibration replaces them).

The draws are derived from ``seed`` per epoch and step (the shuffle, the t's, the dropout
masks), never from the process's generators (those are left as they were), so a run that was
killed and rerun continues from its last saved state (``.NAME.partial`` beside the output: C,
the momentum buffers, the epoch and step, the losses so far) to the very C of an uninterrupted
run. A rerun with other settings, or for another pair, is refused in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from landscape import curves
from landscape._files import Output, not_regular, write_bytes_atomically
from landscape.curves import Curve, StateDict
from landscape.errors import ConfigError, SurfaceFileError
from landscape.runs.connect_settings import ConnectConfig, TrainSettings
from landscape.session import Session
from landscape.version import __version__

TRAINING_FORMAT = "landscape-curve-training"  # the .partial file's format

Progress = Any  # a tqdm-like bar: update(n), close()
ProgressFactory = Callable[[int, int], Progress]  # (total steps, steps already done)


@dataclass
class Pair:
    """What training starts from: the session (the model at A, the training data, the loss),
    B's state checked against A's, and where each came from (files' sha256, or "")."""

    session: Session
    b: StateDict
    a_file_sha256: str = ""
    b_file_sha256: str = ""

    def identity(self, settings: TrainSettings) -> dict[str, Any]:
        """What a rerun must share with the run whose file it continues."""
        data = self.session.data.describe()
        return {
            "a_weights_sha256": curves.tensors_sha256(self.a),
            "b_weights_sha256": curves.tensors_sha256(self.b),
            "data_sha256": data.get("data_sha256", ""),
            "samples": len(self.session.data),
            **settings.fingerprint(),
        }

    @property
    def a(self) -> StateDict:
        return OrderedDict((k, v.detach().cpu()) for k, v in self.session.centre.items())


@dataclass
class State:
    """The training's progress: C, the momentum buffers, where it stands, the losses so far."""

    c: StateDict
    momentum: dict[str, torch.Tensor] = field(default_factory=dict)
    epoch: int = 0
    step: int = 0  # within the epoch
    losses: list[float] = field(default_factory=list)  # mean training loss of each epoch done
    epoch_sum: float = 0.0
    epoch_count: int = 0


# --- the maths of one step ------------------------------------------------------------------


def draw_seed(seed: int, *where: int) -> int:
    """A generator seed for one draw (epoch, step, ...), hashed from the run's seed, so that no
    draw replays another's stream and a resumed run draws what the uninterrupted one drew."""
    text = ":".join(str(v) for v in (seed, *where)).encode()
    return int.from_bytes(hashlib.sha256(b"landscape.connect:" + text).digest()[:8], "big")


def epoch_draws(settings: TrainSettings, epoch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Epoch ``epoch``'s shuffle of the n samples and its t ~ U(0, 1), one per step."""
    gen = torch.Generator().manual_seed(draw_seed(settings.seed, epoch))
    order = torch.randperm(n, generator=gen)
    return order, torch.rand(steps_per_epoch(n, settings.batch_size), generator=gen)


def steps_per_epoch(n: int, batch: int) -> int:
    """Full batches only (a last batch of one sample cannot take batch statistics)."""
    return max(1, n // batch)


@contextlib.contextmanager
def train_mode(model: torch.nn.Module) -> Iterator[None]:
    """Every submodule in train mode (BatchNorm on batch statistics), each flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class Trainer:
    """SGD on the bend C at a fresh θ(t) each step: the model is called with θ(t)'s tensors
    (``functional_call``: its own weights are never written)."""

    def __init__(self, pair: Pair, settings: TrainSettings, state: State) -> None:
        session = pair.session
        self.settings, self.device, self.model = settings, session.device, session.model
        self.names = list(session.theta)  # the parameters: the tensors C holds and trains
        self.a = {k: session.centre[k].detach().float() for k in self.names}
        self.b = {k: pair.b[k].to(self.device).float() for k in self.names}
        self.c = {k: state.c[k].to(self.device).float().requires_grad_(True) for k in self.names}
        # buffers ride along at A's values; batch statistics normalize in train mode
        self.buffers = {k: v.clone() for k, v in session.centre.items() if k not in session.theta}
        self.x, self.y = session.data.tensors(self.device)
        self.loss_fn = session.loss_fn
        self.opt = torch.optim.SGD(
            list(self.c.values()), lr=settings.lr, momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )  # fmt: skip
        for k, buf in state.momentum.items():
            self.opt.state[self.c[k]] = {"momentum_buffer": buf.to(self.device).float().clone()}

    def step(self, index: torch.Tensor, t: float, seed: int) -> float:
        """One SGD step on C at θ(t) = w_A·A + w_C·C + w_B·B over the samples ``index``."""
        x, y = self.x[index.to(self.x.device)], self.y[index.to(self.y.device)]
        theta = curves.combine(self.settings.curve, t, self.a, self.c, self.b, self.names)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), train_mode(self.model):
            torch.manual_seed(seed)  # dropout masks of this step, the process's stream untouched
            out = functional_call(self.model, {**theta, **self.buffers}, (x,))
            loss = self.loss_fn(out, y).float().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # ∂L/∂C = w_C(t) · ∂L/∂θ(t)
        self.opt.step()
        return float(loss.detach())

    def snapshot(self, state: State) -> None:
        """C and the momentum buffers into ``state`` (CPU copies)."""
        state.c.update({k: v.detach().cpu().clone() for k, v in self.c.items()})
        state.momentum = {
            k: self.opt.state[v]["momentum_buffer"].detach().cpu().clone()
            for k, v in self.c.items()
            if self.opt.state.get(v, {}).get("momentum_buffer") is not None
        }


# --- the run ----------------------------------------------------------------------------------


def train_curve(
    pair: Pair,
    settings: TrainSettings,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
    after_step: Callable[[int], None] | None = None,
) -> Curve:
    """Train the bend between ``pair``'s A and B; with ``out``, write the curve file there,
    resuming the training saved beside it (``.NAME.partial``), or return the curve ``out``
    already holds when it was made by this very run. ``after_step(steps done)`` is called after
    each step (a test stops a run there)."""
    identity = pair.identity(settings)
    output = Output(out, overwrite, "--out") if out is not None else None
    try:
        if output is not None:
            done = _finished(output, identity)
            if done is not None:
                return done
        state = _resumed(output, identity) or _fresh(pair)
        _train(pair, settings, state, output, identity, progress, after_step)
        curve = _curve(pair, settings, state, identity)
        if output is not None:
            write_bytes_atomically(output.final, curve.to_bytes())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(output.partial)
        return curve
    finally:
        if output is not None:
            output.close()


def _fresh(pair: Pair) -> State:
    """C at the midpoint (A + B)/2, every tensor (buffers too), formed in float64."""
    a = pair.a
    c = OrderedDict(
        (k, ((v.double() + pair.b[k].double()) / 2).to(v.dtype) if v.is_floating_point() else v)
        for k, v in a.items()
    )
    return State(c)


def _train(
    pair: Pair,
    settings: TrainSettings,
    state: State,
    output: Output | None,
    identity: dict[str, Any],
    progress: ProgressFactory | None,
    after_step: Callable[[int], None] | None,
) -> None:
    """The epochs from where ``state`` stands; the state saved at most every ``save_seconds``
    and at each epoch's end."""
    trainer = Trainer(pair, settings, state)
    n = len(pair.session.data)
    steps = steps_per_epoch(n, settings.batch_size)
    done = state.epoch * steps + state.step
    bar = progress(settings.epochs * steps, done) if progress is not None else None
    last_save = time.monotonic()
    try:
        for epoch in range(state.epoch, settings.epochs):
            order, ts = epoch_draws(settings, epoch, n)
            for i in range(state.step, steps):
                batch = order[i * settings.batch_size : (i + 1) * settings.batch_size]
                loss = trainer.step(batch, float(ts[i]), draw_seed(settings.seed, epoch, i + 1))
                state.step, state.epoch_sum, state.epoch_count = (
                    i + 1, state.epoch_sum + loss, state.epoch_count + 1,
                )  # fmt: skip
                done += 1
                if bar is not None:
                    bar.update(1)
                if output is not None and time.monotonic() - last_save >= settings.save_seconds:
                    _save_state(output, trainer, state, identity)
                    last_save = time.monotonic()
                if after_step is not None:
                    after_step(done)
            state.losses.append(state.epoch_sum / max(1, state.epoch_count))
            state.epoch, state.step, state.epoch_sum, state.epoch_count = epoch + 1, 0, 0.0, 0
            if output is not None:
                _save_state(output, trainer, state, identity)
                last_save = time.monotonic()
    finally:
        if bar is not None:
            bar.close()
    trainer.snapshot(state)


def _save_state(output: Output, trainer: Trainer, state: State, identity: dict[str, Any]) -> None:
    """The training state, whole or not at all, into the partial file beside the output."""
    from safetensors.torch import save

    trainer.snapshot(state)
    tensors = {f"c/{k}": v.contiguous() for k, v in state.c.items()}
    tensors.update({f"m/{k}": v.contiguous() for k, v in state.momentum.items()})
    record = {
        "identity": identity, "epoch": state.epoch, "step": state.step, "losses": state.losses,
        "epoch_sum": state.epoch_sum, "epoch_count": state.epoch_count,
    }  # fmt: skip
    meta = curves.file_metadata(record, TRAINING_FORMAT)
    write_bytes_atomically(output.partial, save(tensors, metadata=meta))


def _resumed(output: Output | None, identity: dict[str, Any]) -> State | None:
    """The state an interrupted run of this very training left beside the output; None: none
    (or, with --overwrite, one of another training, which is started afresh)."""
    if output is None or not os.path.lexists(output.partial):
        return None
    kind = not_regular(output.partial, follow=False)
    if kind is not None:
        raise SurfaceFileError(f"{str(output.partial)!r} is {kind}, not a file; remove it")
    tensors, meta = curves.read_safetensors(output.partial, "training state", TRAINING_FORMAT)
    record = _json(meta)
    difference = _difference(record.get("identity", {}), identity)
    if difference is not None:
        if output.overwrite:
            return None
        raise ConfigError(
            f"{str(output.partial)!r} holds an interrupted training {difference}; rerun that "
            "command to continue it, or pass --overwrite to start this one afresh"
        )
    c = OrderedDict((k[2:], v) for k, v in tensors.items() if k.startswith("c/"))
    momentum = {k[2:]: v for k, v in tensors.items() if k.startswith("m/")}
    return State(
        c, momentum, int(record["epoch"]), int(record["step"]), list(record["losses"]),
        float(record["epoch_sum"]), int(record["epoch_count"]),
    )  # fmt: skip


def _finished(output: Output, identity: dict[str, Any]) -> Curve | None:
    """The curve ``--out`` already holds, when this very training made it; None when there is
    none (or --overwrite replaces it); a curve of another pair or settings is refused."""
    if output.overwrite or not output.final.exists():
        return None
    curve = curves.load_curve(output.final)
    difference = _difference(curve.record.get("identity", {}), identity)
    if difference is not None:
        raise ConfigError(
            f"{str(output.final)!r} is a curve {difference}; pass --overwrite to replace it, "
            "or another --out"
        )
    return curve


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """How the run that made a file differs from this one, in words; None: not at all."""
    words = {
        "a_weights_sha256": "for another pair (its A differs from --checkpoint)",
        "b_weights_sha256": "for another pair (its B differs from --target)",
        "data_sha256": "on other training data",
    }
    for key, value in new.items():
        if old.get(key) != value:
            return words.get(
                key, f"with other settings ({key}: {old.get(key)!r} there, {value!r} now)"
            )
    return None


def _json(meta: dict[str, str]) -> dict[str, Any]:
    import json

    record = json.loads(meta["landscape_curve"])
    if not isinstance(record, dict):
        raise SurfaceFileError("the training state's record is not a mapping; remove the file")
    return record


def _curve(pair: Pair, settings: TrainSettings, state: State, identity: dict) -> Curve:
    """The trained curve with its record: how it was trained, from what, the losses."""
    data = pair.session.data.describe()
    record = {
        "identity": identity,
        "training": settings.fingerprint(),
        "a_sha256": pair.a_file_sha256,
        "b_sha256": pair.b_file_sha256,
        "data": {k: data[k] for k in ("name", "data_sha256") if k in data},
        "losses": state.losses,
        "steps": settings.epochs * steps_per_epoch(len(pair.session.data), settings.batch_size),
        "landscape_version": __version__,
    }
    c = OrderedDict((k, state.c[k].to(v.dtype)) for k, v in pair.a.items())
    return Curve(settings.curve, pair.a, OrderedDict(pair.b), c, record)


def pair_of(session: Session, b: Any, a_file_sha256: str = "", b_file_sha256: str = "") -> Pair:
    """The pair to connect: ``b`` (a checkpoint file, state dict or model) checked against the
    session's model at A, name by name and shape by shape; the same weights twice are refused."""
    state = session.load_state(b)  # DirectionError for another architecture
    if all(torch.equal(state[k], v.detach().cpu()) for k, v in session.theta.items()):
        raise ConfigError(
            "the target B holds the same weights as A (--checkpoint); a curve needs two "
            "different networks: give --target the other one"
        )
    return Pair(session, state, a_file_sha256, b_file_sha256)


def run_connect(
    config: ConnectConfig,
    *,
    overwrite: bool = False,
    progress: ProgressFactory | None = None,
) -> Curve:
    """``landscape connect``: the config's model at --checkpoint (A), its --target (B) and its
    training data loaded, the bend trained and the curve file written to ``config.out``."""
    from landscape.checkpoint import file_sha256
    from landscape.session import same_weights

    ckpt = config.model.checkpoint
    if not ckpt:
        raise ConfigError("connect starts at --checkpoint A; give the first network's checkpoint")
    for what, path in (("--checkpoint", ckpt), ("--target", config.target)):
        if not Path(path).is_file():
            raise ConfigError(f"{what} file {path!r} does not exist; check the path")
    if same_weights(ckpt, config.target, config.model.unsafe_pickle):
        raise ConfigError(
            f"--target {config.target!r} is the same checkpoint as --checkpoint {ckpt!r}; a "
            "curve joins two different networks"
        )
    Output(config.out, overwrite, "--out").close()  # a bad --out refused before loading
    session = Session.from_specs(
        config.model, replace(config.data, split="train"), loss=config.loss,
        device=config.device, seed=config.train.seed,
    )  # fmt: skip
    pair = pair_of(session, config.target, file_sha256(ckpt), file_sha256(config.target))
    return train_curve(pair, config.train, config.out, overwrite=overwrite, progress=progress)
