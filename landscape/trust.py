"""What in a config runs code, and the rule for configs read back from files (DESIGN §11).

A surface file's stored config is provenance: data, not instructions. Rebuilding a run from it
(``landscape curvature``) must not import a module, call a factory or unpickle because the file
says so. Three kinds of spec run code when resolved: a model, data or loss given as
``pkg.module:name`` or ``path/file.py:name``, and ``model.unsafe_pickle`` (a pickled whole model).
Such a spec from a file is honoured only when the user gives it again on the command line
(``--model``, ``--data``, ``--loss``) or opts in with ``--trust-config``; ``unsafe_pickle`` only
with the command's own ``--unsafe-pickle``. Built-in names (``resnet20``, ``digits``,
``cross-entropy``), data readers (``cifar10:DIR``, ``npz:FILE``, ...), checkpoints read with
``weights_only=True`` and TorchScript or ``torch.export`` programs (checked for parts that run
code before torch reads them, and whose pickled parts are read the same way) are read as data.
"""

from __future__ import annotations

from dataclasses import replace

from landscape._resolve import is_callable_spec
from landscape.config import IN_MEMORY, ComputeConfig, Given
from landscape.errors import ConfigError
from landscape.models import sources as model_sources

ROLES = ("model", "data", "loss")  # the spec fields a user may give again, by flag name


def spec_of(config: ComputeConfig, role: str) -> str:
    """The config's model, data or loss spec."""
    return {"model": config.model.name, "data": config.data.name, "loss": config.eval.loss}[role]


def runs_code(spec: str, role: str = "model") -> bool:
    """True for a spec that imports and calls Python code when resolved (a model's source says)."""
    return model_sources.runs_code(spec) if role == "model" else is_callable_spec(spec)


def from_stored(config: ComputeConfig, given: Given, source: str) -> ComputeConfig:
    """``config`` as read from the file ``source``, made safe to resolve under ``given``.

    A spec the user gave replaces the stored one; a stored spec that runs code is refused unless
    the user gave it again or passed ``--trust-config``. The stored ``unsafe_pickle`` is
    replaced by ``given.unsafe_pickle`` unless the config is trusted as a whole.
    """
    for role in ROLES:
        stored, now = spec_of(config, role), getattr(given, role)
        if now is None and stored.startswith(IN_MEMORY):
            raise ConfigError(
                f"{source!r} was computed on an in-memory {role} handed to the Python API "
                f"({stored}); give it again with --{role} (and --checkpoint), or call "
                "landscape.curvature(model, data, surface) in Python"
            )
        if now is None and runs_code(stored, role) and not given.trust_config:
            raise ConfigError(
                f"{source!r} names the {role} {stored!r}, which imports and runs Python code; a "
                f"file's stored config is not trusted: pass --{role} {stored} if you trust that "
                "code (or --trust-config to trust everything the file names)"
            )
    unsafe = given.unsafe_pickle or (given.trust_config and config.model.unsafe_pickle)
    return replace(
        config,
        model=replace(config.model, name=given.model or config.model.name, unsafe_pickle=unsafe),
        data=replace(config.data, name=given.data or config.data.name),
        eval=replace(config.eval, loss=given.loss or config.eval.loss),
    )
