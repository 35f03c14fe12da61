"""What one process loads for a run: the model at θ, the data, the loss, and how to load the rest.

A :class:`Session` is built either from a config's strings (:meth:`Session.from_config`, what the
CLI, YAML and sweeps do) or from objects (:meth:`Session.from_objects`, what the Python API does:
an ``nn.Module`` and tensors, a Dataset, a DataLoader or batches). Everything after it, compute,
curvature and inspect, works on the session alone, so an in-memory model and a checkpoint file go
through the same code. The caller's model is never changed: a session holds its own copy.

Besides θ (``theta``: parameters; ``centre``: parameters and buffers) a session knows how to load
another checkpoint of the same architecture checked against θ (``load_state``: trajectories and
interpolation targets), a seeded subset of its data (``subset``: the Hessian's samples) and
training batches for ``--bn recalibrate`` (``train_data``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from landscape import checkpoint, families, params
from landscape.checkpoint_paths import Weights
from landscape.config import IN_MEMORY, ComputeConfig, DataSpec, EvalSpec, ModelSpec
from landscape.data import EvalData, as_eval_data, load_data
from landscape.engine import ReferenceEvaluator, eval_mode, resolve_device
from landscape.errors import (
    ConfigError,
    DataError,
    DirectionError,
    LandscapeError,
    LandscapeWarning,
    first_line,
)
from landscape.losses import LossFn, get_loss, is_per_token
from landscape.models import build_model, sources
from landscape.tasks import task_of

StateDict = OrderedDict[str, torch.Tensor]


@dataclass
class Session:
    """Everything loaded for a run on one process, before any file is touched."""

    model: torch.nn.Module
    centre: StateDict  # parameters and buffers, on the device
    theta: StateDict  # parameters only
    data: EvalData
    device: torch.device
    checkpoint_sha256: str
    weights_sha256: str
    loss_fn: LossFn
    load_state: Callable[[Any], StateDict]  # a path, a state dict or a model → checked state
    subset: Callable[[int], EvalData]  # the first n samples of the data's seeded permutation
    train_data: Callable[[], EvalData]  # the samples --bn recalibrate re-estimates statistics on

    # --- built from strings ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: ComputeConfig, local_rank: int = 0, local_size: int = 1
    ) -> Session:
        """Load the model (with its checkpoint), the data and the loss a config names.

        With several processes on a machine, each takes its own GPU: ``cuda:{local rank}``.
        """
        model = replace(config.model, checkpoint=centre_checkpoint(config))
        return cls.from_specs(
            model,
            config.data,
            loss=config.eval.loss,
            device=config.eval.device,
            seed=config.direction.seed,
            local_rank=local_rank,
            local_size=local_size,
            weights_dtype=None if config.eval.dtype == "float32" else config.eval.dtype,
        )

    @classmethod
    def from_specs(
        cls,
        model: ModelSpec,
        data: DataSpec,
        *,
        loss: str = EvalSpec.loss,
        device: str = EvalSpec.device,
        seed: int = 0,
        local_rank: int = 0,
        local_size: int = 1,
        weights_dtype: str | None = None,
    ) -> Session:
        """Load the model spec at its checkpoint (or its initialization seeded by ``seed``),
        the data spec and the loss spec: what ``compute``, ``curvature`` and ``inspect`` name.
        ``weights_dtype``: an ``hf:`` folder's weights are loaded in it (``bfloat16``)."""
        where = resolve_device(device)
        if where.type == "cuda" and local_size > 1 and where.index is None:
            where = torch.device("cuda", local_rank % torch.cuda.device_count())
        network, ckpt_sha = _model_at(model, seed, weights_dtype)
        implied = sources.data_defaults(model.name)  # e.g. an hf: folder's own tokenizer
        data = replace(data, **{k: v for k, v in implied.items() if getattr(data, k) is None})
        evaluation = load_data(data)
        if evaluation.split is None and data.split != "train":  # train: the default, not a choice
            warnings.warn(
                f"data {data.name!r} holds one set, not splits: --split {data.split} evaluates "
                f"all of it; to evaluate a {data.split} set, give that set's own data",
                LandscapeWarning,
                stacklevel=2,
            )

        def subset(n: int) -> EvalData:
            return load_data(replace(data, max_samples=n)) if n < len(evaluation) else evaluation

        return cls._assemble(
            network,
            evaluation,
            where,
            ckpt_sha,
            get_loss(loss, task_of(network)),
            model.unsafe_pickle,
            subset,
            lambda: load_data(replace(data, split="train")),
        )

    # --- built from objects ---------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls,
        model: torch.nn.Module,
        data: Any,
        *,
        loss: str | LossFn = EvalSpec.loss,
        device: str | torch.device = EvalSpec.device,
        max_samples: int | None = DataSpec.max_samples,
        data_seed: int = DataSpec.seed,
        train_data: Any = None,
    ) -> Session:
        """A session on an in-memory model and data: ``data`` is a ``(x, y)`` pair of tensors or
        arrays, a map-style Dataset, a DataLoader or an iterable of ``(x, y)`` batches. The model is
        copied (the caller's is never changed); ``train_data`` (default: ``data``) is what
        ``bn="recalibrate"`` re-estimates BatchNorm statistics on."""
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got a {type(model).__name__}")
        evaluation = as_eval_data(data, max_samples=max_samples, seed=data_seed)
        training = evaluation if train_data is None else as_eval_data(train_data)
        private = copy.deepcopy(model)
        private = sources.adopt(private)  # e.g. transformers: fed token ids, read back as logits
        checkpoint.check_finite(private.state_dict())

        def subset(n: int) -> EvalData:
            return evaluation.subset(n, data_seed) if n < len(evaluation) else evaluation

        return cls._assemble(
            private,
            evaluation,
            resolve_device(str(device)),
            "",
            loss_function(loss, task_of(private)),
            False,
            subset,
            lambda: training,
        )

    @classmethod
    def _assemble(
        cls,
        model: torch.nn.Module,
        data: EvalData,
        device: torch.device,
        ckpt_sha: str,
        loss_fn: LossFn,
        unsafe_pickle: bool,
        subset: Callable[[int], EvalData],
        train_data: Callable[[], EvalData],
    ) -> Session:
        if not any(True for _ in model.parameters()):
            raise ConfigError("the model has no parameters; there is nothing to move along")
        dtype = _weights_dtype(model)
        data = _inputs_for(data, dtype, say=True)
        model = model.to(device)
        theta = params.parameters_of(model)
        centre = OrderedDict(theta)
        centre.update(params.buffers_of(model))
        load_state = state_loader(centre, unsafe_pickle)
        return cls(
            model,
            centre,
            theta,
            data,
            device,
            ckpt_sha,
            weights_sha256(centre),
            loss_fn,
            load_state,
            lambda n: _inputs_for(subset(n), dtype),
            lambda: _inputs_for(train_data(), dtype),
        )

    def loss_units(self) -> dict[str, Any]:
        """What a point's mean loss averages over, for the file and ``info``: for a per-token
        loss its name and the number of predicted tokens of the set (``predicted_tokens``)."""
        if not is_per_token(self.loss_fn):
            return {}
        y = self.data.tensors("cpu")[1]
        return {
            "loss_name": self.loss_fn.name,
            "predicted_tokens": int(self.loss_fn.counted(y).sum()),
        }

    # --- checks ---------------------------------------------------------------------------------

    def probe(
        self,
        directions: list[dict[str, torch.Tensor]],
        batch_size: int,
        names: tuple[str, str, str],
    ) -> None:
        """Run one small batch at θ so that a model/data/loss mismatch fails before any file is
        written. ``names``: the specs the messages name (``model``, ``data``, ``loss``)."""
        model_name, data_name, loss_name = names
        x, y = next(iter(self.data.batches(min(batch_size, 8), self.device)))
        plain = ReferenceEvaluator(
            self.model, self.centre, directions, lambda: iter(()), self.loss_fn
        )
        try:
            with eval_mode(self.model), torch.inference_mode():
                logits = plain.forward(self.centre)(x)
        except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as exc:
            first = first_line(exc)
            raise ConfigError(
                f"model {model_name!r} cannot run on data {data_name!r} "
                f"(inputs of shape {tuple(x.shape[1:])}): {first}; check --model, --model-arg and "
                "--data"
            ) from None
        if loss_name == "cross-entropy" and not is_per_token(self.loss_fn):
            check_label_range(self.data, y, logits, data_name)
        try:
            self.loss_fn(logits, y)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ConfigError(
                f"loss {loss_name!r} cannot compare the model's outputs {tuple(logits.shape)} "
                f"with targets {tuple(y.shape)}: {str(exc).splitlines()[0]}; check --loss"
            ) from None


