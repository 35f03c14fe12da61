"""The model sources, each declaring everything about itself in one place (like ``FAMILIES``).

A ``--model`` spec names one source: a built-in of the zoo, a factory (``pkg.module:factory``,
``file.py:factory``), a ``torch.export`` program (``.pt2``), a TorchScript file or a Hugging Face
folder (``hf:DIR``). A :class:`ModelSource` says how a spec is recognised, where its loader lives
(imported on first use, so that heavy packages such as transformers load only when named), whether
resolving it runs Python code (``landscape.trust``), whether it carries its own weights (then a
checkpoint is optional, and ``info`` says where they come from), the data settings it implies (a
Hugging Face folder is its text's tokenizer), and the hooks for in-memory objects and adapters.
``build_model``, ``session``, ``info``, ``trust`` and the CLI ask these questions here; adding a
source is one entry in ``SOURCES`` and its loader (or ``register`` at run time).

A source's loader is ``loader(spec, args, *, unsafe_pickle, dtype) -> nn.Module`` and keeps that
source's safety checks (a program with code, a pickle) behind ``unsafe_pickle``. A loader that
knows the model's task (how it is fed and scored, e.g. ``causal-lm``) records it on the model
(``landscape.tasks``), where the engine and the loss read it.

This module imports nothing heavy (no torch): the config layer and the CLI read it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape._resolve import is_callable_spec
from landscape.errors import ConfigError

# the zoo, by name: "module:function", imported on first use
BUILTIN_MODELS: dict[str, str] = {
    "mlp": "landscape.models.zoo:mlp",
    "lenet": "landscape.models.zoo:lenet",
    "resnet20": "landscape.models.resnet:resnet20",
    "resnet20-noshort": "landscape.models.resnet:resnet20_noshort",
    "resnet56": "landscape.models.resnet:resnet56",
    "resnet56-noshort": "landscape.models.resnet:resnet56_noshort",
    "resnet110": "landscape.models.resnet:resnet110",
    "resnet110-noshort": "landscape.models.resnet:resnet110_noshort",
    "vgg9": "landscape.models.vgg:vgg9",
}


@dataclass(frozen=True)
class ModelSource:
    name: str
    form: str  # how a user writes it, for --help and error messages
    matches: Callable[[str], bool]  # the spec names this source (tried in ``SOURCES`` order)
    # "module:function", imported on first use (see the module's docstring), or the function
    loader: str | Callable[..., Any]
    runs_code: bool = False  # resolving the spec imports and calls Python code (trust.py)
    # where the weights come from when there is no checkpoint ("the saved program"), or None
    # for a model that is built (without a checkpoint: its seeded random initialization)
    weights: str | None = None
    # settings of the data spec this model implies, for those the user left unset
    data_defaults: Callable[[str], dict[str, Any]] = lambda spec: {}
    adopt: str | None = None  # "module:function": an in-memory model of this kind made ready
    adapter: str | None = None  # "module:function": (model, folder, unsafe_pickle) → model


def builtin_key(name: str) -> str | None:
    """Built-in names match case-insensitively, with ``_`` for ``-`` (``ResNet56_noshort``)."""
    key = name.strip().lower().replace("_", "-")
    return key if key in BUILTIN_MODELS else None


def _looks_like_file(name: str) -> bool:
    return Path(name).is_file() or "/" in name or "\\" in name or Path(name).suffix != ""


HF_PREFIX = "hf:"

SOURCES: list[ModelSource] = [
    ModelSource(
        "builtin",
        f"a built-in ({', '.join(BUILTIN_MODELS)})",
        lambda s: builtin_key(s) is not None,
        "landscape.models:load_builtin",
    ),
    ModelSource(
        "hf",
        "hf:DIR (a Hugging Face model folder)",
        lambda s: s.startswith(HF_PREFIX),
        "landscape.hf:load_spec",
        weights="weights of the Hugging Face folder",
        data_defaults=lambda s: {"tokenizer": s[len(HF_PREFIX) :]},  # its text's own tokenizer
        adopt="landscape.hf:adopt",
        adapter="landscape.hf:apply_adapter",
    ),
    ModelSource(
        "factory",
        "pkg.module:factory, path/to/file.py:factory",
        is_callable_spec,
        "landscape.models:load_factory",
        runs_code=True,
    ),
    ModelSource(
        "export",
        "a torch.export program (.pt2)",
        lambda s: s.endswith(".pt2"),
        "landscape.models:load_exported",
        weights="weights of the saved program",
    ),
    ModelSource(
        "torchscript",
        "a TorchScript file",
        _looks_like_file,
        "landscape.models:load_torchscript",
        weights="weights of the saved program",
    ),
]


def register(source: ModelSource) -> None:
    """Add ``source`` ahead of those declared here (a prefix of its own wins over the generic
    forms, such as ``pkg.module:factory``)."""
    if any(s.name == source.name for s in SOURCES):
        raise ValueError(f"a model source named {source.name!r} is registered already")
    SOURCES.insert(0, source)


def unregister(name: str) -> None:
    SOURCES[:] = [s for s in SOURCES if s.name != name]


def source_of(spec: str) -> ModelSource | None:
    """The source a model spec names, or None when it names none."""
    return next((s for s in SOURCES if s.matches(spec)), None)


def source_for(spec: str) -> ModelSource:
    """The source a model spec names; a ConfigError listing the forms when it names none."""
    source = source_of(spec)
    if source is None:
        raise ConfigError(f"unknown model {spec!r}; use {forms()}")
    return source


def forms() -> str:
    """Every source's form, for a message that names what a spec may be."""
    return "; ".join(s.form for s in SOURCES)


def resolve(target: str | Callable[..., Any]) -> Any:
    """The object a ``module:attr`` declaration names (imported now); a function as it is."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def runs_code(spec: str) -> bool:
    source = source_of(spec)
    return source is not None and source.runs_code


def own_weights(spec: str) -> str | None:
    """Where a spec's model takes its weights from without a checkpoint, or None when it is built
    (then: its seeded random initialization)."""
    source = source_of(spec)
    return source.weights if source is not None else None


def data_defaults(spec: str) -> dict[str, Any]:
    source = source_of(spec)
    return source.data_defaults(spec) if source is not None else {}


def adopt(model: Any) -> Any:
    """An in-memory model made ready by the first source that knows its kind (a transformers
    model is fed token ids or pixels and read back as logits); others as they are."""
    for source in SOURCES:
        if source.adopt is not None:
            ready = resolve(source.adopt)(model)
            if ready is not None:
                return ready
    return model


def apply_adapter(spec: str, model: Any, folder: str, unsafe_pickle: bool) -> Any:
    """``model`` with the adapter in ``folder`` applied, by the spec's source."""
    source = source_of(spec)
    if source is None or source.adapter is None:
        takes = ", ".join(s.form for s in SOURCES if s.adapter is not None)
        raise ConfigError(f"--adapter applies to a model that takes adapters: {takes}")
    return resolve(source.adapter)(model, folder, unsafe_pickle)


def model_help() -> str:
    """The ``--model`` help: every source's form."""
    return forms()[0].upper() + forms()[1:] + "."
