"""Checkpoints: read a state dict from a file, fit it to a model, check it, hash the file.

Pickle files are read with ``torch.load(..., weights_only=True)``; a pickled whole model is an
explicit opt-in (``unsafe_pickle=True``, the CLI's ``--unsafe-pickle``) because unpickling it can
run arbitrary code.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import CheckpointError, first_line

# Keys under which training scripts commonly nest the state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Buffers a checkpoint may lack (or carry) without changing the model's outputs.
TOLERATED_SUFFIXES = ("num_batches_tracked",)
MAX_NAMES = 5

StateDict = dict[str, torch.Tensor]


# --- reading ----------------------------------------------------------------------------------


def load_state_dict(path: str, *, unsafe_pickle: bool = False) -> StateDict:
    """Read the state dict stored in ``path``.

    Formats: a torch pickle (``.pt/.pth/.t7/.ckpt``), ``.safetensors``, a TorchScript archive or
    a ``torch.export`` program (``.pt2``).

    Wrappers (``{"state_dict": ...}``, ``{"model": ...}``, ...) are unwrapped and the
    ``module.`` / ``_orig_mod.`` prefixes are stripped.
    """
    file = Path(path)
    if file.is_dir():
        raise CheckpointError(f"checkpoint {path!r} is a folder; pass the checkpoint file in it")
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {path!r} does not exist; check --checkpoint")
    if file.suffix == ".safetensors":
        state = _load_safetensors(file)
    elif file.suffix == ".pt2":
        state = _load_exported(file, unsafe_pickle)
    elif _is_torchscript_archive(file):
        state = _load_torchscript(file)
    else:
        state = _unwrap(_torch_load(file, unsafe_pickle), path)
    if not state:
        raise CheckpointError(f"checkpoint {path!r} holds no tensors; pass the trained weights")
    return strip_prefixes(state)


def _torch_load(file: Path, unsafe_pickle: bool) -> Any:
    try:
        return torch.load(file, map_location="cpu", weights_only=not unsafe_pickle)
    # torch.load raises many kinds of errors on a file that is not a checkpoint (KeyError, EOFError,
    # RuntimeError, UnpicklingError, ...); each one becomes a CheckpointError with the cause.
    except Exception as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"checkpoint {str(file)!r} holds pickled Python objects (e.g. a whole model), "
                "not only tensors; pass --unsafe-pickle only if you trust the file, "
                "or re-save it with torch.save(model.state_dict(), path)"
            ) from None
        raise CheckpointError(
            f"checkpoint {str(file)!r} cannot be read by torch.load "
            f"({type(exc).__name__}: {first_line(exc, 160)}); "
            "pass a .pt/.pth/.t7/.ckpt state dict or a .safetensors file"
        ) from None


def _load_safetensors(file: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(file), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(file)!r} is not a readable safetensors file ({first_line(exc, 160)}); "
            "check the file or re-save it with safetensors.torch.save_file"
        ) from None


def _is_torchscript_archive(file: Path) -> bool:
    """A ``torch.jit.save`` file is a zip archive with a ``constants.pkl`` entry."""
    if not zipfile.is_zipfile(file):
        return False
    with zipfile.ZipFile(file) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _load_torchscript(file: Path) -> StateDict:
    try:
        return dict(torch.jit.load(str(file), map_location="cpu").state_dict())
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {str(file)!r} looks like TorchScript but cannot be loaded "
            f"({first_line(exc, 160)}); re-save it with torch.jit.save"
        ) from None


@contextlib.contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """Every ``torch.load`` inside the block reads with ``weights_only=True``.

    ``torch.export.load`` unpickles a program's weights and constants with
    ``weights_only=False`` (and falls back to it when a restricted load fails), so a ``.pt2``
    file can run any code it names; under this guard such a file fails to load instead.
    """
    real = torch.load

    def restricted(*args: Any, weights_only: Any = None, **kwargs: Any) -> Any:
        return real(*args, weights_only=True, **kwargs)

    torch.load = restricted
    try:
        yield
    finally:
        torch.load = real


def load_exported_module(
    file: Path,
    error: type[Exception] = CheckpointError,
    role: str = "checkpoint",
    *,
    unsafe_pickle: bool = False,
) -> nn.Module:
    """The module of a ``torch.export`` program (``.pt2``); ``error`` names the caller's failure.

    Unless ``unsafe_pickle``, a program holding a part whose loading runs code (an opaque
    constant, a shape expression that is Python, compiled code: ``_safe_program``) is refused
    before torch reads it, and its pickled tensors are read with ``weights_only=True``.
    """
    if not unsafe_pickle:
        _check_program(file, error, role)
    guard = contextlib.nullcontext() if unsafe_pickle else _weights_only_torch_load()
    try:
        with guard:
            program = torch.export.load(str(file))
    except pickle.UnpicklingError:
        raise error(
            f"{role} {str(file)!r} is a torch.export program whose pickled parts hold Python "
            "objects, not only tensors (loading them runs code); pass --unsafe-pickle only if "
            "you trust the file"
        ) from None
    # torch's deserializer raises many kinds of errors on a damaged or foreign program
    # (AssertionError, SerializeError, KeyError, ...): each becomes the caller's error
    except Exception as exc:
        raise error(
            f"{role} {str(file)!r} is not a torch.export program ({first_line(exc, 160)}); "
            "save one with torch.export.save(torch.export.export(model, args), path)"
        ) from None
    return program.module()


def _check_program(file: Path, error: type[Exception], role: str) -> None:
    from landscape._safe_program import UnsafeProgram, check_program

    try:
        check_program(str(file))
    except UnsafeProgram as exc:
        raise error(
            f"{role} {str(file)!r} is a torch.export program that {exc}: loading it would run "
            "code, so it is refused; pass --unsafe-pickle only if you trust the file"
        ) from None
    except (ValueError, OSError) as exc:
        raise error(
            f"{role} {str(file)!r} is not a torch.export program ({first_line(exc, 160)}); "
            "save one with torch.export.save(torch.export.export(model, args), path)"
        ) from None


def _load_exported(file: Path, unsafe_pickle: bool) -> StateDict:
    return dict(load_exported_module(file, unsafe_pickle=unsafe_pickle).state_dict())


def _unwrap(obj: Any, path: str) -> StateDict:
    """Descend through wrapper dicts (and whole pickled modules) down to ``name -> tensor``."""
    for _ in range(8):  # wrappers nest a level or two deep; the bound guards against cycles
        if isinstance(obj, nn.Module):
            return dict(obj.state_dict())
        if not isinstance(obj, Mapping):
            break
        inner = next(
            (obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), (Mapping, nn.Module))), None
        )
        if inner is None:
            return _tensor_entries(obj, path)
        obj = inner
    raise CheckpointError(
        f"checkpoint {path!r} holds a {type(obj).__name__}, not a state dict; "
        "save it with torch.save(model.state_dict(), path)"
    )


def _tensor_entries(obj: Mapping[Any, Any], path: str) -> StateDict:
    others = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise CheckpointError(
            f"checkpoint {path!r} has no state dict: found keys {_names(others)} that are not "
            f"tensors and none of {', '.join(WRAPPER_KEYS)}; "
            "save it with torch.save(model.state_dict(), path)"
        )
    return {str(k): v for k, v in obj.items()}


def strip_prefixes(state: StateDict) -> StateDict:
    """Drop ``_orig_mod.`` segments anywhere and ``module.`` when every key starts with it."""
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
    while state and all(k.startswith(STRIP_PREFIXES) for k in state):
        state = {_drop_prefix(k): v for k, v in state.items()}
    return state


def _drop_prefix(key: str) -> str:
    for prefix in STRIP_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


# --- fitting to a model -------------------------------------------------------------------------


def apply_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` strictly: every key present, none extra, shapes equal.

    A missing or extra ``num_batches_tracked`` is tolerated (it does not change outputs). When the
    keys all carry one extra leading component (Lightning's ``model.``) and fit without it, it is
    dropped.
    """
    own = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in own.items()}
    state = _fit_prefix(dict(state), expected)
    problems = _mismatches(state, expected)
    if problems:
        raise CheckpointError(
            "checkpoint does not fit the model: "
            + "; ".join(problems)
            + "; is --model right (and its --model-arg values)?"
        )
    check_kinds(state, own)
    model.load_state_dict(state, strict=False)  # strictness was checked above