# --- the data as the model takes it -----------------------------------------------------------


def _weights_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (None when it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _inputs_for(data: EvalData, dtype: torch.dtype | None, say: bool = False) -> EvalData:
    """``data`` with floating inputs in the model's dtype: numpy's default float64, or bfloat16
    saved to save space, would stop the first layer (``mat1 and mat2 must have the same
    dtype``). Integer inputs (token ids, bytes already made float32 by the reader) stay.
    ``say``: warn once that the inputs were cast (the evaluation set; not its subsets)."""
    if dtype is None:
        return data
    cast = data.with_inputs_in(dtype)
    if say and cast is not data:
        was = str(data.tensors("cpu")[0].dtype).removeprefix("torch.")
        now = str(dtype).removeprefix("torch.")
        warnings.warn(
            f"data {data.name!r} has {was} inputs; cast to the model's {now} "
            f"(save them as {now} to skip the cast)",
            LandscapeWarning,
            stacklevel=3,
        )
    return cast


# --- the model at the centre -------------------------------------------------------------------


def _model_at(
    spec: ModelSpec, seed: int, weights_dtype: str | None = None
) -> tuple[torch.nn.Module, str]:
    """The model a spec names at its checkpoint, and the checkpoint file's hash."""
    ckpt = spec.checkpoint
    dtype = getattr(torch, weights_dtype) if weights_dtype else None
    with torch.random.fork_rng(devices=[]):
        # without a checkpoint the weights are the factory's initialization: make it reproducible
        torch.manual_seed(seed)
        model = build_model(spec.name, spec.args, unsafe_pickle=spec.unsafe_pickle, dtype=dtype)

    def with_adapter(network: torch.nn.Module) -> torch.nn.Module:  # after the base's weights
        if not spec.adapter:
            return network
        return sources.apply_adapter(spec.name, network, spec.adapter, spec.unsafe_pickle)

    if not ckpt:
        model = with_adapter(model)
        checkpoint.check_finite(model.state_dict())
        return model, ""
    state = checkpoint.load_state_dict(ckpt, unsafe_pickle=spec.unsafe_pickle)
    checkpoint.check_finite(state)
    checkpoint.apply_state_dict(model, state)
    return with_adapter(model), checkpoint.file_sha256(ckpt)


def model_at(spec: ModelSpec, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """The model a spec names at its checkpoint (else its initialization seeded by ``seed``) and
    the checkpoint file's hash: what a command that needs no data loads (``landscape align``)."""
    return _model_at(spec, seed)


def centre_checkpoint(config: ComputeConfig) -> str | None:
    """The checkpoint at the centre: --checkpoint, or for a trajectory its last checkpoint."""
    d = config.direction
    centre = None if d.file else families.family(d.name).centre
    last = centre(d) if centre is not None else None
    if last is None:
        return config.model.checkpoint
    given = config.model.checkpoint
    if given and not same_weights(given, last, config.model.unsafe_pickle):
        raise ConfigError(
            f"--checkpoint {given!r} holds other weights than the last trajectory checkpoint "
            f"{last!r} (compared by content), which is the centre of a trajectory surface; drop "
            "--checkpoint or reorder --trajectory"
        )
    return last


def same_weights(a: str, b: str, unsafe_pickle: bool = False) -> bool:
    """Whether two checkpoint files hold the same weights: one file, the same bytes (their
    sha256), or else the same tensors once loaded (another format, a wrapper, prefixes)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    return _same_content(_identity(a), _identity(b), unsafe_pickle)


def _identity(path: str) -> tuple[str, int, int]:
    """A file as the content comparison's cache knows it: a rewritten file is another key."""
    try:
        st = os.stat(path)
    except OSError:
        return path, -1, -1  # reading it raises the checkpoint's own error (not cached)
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=8)  # a run asks for its centre several times: hash and load once
def _same_content(
    key_a: tuple[str, int, int], key_b: tuple[str, int, int], unsafe_pickle: bool
) -> bool:
    a, b = key_a[0], key_b[0]
    if checkpoint.file_sha256(a) == checkpoint.file_sha256(b):
        return True
    one, two = (checkpoint.load_state_dict(p, unsafe_pickle=unsafe_pickle) for p in (a, b))
    return one.keys() == two.keys() and all(
        one[k].dtype == two[k].dtype
        and one[k].shape == two[k].shape
        and torch.equal(one[k], two[k])
        for k in one
    )


def random_initialization(config: ComputeConfig) -> bool:
    """True when the run evaluates the model's seeded random initialization: no checkpoint, and
    a model that is built (a saved TorchScript or torch.export program carries its weights)."""
    if config.model.name.startswith(IN_MEMORY) or sources.own_weights(config.model.name):
        return False  # the caller's own weights, or those the source carries (a saved program)
    try:
        ckpt = centre_checkpoint(config)
    except ConfigError:
        return False  # the run itself reports this
    return not ckpt


def state_loader(centre: StateDict, unsafe_pickle: bool = False) -> Callable[[Any], StateDict]:
    """``load_state(item)``: another checkpoint of this architecture, checked against the centre.

    ``item`` is a checkpoint file, a state dict, or a model of the same architecture.
    """
    reference = OrderedDict((k, v.detach().cpu()) for k, v in centre.items())

    def load_state(item: Any) -> StateDict:
        what = _describe(item)
        if isinstance(item, Weights):  # handed as an object (the Python API): its state or model
            item = item.state
        try:
            if isinstance(item, torch.nn.Module):
                state = dict(item.state_dict())
            elif isinstance(item, Mapping):
                state = checkpoint.strip_prefixes(dict(item))
            else:
                state = checkpoint.load_state_dict(str(item), unsafe_pickle=unsafe_pickle)
            checkpoint.check_finite(state)
            checkpoint.check_kinds(state, reference)
        except LandscapeError as exc:
            raise DirectionError(str(exc)) from None
        out = OrderedDict()
        for name, ref in reference.items():
            if name not in state:
                if name.endswith("num_batches_tracked"):
                    out[name] = ref
                    continue
                raise DirectionError(
                    f"{what} has no tensor {name}; was it saved from another model?"
                )
            t = state[name]
            if tuple(t.shape) != tuple(ref.shape):
                raise DirectionError(
                    f"{what}: tensor {name} has shape {tuple(t.shape)}, the centre's "
                    f"{tuple(ref.shape)}; all checkpoints must come from the same architecture"
                )
            out[name] = t.detach().cpu().to(ref.dtype)
        return out

    return load_state


def _describe(item: Any) -> str:
    if isinstance(item, Weights):
        return f"checkpoint {item.name!r}"
    if isinstance(item, torch.nn.Module):
        return f"model {type(item).__name__}"
    if isinstance(item, Mapping):
        return "state dict"
    return f"checkpoint {str(item)!r}"


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of the tensors' names and bytes: identifies the centre θ whatever file it came from."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(name.encode())
        # the tensor's bytes as they lie in memory (no copy; any dtype, bfloat16 included)
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def loss_function(loss: str | LossFn, task: str | None = None) -> LossFn:
    """A loss name (``cross-entropy``, ``mse``, ``pkg.module:fn``) or a callable returning one
    loss per sample, checked for that shape on every call. ``task``: the model's (``tasks.task_of``);
    a causal LM's cross-entropy is the next-token one."""
    if isinstance(loss, str):
        return get_loss(loss, task)
    if not callable(loss):
        raise ConfigError(f"loss must be a name or a callable, got a {type(loss).__name__}")
    from landscape.losses import checked_loss

    return checked_loss(loss, getattr(loss, "__name__", "the loss"))


def check_label_range(data: EvalData, y: torch.Tensor, logits: torch.Tensor, name: str) -> None:
    """Class labels must index the model's outputs: name both ranges when they do not."""
    if y.is_floating_point() and y.ndim == logits.ndim - 1:  # one number a sample: a class
        raise DataError(
            f"data {name!r} holds its class labels as floating-point numbers ({y.dtype}); "
            "cross-entropy takes class indices: save the labels as integers (numpy: "
            "y.astype('int64')), or give --loss mse for regression targets"
        )
    if y.is_floating_point() or logits.ndim < 2:  # per-class targets (probabilities)
        return
    labels = data.tensors("cpu")[1]  # the whole set's labels, not only the probe batch's
    lo, hi, classes = int(labels.min()), int(labels.max()), int(logits.shape[1])
    if lo >= 0 and hi < classes:
        return
    raise DataError(
        f"data {name!r} has class labels {lo}..{hi}, but the model has {classes} outputs, so "
        f"labels must be 0..{classes - 1}: check --data, or give the model {hi + 1} outputs "
        f"(for a built-in model: --model-arg num_classes={hi + 1})"
    )
