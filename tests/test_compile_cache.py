"""--compile auto decides on compile costs measured here before, remembered per model."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from landscape.engine import compile_cache
from landscape.engine.select import COMPILE_SECONDS, _compile_decision


def test_a_remembered_cost_and_speedup_decide(cache: Path) -> None:
    cpu = torch.device("cpu")
    # 40 points of 0.5 s at the default 1.6x save 7.5 s: not worth the assumed first compile
    verdict, why = _compile_decision("auto", cpu, 0.5, 40)
    assert not verdict and f"~{COMPILE_SECONDS['cpu']:.0f} s" in why and "assumed" in why
    # a warm inductor cache measured here: 2.9 s, and a 1.58x gain: now it pays
    verdict, why = _compile_decision("auto", cpu, 0.5, 40, {"seconds": 2.9, "speedup": 1.58})
    assert verdict and "measured here before" in why and "1.58x" in why
    # a compile that did not speed this model up is never chosen again
    verdict, _ = _compile_decision("auto", cpu, 0.5, 4000, {"seconds": 2.9, "speedup": 0.97})
    assert not verdict
    # the BatchNorm-folded CPU path expects nothing from a compile until one is measured
    verdict, why = _compile_decision("auto", cpu, 0.5, 4000, None, fused=True)
    assert not verdict and "1.00x" in why and "BatchNorm folded" in why
    verdict, _ = _compile_decision("auto", cpu, 0.5, 4000, {"seconds": 2.9, "speedup": 1.3}, True)
    assert verdict


def test_a_busy_machine_does_not_turn_the_compile_decision(cache: Path) -> None:
    """Issue 23 item 2: the eager timings a loaded machine inflates are weighed against a
    compile cost inflated alike, so the run decides as it would alone."""
    cpu = torch.device("cpu")
    alone, load = 0.0016, 12.0  # digits' 51 x 51 grid, batched: 1.6 ms a point alone
    assert not _compile_decision("auto", cpu, alone, 2601)[0]
    assert _compile_decision("auto", cpu, alone * load, 2601)[0]  # a quiet machine's cost: main's
    verdict, why = _compile_decision("auto", cpu, alone * load, 2601, None, False, load)
    assert not verdict and f"~{COMPILE_SECONDS['cpu'] * load:.0f} s" in why
    assert "x12.0 for this machine's load" in why
    # a cost measured under a load of 3 is a third of it on a quiet machine: 10 s, which 100
    # points of 0.5 s at 1.6x (18.75 s saved) pay for, and 30 s would not
    known = {"seconds": 30.0, "load": 3.0, "speedup": 1.6}
    assert _compile_decision("auto", cpu, 0.5, 100, known)[0]
    assert not _compile_decision("auto", cpu, 0.5, 100, {**known, "load": "x"})[0]


def test_the_load_factor_is_how_much_the_machine_stretched_the_timings() -> None:
    from landscape.engine.select import _load_factor

    cpu = torch.device("cpu")
    # the main thread got a quarter of a core over the timings: 4x slower than alone
    assert _load_factor(cpu, 2.0, 0.5) == 4.0
    assert _load_factor(cpu, 1.0, 1.02) == 1.0  # alone (or a clock's rounding)
    assert _load_factor(cpu, 1.0, 0.0) == 1.0 and _load_factor(cpu, 100.0, 0.01) == 32.0
    assert _load_factor(torch.device("cuda"), 2.0, 0.5) == 1.0  # a GPU's timings are its own


def test_records_are_kept_per_model_structure(cache: Path) -> None:
    a = torch.nn.Sequential(torch.nn.Linear(4, 3))
    b = torch.nn.Sequential(torch.nn.Linear(4, 5))
    cpu = torch.device("cpu")
    ka, kb = (compile_cache.key(m, cpu, "reference", False, 128) for m in (a, b))
    assert ka != kb and ka == compile_cache.key(a, cpu, "reference", False, 128)
    assert ka != compile_cache.key(a, cpu, "reference", False, 256)
    compile_cache.remember(ka, seconds=3.0)
    compile_cache.remember(ka, speedup=1.5)
    assert compile_cache.recall(ka) == {"seconds": 3.0, "speedup": 1.5}
    assert compile_cache.recall(kb) is None
    assert json.loads((cache / "compile.json").read_text())[ka]["seconds"] == 3.0
    compile_cache.use_persistent_inductor_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")
    assert stat.S_IMODE((cache / "inductor").stat().st_mode) == 0o700  # the user's alone


def test_an_unwritable_cache_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LANDSCAPE_CACHE", str(blocker / "cache"))  # under a file: cannot exist
    compile_cache.remember("k", seconds=1.0)
    assert compile_cache.recall("k") is None


@pytest.mark.slow
def test_a_compiled_run_remembers_its_cost(cache: Path, tmp_path: Path, tiny_npz: Path) -> None:
    from click.testing import CliRunner

    from landscape.cli import main
    from landscape.store import read_surface

    out = tmp_path / "c.h5"
    result = CliRunner().invoke(main, [
        "compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "num_classes=3",
        "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--compile", "on", "--out", str(out), "-q",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(read_surface(out).attrs["engine"])
    assert report["compile"] is True and report["compile_seconds"] > 0
    (record,) = json.loads((cache / "compile.json").read_text()).values()
    assert record["seconds"] == report["compile_seconds"] and record["speedup"] > 0
    assert any((cache / "inductor").iterdir())  # the kernels are cached beside it


def test_a_cache_folder_others_can_write_is_not_used(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landscape.errors import LandscapeWarning

    (cache / "inductor").mkdir(parents=True)
    cache.chmod(0o777)  # anyone may plant kernels (or records) here
    key = "k" * 24
    (cache / "compile.json").write_text(json.dumps({key: {"seconds": 0.1, "speedup": 50.0}}))
    with pytest.warns(LandscapeWarning, match="which another user owns or can write into"):
        compile_cache.use_persistent_inductor_cache()
    used = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    assert cache not in (used, *used.parents) and compile_cache.unsafe(used) is None
    assert compile_cache.recall(key) is None  # records there are not believed either
    compile_cache.remember(key, seconds=9.0)
    assert json.loads((cache / "compile.json").read_text())[key]["seconds"] == 0.1
    # a TORCHINDUCTOR_CACHE_DIR of the user's own is used; one that others can write is not
    mine, shared = tmp_path / "mine", tmp_path / "shared"
    mine.mkdir(mode=0o700)
    shared.mkdir()
    shared.chmod(0o777)
    cache.chmod(0o700)
    monkeypatch.setattr(compile_cache, "_chosen", [], raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(mine))
    compile_cache.use_persistent_inductor_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(mine)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(shared))
    with pytest.warns(LandscapeWarning, match=f"TORCHINDUCTOR_CACHE_DIR '{shared}' can be"):
        compile_cache.use_persistent_inductor_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")


def test_a_cache_folder_of_another_user_is_not_used(cache: Path) -> None:
    from landscape.errors import LandscapeWarning

    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    (cache / "inductor").mkdir(parents=True, mode=0o700)
    os.chown(cache / "inductor", 65534, 65534)
    with pytest.warns(LandscapeWarning, match="is owned by user id 65534, not by you"):
        compile_cache.use_persistent_inductor_cache()
    assert not os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(str(cache))


def test_a_run_leaves_the_environment_as_it_was(cache: Path) -> None:
    from landscape.config import ComputeConfig
    from landscape.evaluation import numerics

    config = ComputeConfig.from_dict({"model": {"name": "mlp"}, "data": {"name": "digits"},
                                      "out": "s.h5"})  # fmt: skip
    with numerics(config.eval, torch.device("cpu")):
        compile_cache.use_persistent_inductor_cache()  # a run that compiles
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    with numerics(config.eval, torch.device("cpu")):  # the same run's next stage: its folder again
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


@pytest.mark.parametrize(
    "records",
    ['{"K": "fast"}', '{"K": null}', '{"K": [1, 2]}', '[1, 2]', '"text"', "null",
     '{"K": {"seconds": "3", "speedup": null}}', '{"K": {"seconds": [], "speedup": {}}}',
     '{"K": {"seconds": -1, "speedup": NaN}}', "[" * 100_000],
)  # fmt: skip
def test_malformed_records_are_ignored(cache: Path, records: str) -> None:
    cache.mkdir()
    (cache / "compile.json").write_text(records)
    known = compile_cache.recall("K")
    assert known is None
    verdict, why = _compile_decision("auto", torch.device("cpu"), 0.5, 40, known)
    assert not verdict and "assumed" in why
    compile_cache.remember("K", seconds=2.0, speedup=1.5)  # written over, not a traceback
    assert compile_cache.recall("K") == {"seconds": 2.0, "speedup": 1.5}


@pytest.mark.slow
def test_a_compiled_run_does_not_use_a_shared_cache(cache: Path, tmp_path: Path, tiny_npz: Path):
    import subprocess
    import sys

    (cache / "inductor").mkdir(parents=True)
    for folder in (cache, cache / "inductor"):
        folder.chmod(0o777)  # as /tmp/torchinductor_USER would be if another user made it
    done = subprocess.run([
        sys.executable, "-m", "landscape", "compute", "--model", "mlp", "--model-arg",
        "in_features=6", "--model-arg", "num_classes=3", "--data", f"npz:{tiny_npz}",
        "--x=-1:1:3", "--compile", "on", "--out", str(tmp_path / "c.h5"), "-q",
    ], capture_output=True, text=True,
       env={**os.environ, "LANDSCAPE_CACHE": str(cache), "TMPDIR": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: the compile cache" in done.stderr and "not used" in done.stderr
    assert not any((cache / "inductor").iterdir())  # nothing read from or written there
    assert not (cache / "compile.json").exists()
