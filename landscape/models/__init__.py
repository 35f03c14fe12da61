"""Models: every source of ``landscape.models.sources`` behind one ``build_model``.

A model spec is one of (``sources.SOURCES`` declares each, and how it is recognised):

- a built-in name (``BUILTIN_MODELS``: ``mlp``, ``lenet``, ``resnet20/56/110`` and their
  ``-noshort`` variants, ``vgg9``), built with keyword ``args``;
- ``pkg.module:factory`` or ``path/to/file.py:factory``, called as ``factory(**args)``;
- a TorchScript file (``torch.jit.save``) or a ``torch.export`` program (``.pt2``), loaded as is;
- ``hf:DIR``: a Hugging Face model folder (``landscape.hf``; needs the ``hf`` extra).

The loaders of the built-in, factory and saved-program sources live here; torch is imported when
one runs, so that the CLI and the config layer can read the sources without it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from landscape._resolve import resolve_callable
from landscape.config import load_yaml
from landscape.errors import ConfigError, first_line
from landscape.models.sources import BUILTIN_MODELS, builtin_key, forms, resolve, source_for

if TYPE_CHECKING:
    import torch
    from torch import nn

ModelFactory = Callable[..., "nn.Module"]

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
    load = resolve(source_for(name).loader)
    return load(name, dict(args or {}), unsafe_pickle=unsafe_pickle, dtype=dtype)


def is_builtin(name: str) -> bool:
    """True for a built-in model name (in any of the spellings ``build_model`` accepts)."""
    return builtin_key(name) is not None


# --- the loaders (``sources.SOURCES`` names them) -----------------------------------------------


def load_builtin(
    name: str, args: dict[str, Any], *, unsafe_pickle: bool = False, dtype: Any = None
) -> nn.Module:
    key = builtin_key(name) or name  # the source matched it: a built-in's key
    return _call_factory(resolve(BUILTIN_MODELS[key]), args, key)


def load_factory(
    name: str, args: dict[str, Any], *, unsafe_pickle: bool = False, dtype: Any = None
) -> nn.Module:
    factory = resolve_callable(name, "model")
    if not callable(factory):
        raise ConfigError(f"model spec {name!r} names a {type(factory).__name__}, not a factory")
    return _call_factory(factory, args, name)


def load_exported(
    name: str, args: dict[str, Any], *, unsafe_pickle: bool = False, dtype: Any = None
) -> nn.Module:
    """A ``torch.export`` program, refused if it carries code (unless ``unsafe_pickle``)."""
    from landscape.checkpoint import load_exported_module

    path = _program_file(name, args)
    return load_exported_module(path, ConfigError, "model file", unsafe_pickle=unsafe_pickle)


def load_torchscript(
    name: str, args: dict[str, Any], *, unsafe_pickle: bool = False, dtype: Any = None
) -> nn.Module:
    import torch

    path = _program_file(name, args)
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(
            f"model file {name!r} is not a TorchScript file ({first_line(exc, 160)}); "
            "for a state dict, pass a built-in or factory as --model and this file as --checkpoint"
        ) from None


def _program_file(name: str, args: dict[str, Any]) -> Path:
    """The file of a saved program, which exists and takes no arguments."""
    if not Path(name).is_file():
        raise ConfigError(f"model file {name!r} does not exist; use {forms()}")
    if args:
        raise ConfigError(
            f"model file {name!r} is a saved program and takes no arguments; "
            f"drop --model-arg {next(iter(args))}"
        )
    return Path(name)


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
    from torch import nn

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
