"""Sweep files: expansion, file names, status, resuming a sweep, SLURM scripts and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from landscape.cli import main
from landscape.config import ComputeConfig
from landscape.errors import ConfigError, SurfaceFileError
from landscape.runs.sweep import array_ranges, expand_sweep, run_out, run_sweep, status, write_slurm
from landscape.store import read_surface

BASE = {
    "model": {"name": "mlp", "args": {"in_features": 6, "hidden": 8, "num_classes": 3}},
    "data": {"name": "digits"},
    "grid": {"x": "-1:1:3", "y": "-1:1:3"},
    "eval": {"device": "cpu", "engine": "reference", "compile": "off"},
    "out": "results/li2018/surface.h5",
}


def write(tmp_path: Path, raw: dict, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cross_product_in_key_order(tmp_path: Path) -> None:
    sweep = {"direction.name": ["filter-norm", "zca", "pca"], "model.name": ["mlp", "lenet"]}
    runs = expand_sweep(write(tmp_path, {**BASE, "sweep": sweep}))
    assert [r.index for r in runs] == list(range(6))
    assert [tuple(r.varying.values()) for r in runs] == [
        (d, m) for d in sweep["direction.name"] for m in sweep["model.name"]
    ]
    assert all(isinstance(r.config, ComputeConfig) for r in runs)
    assert runs[3].config.direction.name == "zca" and runs[3].config.model.name == "lenet"
    assert runs[3].config.model.args == {"in_features": 6, "hidden": 8, "num_classes": 3}
    assert (
        runs[0].config.out == "results/li2018/surface_direction.name=filter-norm_model.name=mlp.h5"
    )


def test_file_names_are_sanitized_and_distinct(tmp_path: Path) -> None:
    assert (
        run_out("results/li2018/surface.h5", {"direction.name": "zca", "model.name": "resnet56"})
        == "results/li2018/surface_direction.name=zca_model.name=resnet56.h5"
    )
    odd = run_out("out/s.h5", {"data.name": "npz:a/b c.npz"})
    assert Path(odd).parent == Path("out") and "/" not in Path(odd).name and " " not in odd
    names = {run_out("s.h5", {"data.name": v}) for v in ("a/b", "a b", "a-b", "a_b")}
    assert len(names) == 4
    sweep = {"direction.seed": [0, 1, 2], "grid.x": ["-1:1:3", "-2:2:3"]}
    runs = expand_sweep(write(tmp_path, {**BASE, "sweep": sweep}))
    assert len({r.config.out for r in runs}) == len(runs) == 6


def test_placeholders_fill_values_and_out(tmp_path: Path) -> None:
    raw = {
        **BASE,
        "model": {**BASE["model"], "checkpoint": "ckpt/{model.name}.pt"},
        "out": "res/{direction.name}.h5",
        "sweep": {"direction.name": ["filter-norm", "zca"], "model.name": ["mlp"]},
    }
    runs = expand_sweep(write(tmp_path, raw))
    assert [r.config.model.checkpoint for r in runs] == ["ckpt/mlp.pt", "ckpt/mlp.pt"]
    assert [r.config.out for r in runs] == ["res/filter-norm.h5", "res/zca.h5"]
    raw["out"] = "res/{model.name}.h5"  # two runs, one file
    with pytest.raises(ConfigError, match="would both write"):
        expand_sweep(write(tmp_path, raw))


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"model.nam": ["a"]}, "unknown config key 'model.nam'"),
        ({"modle.name": ["a"]}, "unknown config key 'modle'"),
        ({"direction.name": "zca"}, "'direction.name' must hold a non-empty list"),
        ({"direction.name": []}, "'direction.name' must hold a non-empty list"),
        ({"direction.name": ["zca", "zca"]}, "lists the value 'zca' twice"),
        ({"direction.name": ["zca", "spiral"]}, "direction.name must be one of"),
        (["direction.name"], "'sweep' must be a mapping"),
    ],
)
def test_bad_sweeps_name_the_key(tmp_path: Path, sweep: object, message: str) -> None:
    path = write(tmp_path, {**BASE, "sweep": sweep})
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        expand_sweep(path)
    assert str(path) in str(err.value)


def test_a_plain_config_is_not_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no top-level 'sweep:' key"):
        expand_sweep(write(tmp_path, BASE))


@pytest.fixture
def tiny_sweep(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> Path:
    """Two runs (direction seeds 0 and 1) of the tiny mlp on a 3×3 grid."""
    raw = {
        **BASE,
        "model": {**BASE["model"], "checkpoint": str(tiny_mlp_ckpt)},
        "data": {"name": f"npz:{tiny_npz}"},
        "out": str(tmp_path / "runs" / "surface.h5"),  # the folder is created by the sweep
        "sweep": {"direction.seed": [0, 1]},
    }
    return write(tmp_path, raw)


def test_sweep_runs_then_skips_complete(tmp_path: Path, tiny_sweep: Path) -> None:
    runs = expand_sweep(tiny_sweep)
    assert [status(r) for r in runs] == ["new", "new"]
    lines: list[str] = []
    first = run_sweep(runs, log=lines.append)
    assert [o.status for o in first] == ["new", "new"]
    assert [o.result.computed for o in first] == [9, 9]
    assert len(lines) == 2 and "9 of 9 points" in lines[0]
    assert [status(r) for r in runs] == ["complete", "complete"]
    for run in runs:
        assert read_surface(run.config.out).done.all()
    again = run_sweep(runs, log=lines.append)
    assert [o.result for o in again] == [None, None]  # nothing recomputed
    assert "complete, skipped" in lines[-1]
    ckpt = Path(runs[0].config.model.checkpoint)  # retrained weights: the files are stale
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"] = {k: v + 1 for k, v in state["state_dict"].items()}
    torch.save(state, ckpt)
    assert [status(r) for r in runs] == ["conflict", "conflict"]


def test_status_partial_and_conflict(tmp_path: Path, tiny_sweep: Path) -> None:
    import h5py

    runs = expand_sweep(tiny_sweep)
    run_sweep(runs[:1])
    with h5py.File(runs[0].config.out, "r+") as f:
        done = f["done"][()]
        done[0, 0] = False
        f["done"][...] = done
    assert status(runs[0]) == "partial"
    Path(runs[1].config.out).write_text("not a surface")
    assert status(runs[1]) == "conflict"
    with pytest.raises(SurfaceFileError, match="--overwrite"):
        run_sweep(runs)
    outcomes = run_sweep(runs, overwrite=True)
    assert [o.result.computed for o in outcomes] == [1, 9]  # resumed, replaced
    assert [status(r) for r in runs] == ["complete", "complete"]


def test_cli_dry_run_lists_runs(tmp_path: Path, tiny_sweep: Path) -> None:
    path = tiny_sweep
    code, out, _ = cli("sweep", str(path), "--dry-run")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"2 runs in {path}"
    assert re.match(r"\s*0\s+new\s+direction\.seed=0\s+\S+surface_direction\.seed=0\.h5$", lines[1])
    assert re.match(r"\s*1\s+new\s+direction\.seed=1\s+", lines[2])
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_cli_runs_sweep_and_reports(tmp_path: Path, tiny_sweep: Path) -> None:
    path = tiny_sweep
    code, out, _ = cli("sweep", str(path))
    assert code == 0, out
    assert out.count("9 of 9 points") == 2
    code, out, _ = cli("sweep", str(path), "--dry-run")
    assert out.count("complete") == 2
    code, out, _ = cli("sweep", str(path))
    assert out.count("complete, skipped") == 2


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, {**BASE, "sweep": {"model.nam": ["a"]}})
    code, _, err = cli("sweep", str(path), "--dry-run")
    assert code == 1
    assert [line for line in err.splitlines() if line.startswith("Error:")] == err.splitlines()
    assert "unknown config key 'model.nam'" in err and "Traceback" not in err


def test_cli_failing_run_is_named(tmp_path: Path, tiny_sweep: Path) -> None:
    raw = yaml.safe_load(tiny_sweep.read_text())
    raw["model"]["checkpoint"] = str(tmp_path / "garbage.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    code, _, err = cli("sweep", str(write(tmp_path, raw)), "-q")
    assert code == 1 and err.startswith("Error: run 0 (direction.seed=0): checkpoint ")


def test_runs_that_cannot_start_are_listed_and_refused(tmp_path: Path, tiny_sweep: Path) -> None:
    raw = yaml.safe_load(tiny_sweep.read_text())
    raw["model"]["checkpoint"] = str(tmp_path / "{direction.seed}.pt")
    torch.save({}, tmp_path / "0.pt")  # run 0 has its checkpoint, run 1 has none
    path = write(tmp_path, raw)
    code, out, _ = cli("sweep", str(path), "--dry-run")
    lines = out.splitlines()[1:]
    assert code == 0 and "new" in lines[0]
    assert "missing" in lines[1] and f"(checkpoint {tmp_path / '1.pt'} not found)" in lines[1]
    code, _, err = cli("sweep", str(path), "-q")
    assert code == 1 and "1 run(s) cannot start, first run 1 (direction.seed=1)" in err
    assert not list(tmp_path.glob("*.h5"))  # refused before any run started


@pytest.mark.parametrize(
    ("sweep", "why"),
    [
        ({"direction.name": ["pca"], "direction.seed": [0, 1]}, "does not change pca's directions"),
        ({"data.seed": [0, 1]}, "changes nothing when every sample is used"),
    ],
)
def test_runs_that_would_compute_the_same_surface_are_refused(
    tmp_path: Path, sweep: dict, why: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(why)):
        expand_sweep(write(tmp_path, {**BASE, "sweep": sweep}))
    expand_sweep(write(tmp_path, {**BASE, "sweep": {"direction.seed": [0, 1]}}))  # filter-norm


def test_cli_help_has_example() -> None:
    code, out, _ = cli("sweep", "--help")
    assert code == 0 and "Example" in out and "--slurm" in out


def test_array_ranges() -> None:
    assert array_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert array_ranges([3]) == "3"


def test_slurm_script(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    raw = {**BASE, "data": {"name": f"npz:{tiny_npz}"}, "out": "runs/s.h5"}
    raw["model"] = {**BASE["model"], "checkpoint": str(tiny_mlp_ckpt)}
    raw["sweep"] = {"direction.seed": [0, 1, 2]}
    runs = expand_sweep(write(tmp_path, raw))
    script = write_slurm(runs, tmp_path / "jobs" / "sweep.sh", gpus_per_task=2, partition="gpu")
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "#SBATCH --array=0-2\n" in text
    assert "#SBATCH --gres=gpu:2\n" in text and "#SBATCH --ntasks=2\n" in text
    assert "#SBATCH --partition=gpu\n" in text
    config_dir = tmp_path / "jobs" / "sweep_configs"
    assert (
        f"mpiexec -n 2 landscape compute --config {config_dir}/$(printf %03d $SLURM_ARRAY_TASK_ID).yaml"
        in text
    )
    assert f"cd {tmp_path}" in text
    for run in runs:
        assert ComputeConfig.from_file(config_dir / f"{run.index:03d}.yaml") == run.config

    run_sweep(runs[1:2])  # a complete run leaves the array
    for old in config_dir.iterdir():
        old.unlink()
    text = write_slurm(runs, script, gpus_per_task=1).read_text()
    assert "#SBATCH --array=0,2\n" in text and "--partition" not in text
    assert "mpiexec" not in text and "landscape compute --config" in text
    assert sorted(p.name for p in config_dir.iterdir()) == ["000.yaml", "002.yaml"]

    code, out, _ = cli("sweep", str(tmp_path / "sweep.yaml"), "--slurm", "jobs/again.sh")
    assert code == 0 and "sbatch" in out and (tmp_path / "jobs" / "again.sh").is_file()


def bounded_dry_run(path: Path) -> tuple[int, str]:
    """``sweep --dry-run`` in a process allowed 3 GB of address space and one minute."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "landscape", "sweep", str(path), "--dry-run"],
        capture_output=True, text=True, timeout=60, preexec_fn=limit,
    )  # fmt: skip
    return done.returncode, done.stderr


def test_a_billion_laughs_sweep_is_refused_with_its_size(tmp_path: Path) -> None:
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    body = yaml.safe_dump({**BASE, "sweep": {"direction.seed": [0, 1]}}, sort_keys=False)
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\n" + body)  # 9^10 values once the aliases are out
    code, err = bounded_dry_run(path)
    assert code == 1 and err.count("\n") == 1, err
    assert "aliases expand it to more than 100,000 values; write the values out" in err


def test_a_sweep_of_a_million_runs_is_refused_with_its_size(tmp_path: Path) -> None:
    axes = {key: list(range(10)) for key in ("direction.seed", "data.seed", "data.batch_size")}
    axes |= {"data.max_samples": list(range(1, 11)), "eval.bn_batches": list(range(1, 11)),
             "direction.hessian_samples": list(range(1, 11))}  # fmt: skip
    path = write(tmp_path, {**BASE, "sweep": axes})
    code, err = bounded_dry_run(path)
    assert code == 1 and err.count("\n") == 1, err
    assert "expands to 1,000,000 runs (10 x 10 x 10 x 10 x 10 x 10), more than the 10,000" in err
