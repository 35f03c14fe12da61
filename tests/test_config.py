from __future__ import annotations

import re
from pathlib import Path

import pytest

from landscape.config import DIRECTION_NAMES, ComputeConfig, apply_overrides, parse_axis
from landscape.errors import ConfigError
from landscape.runs.sweep import expand_sweep, is_sweep_file

BASE = {"model": {"name": "mlp"}, "data": {"name": "digits"}, "out": "s.h5"}


def test_yaml_round_trip() -> None:
    cfg = ComputeConfig.from_dict({**BASE, "grid": {"x": "-1:1:5", "y": "-2:2:3"}})
    assert ComputeConfig.from_yaml(cfg.to_yaml()) == cfg
    assert cfg.dims == 2
    assert list(cfg.to_dict())[-1] == "out"


@pytest.mark.parametrize(
    "text, lo, hi, num",
    [("-1:1:51", -1.0, 1.0, 51), ("-0.5:1.5:401", -0.5, 1.5, 401), ("0:1e-1:2", 0, 0.1, 2)],
)
def test_parse_axis(text: str, lo: float, hi: float, num: int) -> None:
    ax = parse_axis(text)
    assert (ax.lo, ax.hi, ax.num) == (lo, hi, num)


@pytest.mark.parametrize(
    "bad", ["-1:1", "1:-1:5", "0:0:0", "a:b:c", "-1:1:1", "-1:1:2.5", "nan:1:3", ""]
)
def test_malformed_axes_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="MIN:MAX:NUM"):
        parse_axis(bad, "grid.x")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"model": {"name": "mlp", "colour": 1}}, "unknown config key 'model.colour'"),
        ({"modle": {"name": "mlp"}}, "unknown config key 'modle'"),
        ({"data": {"name": "digits", "batch_size": "big"}}, "'data.batch_size' must be an integer"),
        ({"data": {"name": "digits", "batch_size": 0}}, "data.batch_size must be at least 1"),
        ({"direction": {"norm": "weird"}}, "direction.norm must be one of filter, layer, none"),
        ({"direction": {"ignore": "all"}}, "direction.ignore must be one of"),
        ({"model": {"name": "mlp", "unsafe_pickle": "yes"}}, "must be true or false"),
        ({"grid": {"x": "1:-1:5"}}, "grid.x must be MIN:MAX:NUM"),
        ({"model": "mlp"}, "model must be a mapping"),
    ],
)
def test_bad_values_name_the_key(patch: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ComputeConfig.from_dict({**BASE, **patch})


def test_missing_required_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"missing required config key 'model\.name'"):
        ComputeConfig.from_dict({"data": {"name": "digits"}, "out": "x.h5"})
    with pytest.raises(ConfigError, match="missing required config key 'out'"):
        ComputeConfig.from_dict({"model": {"name": "mlp"}, "data": {"name": "digits"}})


def test_overrides_win_and_do_not_mutate() -> None:
    raw = {**BASE, "direction": {"seed": 1, "norm": "layer"}}
    merged = apply_overrides(raw, {"direction.seed": 7, "grid.x": "-2:2:5", "grid.y": "-1:1:3"})
    cfg = ComputeConfig.from_dict(merged)
    assert cfg.direction.seed == 7 and cfg.direction.norm == "layer" and cfg.grid.y == "-1:1:3"
    assert raw["direction"]["seed"] == 1 and "grid" not in raw


def test_fingerprint_ignores_where_and_how_fast() -> None:
    a = ComputeConfig.from_dict(BASE)
    b = ComputeConfig.from_dict(
        {
            **BASE,
            "out": "other.h5",
            "data": {"name": "digits", "batch_size": 7},
            "eval": {"device": "cpu"},
        }
    )
    c = ComputeConfig.from_dict({**BASE, "direction": {"seed": 3}})
    assert a.value_fingerprint() == b.value_fingerprint()
    assert a.value_fingerprint() != c.value_fingerprint()


def test_invalid_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: mlp\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ComputeConfig.from_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        ComputeConfig.from_file(tmp_path / "missing.yaml")


