"""Each setting declared once (issue 24, item 2).

Every flag of ``compute``, ``inspect``, ``curvature`` and ``sweep`` and every keyword of
``landscape.compute``/``inspect``/``curvature`` names its setting in config.py, and the default
its help shows, the option's own default and the keyword's default are that setting's. A flag
or keyword without a setting fails unless it is on the short lists of interface-only ones.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, get_type_hints

import click
import numpy as np
import pytest
import yaml

from landscape import api, cli, families
from landscape.config import (
    REQUIRED,
    ComputeConfig,
    DataSpec,
    DirectionSpec,
    EvalSpec,
    InspectConfig,
    default_of,
    parse_axis,
)
from landscape.info import summary_lines
from landscape.store.values import SurfaceValues

# options that steer the command itself, not the run: no setting, by design
INTERFACE_FLAGS = {
    "compute": {"config_file", "overwrite", "workers", "quiet"},
    "inspect": {"json_file", "plots_dir", "no_fail"},
    "curvature": {"overwrite", "quiet"},
    "sweep": {"dry_run", "slurm_script", "overwrite", "quiet"},
}
INTERFACE_KEYWORDS = {
    "compute": {"train_data", "out", "overwrite", "progress"},
    "inspect": {"trained"},  # the CLI judges a network trained when it has a checkpoint
    "curvature": {"out", "overwrite", "progress"},
}
# the API's curvature builds its session from objects, with compute's loss and device; the
# CLI's --loss and --device restate the surface file's
BORROWED = {"curvature": {"loss": "eval.loss", "device": "eval.device"}}


def _expected(default: Any, option: click.Option) -> str | None:
    """What a help's bracket must say for ``default``; None where it only describes (None)."""
    if isinstance(default, bool):
        return ("yes" if default else "no") if option.secondary_opts else None
    if default is None or default is REQUIRED or isinstance(default, (list, tuple, dict)):
        return None
    return str(default)


def flag_problems(command: click.Command, interface: set[str], fills: bool) -> list[str]:
    """Each option of ``command``: its setting, its help's bracketed default and (``fills``: a
    command without a YAML file) its own default, against config.py."""
    problems = []
    for option in command.params:
        if not isinstance(option, click.Option) or option.name in interface:
            continue
        where = f"{command.name} {option.opts[0]}"
        key, root = getattr(option, "key", None), getattr(option, "root", ComputeConfig)
        try:
            default = default_of(key, root) if key else REQUIRED
        except KeyError:
            problems.append(f"{where}: {key!r} is no setting of {root.__name__}")
            continue
        if key is None:
            problems.append(f"{where}: no setting (config.py) and not interface-only")
            continue
        shown = re.findall(r"\[([^\]]*)\]", option.help or "")
        expected = _expected(default, option)
        if expected is None and len(shown) > 1:
            problems.append(f"{where}: help shows several defaults {shown}")
        if expected is not None and [s.split(": ")[0] for s in shown] != [expected]:
            problems.append(f"{where}: help shows {shown}, {root.__name__}.{key} is {expected}")
        if fills and default is not REQUIRED and not option.multiple and option.default != default:
            problems.append(f"{where}: defaults to {option.default!r}, {key} is {default!r}")
    return problems


def _same(given: Any, declared: Any) -> bool:
    if isinstance(declared, list):  # a list setting: the keyword takes None or a sequence
        return given is None or list(given) == declared
    if isinstance(given, tuple) and isinstance(declared, str):  # an axis: (min, max, num)
        return parse_axis(api._axis(given)) == parse_axis(declared)
    return given == declared and type(given) is type(declared)


def keyword_problems(name: str) -> list[str]:
    """Each keyword of ``landscape.<name>``: the flag of the same name's setting, its default."""
    command = cli.main.commands[name]
    flags = {opt: p for p in command.params for opt in p.opts}
    problems = []
    for keyword, param in inspect.signature(getattr(api, name)).parameters.items():
        if param.kind is not param.KEYWORD_ONLY or keyword in INTERFACE_KEYWORDS[name]:
            continue
        root, key = ComputeConfig, BORROWED.get(name, {}).get(keyword)
        if key is None:
            option = flags.get("--" + keyword.replace("_", "-"))
            if getattr(option, "key", None) is None:
                problems.append(f"{name}({keyword}=): no flag with a setting, not interface-only")
                continue
            root, key = option.root, option.key
        declared = default_of(key, root)
        if not _same(param.default, declared):
            problems.append(f"{name}({keyword}={param.default!r}): {key} is {declared!r}")
    return problems


@pytest.mark.parametrize("name", sorted(INTERFACE_FLAGS))
def test_every_flag_has_its_setting_and_shows_its_default(name: str) -> None:
    command = cli.main.commands[name]
    assert flag_problems(command, INTERFACE_FLAGS[name], fills=name != "compute") == []


@pytest.mark.parametrize("name", sorted(INTERFACE_KEYWORDS))
def test_every_keyword_defaults_to_its_setting(name: str) -> None:
    assert keyword_problems(name) == []