def check_kinds(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> None:
    """Refuse integer, bool or complex tensors where the model holds floating point ones.

    ``load_state_dict`` would cast them (a bool checkpoint becomes weights of 0 and 1; a complex
    one loses its imaginary part with only torch's warning), which is never a trained network:
    the file is not the checkpoint it claims to be.
    """
    for name, t in state.items():
        mine = own.get(name)
        if mine is None or t.dtype == mine.dtype:
            continue
        if mine.is_floating_point() and not t.is_floating_point():
            lost = "drop its imaginary part" if t.is_complex() else "give made-up weights"
            raise CheckpointError(
                f"checkpoint tensor {name} {_shape(tuple(t.shape))} is {str(t.dtype)[6:]}, but "
                f"the model's is {str(mine.dtype)[6:]}: casting it would {lost}; "
                "is this the right checkpoint (saved with model.state_dict())?"
            )


def _mismatches(state: StateDict, expected: dict[str, tuple[int, ...]]) -> list[str]:
    """Describe missing keys, unexpected keys and shape mismatches, a few names each."""
    missing = [k for k in expected if k not in state and not _tolerated(k)]
    unexpected = [k for k in state if k not in expected and not _tolerated(k)]
    wrong = [k for k in state if k in expected and tuple(state[k].shape) != expected[k]]
    problems = []
    if missing:
        shown = [f"{k} {_shape(expected[k])}" for k in missing]
        problems.append(f"{len(missing)} missing (model has, checkpoint lacks): {_names(shown)}")
    if unexpected:
        shown = [f"{k} {_shape(tuple(state[k].shape))}" for k in unexpected]
        problems.append(f"{len(unexpected)} unexpected (not in model): {_names(shown)}")
    if wrong:
        shown = [
            f"{k} checkpoint {_shape(tuple(state[k].shape))} vs model {_shape(expected[k])}"
            for k in wrong
        ]
        problems.append(f"{len(wrong)} shape mismatches: {_names(shown)}")
    return problems


def _fit_prefix(state: StateDict, expected: dict[str, tuple[int, ...]]) -> StateDict:
    """Drop one shared leading component (``model.x`` -> ``x``) if that makes the keys fit."""
    if not state or set(state) == set(expected):
        return state
    heads = {k.split(".", 1)[0] for k in state}
    if len(heads) != 1 or not all("." in k for k in state):
        return state
    stripped = {k.split(".", 1)[1]: v for k, v in state.items()}
    return stripped if not _mismatches(stripped, expected) else state


def _tolerated(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in TOLERATED_SUFFIXES


# --- checks and provenance -----------------------------------------------------------------------


def check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointError naming the first floating tensor that holds NaN or inf."""
    for name, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CheckpointError(
                f"checkpoint tensor {name} {_shape(tuple(tensor.shape))} has {bad} NaN/inf "
                f"value(s) of {tensor.numel()}; training diverged or the file is corrupt, "
                "use an earlier checkpoint"
            )


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file's bytes (recorded in the surface file as provenance)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(
            f"checkpoint file {path!r} cannot be read ({exc.strerror}); check --checkpoint"
        ) from None
    return digest.hexdigest()


# --- message helpers -----------------------------------------------------------------------------


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f", ... ({len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"