def test_every_shipped_config_loads() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("**/*.yaml"))
    assert files, "configs/ holds at least one example"
    for file in files:
        if is_sweep_file(file):  # a config plus `sweep:` lists: every run it expands to is valid
            runs = expand_sweep(file)
            assert runs and all(r.config.direction.name in DIRECTION_NAMES for r in runs), file
            continue
        cfg = ComputeConfig.from_file(file)
        assert cfg.direction.name in DIRECTION_NAMES, file
    assert any(is_sweep_file(f) for f in files), "configs/ holds at least one sweep"


def test_yaml_reads_grids_and_choices_as_written(tmp_path: Path) -> None:
    """YAML 1.1 would read ``-1:1:51`` as the base-60 integer -3711 and ``off`` as False."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {name: mlp}\ndata: {name: digits, max_samples: 010}\nout: s.h5\n"
        "grid: {x: -1:1:51, y: 0:2:3}\neval: {compile: off, memory_format: auto}\n"
    )
    cfg = ComputeConfig.from_file(path)
    assert cfg.grid.x == "-1:1:51" and cfg.grid.y == "0:2:3"
    assert cfg.eval.compile == "off" and cfg.data.max_samples == 10


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("model: {name: 56}", "'model.name' must be a string, but YAML read 56 as a int"),
        ("model: {name: mlp, checkpoint: 1.5}", "'model.checkpoint' must be a string"),
        ("model: {name: mlp}\ndirection: {trajectory: [a.pt, 2]}", "must be a list of strings"),
    ],
)
def test_a_string_field_never_takes_a_number(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"{text}\ndata: {{name: digits}}\nout: s.h5\n")
    with pytest.raises(ConfigError, match=re.escape(fragment)) as err:
        ComputeConfig.from_file(path)
    assert "quote" in str(err.value)


@pytest.mark.parametrize(("bn", "same"), [("eval", True), ("train", False), ("recalibrate", False)])
def test_batch_size_is_part_of_the_surface_under_batch_statistics(bn: str, same: bool) -> None:
    """Under --bn train (each batch's statistics) and --bn recalibrate (which samples re-estimate
    them) the batch size changes the values, so a resume with another one is refused."""
    a, b = (
        ComputeConfig.from_dict(
            {**BASE, "data": {"name": "digits", "batch_size": n}, "eval": {"bn": bn}}
        )
        for n in (100, 500)
    )
    assert (a.value_fingerprint() == b.value_fingerprint()) == same


def one_error_line(args: list[str]) -> str:
    from click.testing import CliRunner

    from landscape.cli import main

    result = CliRunner().invoke(main, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, (result.stderr, result.exception)
    assert lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {name: mlp}\ndata: {name: digits}\nmodel: {name: lenet}\n",
         "key 'model' is given twice in one mapping (lines 1 and 3); keep one"),
        ("model: {name: mlp, args: {hidden: 8, hidden: 9}}\n", "key 'hidden' is given twice"),
        ("model: {name: mlp, args: {x: " + "[" * 1000 + "]" * 1000 + "}}\n",
         "nesting deeper than 64 levels at line 1"),
        ("model: {name: mlp}\ndirection: {seed: " + "7" * 5000 + "}\n",
         "the integer at line 2 has 5,000 digits, more than the 64"),
        ("model: &m {name: mlp, args: {a: *m}}\n", "an alias at line 1 or below refers to a value"),
    ],
)  # fmt: skip
def test_yaml_a_config_may_not_be_is_one_error_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    line = one_error_line(["compute", "--config", str(path), "--out", str(tmp_path / "s.h5")])
    assert f"{path}: {message}" in line
    assert not (tmp_path / "s.h5").exists()


def test_yaml_merge_keys_still_override() -> None:
    from landscape.config import load_yaml

    text = "base: &b {name: mlp, seed: 1}\nrun:\n  <<: *b\n  seed: 2\n"
    assert load_yaml(text)["run"] == {"name": "mlp", "seed": 2}
