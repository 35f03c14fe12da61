"""Hugging Face transformers models: a local folder (``--model hf:DIR``) or a model object.

A model folder holds ``config.json`` and its weights (``model.safetensors``, or shards listed in
``model.safetensors.index.json``). The config's ``architectures`` names the class; its task decides
how the engine feeds the model and reads its outputs:

- ``causal-lm`` (``*ForCausalLM``, ``*LMHeadModel``): inputs are token ids ``(B, T)``; the logits
  ``(B, T, V)`` are scored by the next-token loss (``losses.NextTokenCrossEntropy``);
- ``sequence-classification``: token ids ``(B, T)`` in, class logits ``(B, C)`` out;
- ``image-classification``: pixel values ``(B, C, H, W)`` in, class logits ``(B, C)`` out.

Padding in token inputs is any negative id (``PAD`` = -100, the ignore index of Hugging Face's
losses): the attention mask is ``ids >= 0`` and the padded positions are fed as id 0, which the
mask hides. The model is used as it is — its parameters keep their own names, so directions,
checkpoints and ``--params`` globs name tensors as ``model.named_parameters()`` does — with two
hooks that translate ``model(x)`` into ``model(input_ids=..., attention_mask=...).logits``. Tied
weights (``lm_head.weight`` = the embeddings) are one parameter, moved once.

Nothing here runs code from the folder: ``trust_remote_code`` is always off, and weights are read
from safetensors only (a ``pytorch_model.bin`` pickle is refused unless ``--unsafe-pickle``).
transformers is an optional dependency (``pip install 'landscape[hf]'``), imported on first use.
"""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import ConfigError, first_line
from landscape.models.sources import HF_PREFIX as PREFIX
from landscape.tasks import TASK_ATTR, task_of

PAD = -100  # a padded token position, in inputs and targets alike
TASKS = ("causal-lm", "sequence-classification", "image-classification")
HOOKS_ATTR = "_landscape_hooks"  # their handles


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "Hugging Face models need transformers: pip install 'landscape[hf]'"
        ) from None
    return transformers


# --- the folder -------------------------------------------------------------------------------


def folder_of(name: str) -> Path:
    """The folder of an ``hf:DIR`` spec, checked to be a model folder."""
    folder = Path(name[len(PREFIX) :]).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"--model {name!r}: folder {str(folder)!r} does not exist")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"--model {name!r}: {str(folder)!r} has no config.json; give the folder "
            "save_pretrained wrote"
        )
    return folder


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise ConfigError(f"cannot read {str(folder / 'config.json')!r}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{str(folder / 'config.json')!r} is not a JSON object")
    if not isinstance(cfg.get("model_type", ""), str):  # transformers looks it up in its tables
        raise ConfigError(
            f'{str(folder / "config.json")!r}: model_type must be a name such as "gpt2", not '
            f"{json.dumps(cfg['model_type'])[:80]}; save the model with save_pretrained"
        )
    return cfg


def _weights_kind(folder: Path) -> str:
    """``safetensors`` when the folder's weights are safe to read, ``pickle`` for a .bin only."""
    if (folder / "model.safetensors.index.json").is_file():
        _check_shards(folder / "model.safetensors.index.json")
        return "safetensors"
    if (folder / "model.safetensors").is_file():
        return "safetensors"
    if any(folder.glob("pytorch_model*.bin")):
        return "pickle"
    raise ConfigError(
        f"{str(folder)!r} holds no weights (model.safetensors, model.safetensors.index.json); "
        "save them with model.save_pretrained(folder)"
    )


