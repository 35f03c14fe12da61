"""Models: the built-in zoo, user factories and saved programs, behind one ``build_model``.

A model spec is one of:

- a built-in name (``BUILTIN_MODELS``: ``mlp``, ``lenet``, ``resnet20/56/110`` and their
  ``-noshort`` variants, ``vgg9``), built with keyword ``args``;
- ``pkg.module:factory`` or ``path/to/file.py:factory``, called as ``factory(**args)``;
- a TorchScript file (``torch.jit.save``) or a ``torch.export`` program (``.pt2``), loaded as is;
- ``hf:DIR``: a Hugging Face model folder (``landscape.hf``; needs the ``hf`` extra).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from landscape._resolve import is_callable_spec, resolve_callable
from landscape.config import load_yaml
from landscape.errors import ConfigError, first_line
from landscape.models import resnet, vgg, zoo

ModelFactory = Callable[..., nn.Module]

BUILTIN_MODELS: dict[str, ModelFactory] = {
    "mlp": zoo.mlp,
    "lenet": zoo.lenet,
    "resnet20": resnet.resnet20,
    "resnet20-noshort": resnet.resnet20_noshort,
    "resnet56": resnet.resnet56,
    "resnet56-noshort": resnet.resnet56_noshort,
    "resnet110": resnet.resnet110,
    "resnet110-noshort": resnet.resnet110_noshort,
    "vgg9": vgg.vgg9,
}

ACCEPTED_FORMS = (
    "pkg.module:factory, path/to/file.py:factory, "
    "a TorchScript file, or a torch.export program (.pt2)"
)

__all__ = ["BUILTIN_MODELS", "build_model", "is_builtin", "parse_model_args"]


def build_model(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    unsafe_pickle: bool = False,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Build the model named by ``name`` with keyword ``args``; raise ConfigError if impossible.

    A ``torch.export`` program that carries code is refused, and its pickled parts are read as
    tensors only, unless ``unsafe_pickle`` (``checkpoint.load_exported_module``).
    ``dtype``: the weights' dtype for an ``hf:`` folder (``--dtype bfloat16`` halves a large
    model's memory); other models are built in float32 and ``--dtype`` is their autocast.
    """
    args = dict(args or {})
    builtin = _builtin_key(name)
    if builtin is not None:
        return _call_factory(BUILTIN_MODELS[builtin], args, builtin)
    if name.startswith("hf:"):  # a Hugging Face folder: transformers builds it from its config
        if args:
            raise ConfigError(
                f"model {name!r} is built from its folder's config.json and takes no arguments; "
                f"drop --model-arg {next(iter(args))}"
            )
        from landscape.hf import load_folder

        return load_folder(name, unsafe_pickle=unsafe_pickle, dtype=dtype)
    if is_callable_spec(name):
        factory = resolve_callable(name, "model")
        if not callable(factory):
            raise ConfigError(
                f"model spec {name!r} names a {type(factory).__name__}, not a factory"
            )
        return _call_factory(factory, args, name)
    if Path(name).is_file():
        return _load_program(Path(name), args, unsafe_pickle)
    raise ConfigError(_unknown_message(name))


def is_builtin(name: str) -> bool:
    """True for a built-in model name (in any of the spellings ``build_model`` accepts)."""
    return _builtin_key(name) is not None


def _builtin_key(name: str) -> str | None:
    """Built-in names match case-insensitively, with ``_`` for ``-`` (``ResNet56_noshort``)."""
    key = name.strip().lower().replace("_", "-")
    return key if key in BUILTIN_MODELS else None


def _unknown_message(name: str) -> str:
    builtins = ", ".join(BUILTIN_MODELS)
    looks_like_path = "/" in name or "\\" in name or Path(name).suffix != ""
    what = f"model file {name!r} does not exist" if looks_like_path else f"unknown model {name!r}"
    return f"{what}; use a built-in ({builtins}) or {ACCEPTED_FORMS}"


def _call_factory(factory: ModelFactory, args: dict[str, Any], name: str) -> nn.Module:
    """Call ``factory(**args)``; a bad argument or a non-Module result is a ConfigError."""
    _check_arguments(factory, args, name)
    try:
        model = factory(**args)
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in args.items()) or "no arguments"
        raise ConfigError(
            f"model {name!r} rejected its arguments ({given}): {first_line(exc, 160)}; "
            "check the --model-arg values"
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model factory {name!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make it return the network"
        )
    return model


def _check_arguments(factory: ModelFactory, args: dict[str, Any], name: str) -> None:
    """Name an unknown or missing keyword argument before calling the factory."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins and C extensions may have no signature
        return
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        p.name
        for p in params.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = [k for k in args if k not in accepted]
    if unknown:
        raise ConfigError(
            f"model {name!r} has no argument {unknown[0]!r}; "
            f"it accepts: {', '.join(accepted) or 'no arguments'}"
        )
    try:
        signature.bind(**args)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}; pass it with --model-arg KEY=VALUE") from None


def _load_program(path: Path, args: dict[str, Any], unsafe_pickle: bool = False) -> nn.Module:
    """Load a saved program: ``.pt2`` via torch.export, anything else as TorchScript."""
    if args:
        raise ConfigError(
            f"model file {str(path)!r} is a saved program and takes no arguments; "
            f"drop --model-arg {next(iter(args))}"
        )
    if path.suffix == ".pt2":
        from landscape.checkpoint import load_exported_module

        return load_exported_module(path, ConfigError, "model file", unsafe_pickle=unsafe_pickle)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(
            f"model file {str(path)!r} is not a TorchScript file ({first_line(exc, 160)}); "
            "for a state dict, pass a built-in or factory as --model and this file as --checkpoint"
        ) from None


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["hidden=32", "name=foo"]`` into ``{"hidden": 32, "name": "foo"}``.

    Each value is read as YAML, so numbers, booleans and lists get their types.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"model argument {pair!r} must be KEY=VALUE, e.g. hidden=32")
        if key in out:
            raise ConfigError(f"model argument {key!r} is given twice; pass it once")
        try:
            out[key] = load_yaml(text)
        except yaml.YAMLError:
            raise ConfigError(
                f"model argument {key!r} has a value that is not valid YAML: {text!r}; quote it"
            ) from None
    return out