def test_a_default_changed_in_one_place_only_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of a default (a help text, a keyword, an option's default) that did not follow
    the dataclass is reported, for each of the three."""
    monkeypatch.setattr(DataSpec.__dataclass_fields__["batch_size"], "default", 400)
    assert keyword_problems("compute") == ["compute(batch_size=500): data.batch_size is 400"]
    inspect_flags = flag_problems(cli.main.commands["inspect"], INTERFACE_FLAGS["inspect"], True)
    assert inspect_flags == [
        "inspect --batch-size: help shows ['500'], InspectConfig.data.batch_size is 400",
        "inspect --batch-size: defaults to 500, data.batch_size is 400",
    ]
    # and so are a flag without a setting and a hand-written default beside the derived one
    stray = click.Command(
        "compute",
        params=[
            click.Option(["--batch-size"], help="Samples per forward pass [500]."),
            cli.Setting(["--seed"], key="direction.seed", help="Seed [1]."),
        ],
    )
    assert flag_problems(stray, set(), fills=False) == [
        "compute --batch-size: no setting (config.py) and not interface-only",
        "compute --seed: help shows ['1', '0'], ComputeConfig.direction.seed is 0",
    ]


def test_split_forward_keyword_follows_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """``landscape.compute(split_forward=)`` is walked with the others: its default is
    ``eval.split_forward``'s, as ``--split-forward``'s is."""
    assert "split_forward" in inspect.signature(api.compute).parameters
    monkeypatch.setattr(EvalSpec.__dataclass_fields__["split_forward"], "default", "on")
    assert keyword_problems("compute") == [
        "compute(split_forward='auto'): eval.split_forward is 'on'"
    ]


def test_help_and_option_defaults_are_read_from_the_dataclass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DataSpec.__dataclass_fields__["batch_size"], "default", 400)
    monkeypatch.setitem(InspectConfig.DEFAULTS, "data.max_samples", 64)
    batch = cli.Setting(["--batch-size"], key="data.batch_size", help="Samples per pass.")
    assert batch.help == "Samples per pass [400]." and batch.default != 400  # YAML fills it
    samples = cli.Setting(["--max-samples"], key="data.max_samples", root=InspectConfig, fill=True)
    assert samples.help == "[64]" and samples.default == 64


def test_flag_keys_come_from_the_compute_options() -> None:
    """The flag → config key map that lays flags over the YAML is the options' own."""
    assert cli.FLAG_KEYS["batch_size"] == "data.batch_size"
    assert cli.FLAG_KEYS["hessian_samples"] == "direction.hessian_samples"
    assert cli.FLAG_KEYS["label_column"] == "data.labels"
    assert "model_args" not in cli.FLAG_KEYS  # KEY=VALUE pairs, merged into model.args
    groups = get_type_hints(ComputeConfig)
    settings = {
        f"{group.name}.{f.name}"
        for group in dataclasses.fields(ComputeConfig)
        if dataclasses.is_dataclass(groups[group.name])
        for f in dataclasses.fields(groups[group.name])
    } | {"out"}
    # YAML-only: data.normalize; model.args is set by --model-arg KEY=VALUE
    assert settings - set(cli.FLAG_KEYS.values()) == {"model.args", "data.normalize"}
    assert set(cli.FLAG_KEYS.values()) <= settings


@pytest.mark.parametrize(
    ("option", "names"), [pytest.param(o, n, id=o.field) for o, n in families.options()]
)
def test_a_family_option_is_declared_once_and_everything_derives_from_it(
    option: families.Option, names: tuple[str, ...]
) -> None:
    """Each family option's declaration (families.py) is its YAML key with its default, its
    flag, its ``landscape.compute`` keyword and its part of ``info``'s directions line."""
    spec_fields = {f.name: f for f in dataclasses.fields(DirectionSpec)}
    assert option.field in spec_fields  # YAML: direction.<field>
    assert default_of(f"direction.{option.field}") == option.initial
    flags = {o: p for p in cli.main.commands["compute"].params for o in p.opts}
    assert getattr(flags[option.flag], "key", None) == f"direction.{option.field}"
    keyword = inspect.signature(api.compute).parameters[option.api_keyword]
    assert keyword.kind is keyword.KEYWORD_ONLY
    assert _same(keyword.default, option.initial)
    if option.kind in ("flag", "count"):  # what info's directions line says once it is set
        value = True if option.kind == "flag" else 7
        values = SurfaceValues(
            "s.h5", np.zeros(3), None, {}, np.ones(3, bool),
            attrs={"config": yaml.safe_dump({"direction": {"name": names[0], option.field: value}})},
            direction_attrs={"method": names[0]},
        )  # fmt: skip
        line = next(x for x in summary_lines(values) if x.startswith("directions:"))
        assert f"{option.field}={'on' if value is True else value}" in line


# the keywords of landscape.hessian / landscape.align and the flags of their commands, where the
# names differ (the flag --top-k sets the keyword k)
SAME_SETTING = {"hessian": {"k": "top_k", "params": "params_globs", "exclude": "exclude_globs"}}


@pytest.mark.parametrize("name", ["hessian", "align"])
def test_the_other_commands_and_their_functions_share_each_default(name: str) -> None:
    """A setting of ``landscape hessian`` / ``align`` and its keyword of the Python function
    have one default (each command declares its settings in its own module)."""
    import landscape

    keywords = inspect.signature(getattr(landscape, name)).parameters
    flags = {p.name: p for p in cli.main.commands[name].params if isinstance(p, click.Option)}
    mismatched = []
    for keyword, param in keywords.items():
        flag = flags.get(SAME_SETTING.get(name, {}).get(keyword, keyword))
        if param.default is param.empty or flag is None or flag.multiple:
            continue
        if flag.default is getattr(click.core, "UNSET", None):  # required, or the command's own
            continue
        if flag.default != param.default:
            mismatched.append(f"{keyword}: {name}() {param.default!r}, --flag {flag.default!r}")
    assert mismatched == []