def _check_shards(index: Path) -> None:
    """The index of a sharded folder names safetensors files in the folder, and only those:
    transformers would read a ``.bin`` shard it names as a pickle, or skip a missing one."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        raise ConfigError(f"cannot read {str(index)!r} as a shard index: {exc}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConfigError(f"{str(index)!r} has no weight_map of tensor names to shard files")
    for shard in sorted({str(v) for v in weight_map.values()}):
        if Path(shard).name != shard or not shard.endswith(".safetensors"):
            raise ConfigError(
                f"{str(index)!r} names the shard {shard!r}, not a .safetensors file in the "
                "folder; re-save the model with save_pretrained (safetensors shards)"
            )
        if not (index.parent / shard).is_file():
            raise ConfigError(f"{str(index)!r} names the shard {shard!r}, which is missing")


def _architecture(cfg: dict[str, Any], config_file: Path) -> str:
    """The class name config.json records (its ``architectures`` list's first string)."""
    architectures = cfg.get("architectures") or []
    if cfg.get("auto_map") and not architectures:
        raise ConfigError(
            f"{str(config_file.parent)!r} names only custom code (auto_map), which landscape does "
            "not run; use a model whose architecture transformers ships"
        )
    if not architectures:
        raise ConfigError(
            f"{str(config_file)!r} names no architecture; save the model with "
            "save_pretrained (it records config.architectures)"
        )
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise ConfigError(
            f"{str(config_file)!r}: architectures must be a list of class names such as "
            f'["GPT2LMHeadModel"], not {json.dumps(architectures)[:80]}; '
            "save the model with save_pretrained"
        )
    return architectures[0]


def task_of_architecture(architecture: str) -> str | None:
    """The task of a transformers class name, by transformers' own Auto tables."""
    return _architectures().get(architecture)


@functools.cache
def _architectures() -> dict[str, str]:
    """Every class name the Auto tables list, mapped to its task (built once per process)."""
    from transformers.models.auto import modeling_auto as auto

    tables = {
        "causal-lm": auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        "sequence-classification": auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "image-classification": auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    }
    out: dict[str, str] = {}
    for task, table in tables.items():
        for names in table.values():
            for name in _names(names):
                out.setdefault(name, task)  # the first task listing it, as the lookup did
    return out


def _names(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def load_spec(
    name: str, args: dict[str, Any], *, unsafe_pickle: bool = False, dtype: Any = None
) -> nn.Module:
    """The loader of the ``hf`` model source (``landscape.models.sources``)."""
    if args:
        raise ConfigError(
            f"model {name!r} is built from its folder's config.json and takes no arguments; "
            f"drop --model-arg {next(iter(args))}"
        )
    return load_folder(name, unsafe_pickle=unsafe_pickle, dtype=dtype)


def load_folder(
    name: str, unsafe_pickle: bool = False, dtype: torch.dtype | None = None
) -> nn.Module:
    """The model an ``hf:DIR`` folder holds, at its weights (in ``dtype``, default float32),
    ready for ``model(x)``."""
    transformers = require_transformers()
    folder = folder_of(name)
    arch = _architecture(_read_config(folder), folder / "config.json")
    task = task_of_architecture(arch)
    cls = getattr(transformers, arch, None)
    if task is None or cls is None:
        raise ConfigError(
            f"{str(folder)!r} holds a {arch}, which is not a causal LM, sequence classifier or "
            "image classifier that transformers ships; landscape evaluates those three"
        )
    kind = _weights_kind(folder)
    if kind == "pickle" and not unsafe_pickle:
        raise ConfigError(
            f"{str(folder)!r} holds its weights as a pickle (pytorch_model.bin), which can run "
            "code; convert them to safetensors, or pass --unsafe-pickle if you trust the file"
        )
    try:
        with quiet(transformers):
            model = cls.from_pretrained(
                str(folder),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=kind == "safetensors",
                weights_only=not unsafe_pickle,
                **_dtype_argument(transformers, dtype or torch.float32),
            )
    except pickle.UnpicklingError:  # transformers unpickles .bin files weights_only even so
        raise ConfigError(
            f"the pickled weights in {str(folder)!r} hold Python objects besides tensors, which "
            "transformers does not load; convert them to safetensors"
        ) from None
    # TypeError: config.json values of the wrong kind (a list as model_type)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = first_line(exc)
        raise ConfigError(f"cannot load the model in {str(folder)!r}: {first}") from None
    return prepare(model, task)


@contextlib.contextmanager
def quiet(transformers: Any) -> Iterator[None]:
    """transformers' own progress bars and config notes off while a folder loads: landscape
    reports what matters in its own lines."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _dtype_argument(transformers: Any, dtype: torch.dtype) -> dict[str, Any]:
    """``dtype=`` for transformers 4.56 and later, ``torch_dtype=`` before."""
    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


# --- a model object -------------------------------------------------------------------------------


def is_transformers_model(model: Any) -> bool:
    """True for a transformers ``PreTrainedModel`` (or a peft model wrapping one)."""
    # a model of transformers' classes means transformers is imported: no import here (seconds,
    # and in a notebook its tqdm.auto warns "IProgress not found" without ipywidgets)
    transformers = sys.modules.get("transformers")
    if transformers is None:
        return False
    if isinstance(model, transformers.PreTrainedModel):
        return True
    base = getattr(model, "base_model", None)
    return base is not None and base is not model and is_transformers_model(base)


def adopt(model: nn.Module) -> nn.Module | None:
    """A transformers model object made ready for ``model(x)`` (``prepare``); None for others."""
    return prepare(model) if is_transformers_model(model) else None


def prepare(model: nn.Module, task: str | None = None) -> nn.Module:
    """Make ``model(x)`` return logits: hooks that feed ``x`` as the task's inputs.

    ``task``: one of ``TASKS``, or None to read it off the model's class. Already prepared models
    are returned as they are."""
    if task_of(model) is not None:
        return model
    if task is None:
        task = _task_of_object(model)
    if task not in TASKS:
        raise ConfigError(
            f"a {type(model).__name__} is not a causal LM, sequence classifier or image "
            "classifier; landscape evaluates those three transformers tasks"
        )
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = False  # no key/value cache: one forward pass per batch
    setattr(model, TASK_ATTR, task)
    handles = (
        model.register_forward_pre_hook(_feed, with_kwargs=True),
        model.register_forward_hook(_logits),
    )
    setattr(model, HOOKS_ATTR, handles)
    return model


def unprepare(model: nn.Module) -> nn.Module:
    """The model called the transformers way again (the hooks removed)."""
    for handle in getattr(model, HOOKS_ATTR, ()):
        handle.remove()
    for attr in (TASK_ATTR, HOOKS_ATTR):
        if hasattr(model, attr):
            delattr(model, attr)
    return model


# --- peft adapters ------------------------------------------------------------------------------


def apply_adapter(model: nn.Module, folder: str, unsafe_pickle: bool = False) -> nn.Module:
    """``model`` with the peft adapter saved in ``folder`` (``adapter_config.json`` and
    ``adapter_model.safetensors``) on it, unmerged: the adapter's own tensors (``*lora_*``) are
    parameters that directions can move, named as peft names them
    (``base_model.model.<name>.lora_A.default.weight``)."""
    task = task_of(model)
    if task is None:
        raise ConfigError("--adapter applies to a Hugging Face model (--model hf:DIR)")
    path = Path(folder).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(
            f"--adapter {folder!r} has no adapter_config.json; give the folder peft's "
            "save_pretrained wrote"
        )
    pickled = (path / "adapter_model.bin").is_file()
    if not (path / "adapter_model.safetensors").is_file() and not (pickled and unsafe_pickle):
        why = (
            " (its adapter_model.bin is a pickle, which can run code: pass --unsafe-pickle if "
            "you trust it)"
            if pickled
            else ""
        )
        raise ConfigError(f"--adapter {folder!r} holds no adapter_model.safetensors{why}")
    try:
        import peft
    except ImportError:
        raise ConfigError("--adapter needs peft: pip install 'landscape[hf]'") from None
    try:
        with warnings.catch_warnings():  # peft's deprecation notes about transformers' API
            warnings.simplefilter("ignore", FutureWarning)
            wrapped = peft.PeftModel.from_pretrained(
                unprepare(model), str(path), is_trainable=False
            )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        first = first_line(exc)
        raise ConfigError(f"cannot apply the adapter in {folder!r}: {first}") from None
    return prepare(wrapped.eval(), task)


def _task_of_object(model: nn.Module) -> str | None:
    for cls in type(model).__mro__:
        task = task_of_architecture(cls.__name__)
        if task is not None:
            return task
    inner = getattr(model, "base_model", None)
    if inner is not None and inner is not model:  # peft: PeftModel → LoraModel → the HF model
        inner = getattr(inner, "model", inner)
        if inner is not model:
            return _task_of_object(inner)
    return None


def _feed(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """``model(x)`` → ``model(input_ids=..., attention_mask=...)`` (or ``pixel_values=x``)."""
    if not args or kwargs:
        return None  # called the transformers way: leave it alone
    (x,) = args
    if getattr(module, TASK_ATTR) == "image-classification":
        return (), {"pixel_values": x, "return_dict": True}
    mask = x >= 0
    ids = torch.where(mask, x, torch.zeros_like(x))
    return (), {"input_ids": ids, "attention_mask": mask.long(), "return_dict": True}


def _logits(module: nn.Module, args: tuple, output: Any) -> Any:
    logits = getattr(output, "logits", None)
    return output if logits is None else logits
