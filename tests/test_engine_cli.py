"""Engine options end to end: every path writes the reference's values and records its choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.store import read_surface

BN_MODEL = """
import torch
def make():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(8, 3)
    )
    net[1].running_mean.uniform_(-0.2, 0.2)
    return net
"""


def compute(tmp_path: Path, npz: Path, name: str, *extra: str) -> Path:
    model = tmp_path / "bnnet.py"
    model.write_text(BN_MODEL)
    out = tmp_path / f"{name}.h5"
    args = ["compute", "--model", f"{model}:make", "--data", f"npz:{npz}", "--batch-size", "16",
            "--x=-1:1:4", "--y=-1:1:3", "--device", "cpu", "--out", str(out), "--quiet", *extra]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("bn", ["eval", "train", "recalibrate"])
def test_engines_agree_for_every_bn_policy(tmp_path: Path, tiny_npz: Path, bn: str) -> None:
    ref = compute(
        tmp_path, tiny_npz, f"ref-{bn}", "--engine", "reference", "--bn", bn, "--bn-batches", "2"
    )
    bat = compute(
        tmp_path, tiny_npz, f"bat-{bn}", "--engine", "batched", "--bn", bn, "--bn-batches", "2"
    )
    a, b = read_surface(ref), read_surface(bat)
    np.testing.assert_allclose(b.values["train_loss"], a.values["train_loss"], rtol=1e-5)
    np.testing.assert_array_equal(b.values["train_acc"], a.values["train_acc"])
    assert json.loads(b.attrs["engine"])["engine"] == "batched"


def test_policies_change_the_values_and_the_fingerprint(tmp_path: Path, tiny_npz: Path) -> None:
    ev = read_surface(compute(tmp_path, tiny_npz, "ev", "--bn", "eval")).values["train_loss"]
    tr = read_surface(compute(tmp_path, tiny_npz, "tr", "--bn", "train")).values["train_loss"]
    assert not np.allclose(ev, tr)
    out = tmp_path / "ev.h5"  # resuming the eval file under another policy is refused
    result = CliRunner().invoke(
        main,
        ["compute", "--model", f"{tmp_path / 'bnnet.py'}:make", "--data", f"npz:{tiny_npz}", "--batch-size", "16",
         "--x=-1:1:4", "--y=-1:1:3", "--device", "cpu", "--out", str(out), "--bn", "train"],
    )  # fmt: skip
    assert result.exit_code == 1 and "eval.bn" in result.stderr


def test_auto_records_its_timings_and_choice(tmp_path: Path, tiny_npz: Path) -> None:
    s = read_surface(compute(tmp_path, tiny_npz, "auto"))
    report = json.loads(s.attrs["engine"])
    assert report["engine"] in ("reference", "batched")
    assert set(report["timings"]) == {
        "reference",
        "batched",
    }  # no conv layers: no channels-last candidate
    assert report["compile"] is False and "saving" in report["compile_reason"]


def test_memory_budget_sets_the_batch_and_k(tmp_path: Path, tiny_npz: Path) -> None:
    """A budget too small for one --batch-size batch shrinks the batch; K takes what is left."""
    per_sample = (8 + 8 + 8 + 8 + 3) * 4  # bytes of every layer's output for one sample
    want = read_surface(compute(tmp_path, tiny_npz, "wide", "--engine", "batched"))
    out = compute(tmp_path, tiny_npz, "narrow", "--engine", "batched", "--memory-budget", "1000")
    got = read_surface(out)
    report = json.loads(got.attrs["engine"])
    assert report["batch_size"] == 1000 // per_sample  # 7, not --batch-size 16
    assert report["k"] == 1000 // (per_sample * report["batch_size"])
    np.testing.assert_allclose(got.values["train_loss"], want.values["train_loss"], rtol=1e-6)
    wide = json.loads(want.attrs["engine"])
    assert wide["batch_size"] == 16 and wide["k"] == 64  # the default 2 GiB fits both


def test_resume_under_another_engine_is_allowed(tmp_path: Path, tiny_npz: Path) -> None:
    """Engine, layout and compile change rounding only: a run may resume with other settings."""
    first = compute(tmp_path, tiny_npz, "mixed", "--engine", "reference")
    again = compute(
        tmp_path, tiny_npz, "mixed", "--engine", "batched", "--memory-format", "contiguous"
    )
    assert first == again and read_surface(again).done.all()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--dtype", "float16"], "float16 needs a GPU"),
        (["--memory-budget", "lots"], "memory budget must look like"),
    ],
)
def test_bad_engine_options(tmp_path: Path, tiny_npz: Path, args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(
        main,
        ["compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "num_classes=3",
         "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--device", "cpu", "--out", str(tmp_path / "s.h5"), *args],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.count("Error:") == 1 and fragment in result.stderr


def test_bfloat16_on_cpu_is_close(tmp_path: Path, tiny_npz: Path) -> None:
    full = read_surface(compute(tmp_path, tiny_npz, "f32")).values["train_loss"]
    half = read_surface(compute(tmp_path, tiny_npz, "bf16", "--dtype", "bfloat16")).values[
        "train_loss"
    ]
    np.testing.assert_allclose(half, full, rtol=5e-2)


needs_cuda = pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="no CUDA device"
)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("engine", ["reference", "batched"])
def test_cuda_engines_match_cpu_reference(tmp_path: Path, tiny_npz: Path, engine: str) -> None:
    cpu = compute(tmp_path, tiny_npz, "cpu", "--engine", "reference")
    gpu_args = ["--engine", engine, "--device", "cuda", "--out", str(tmp_path / f"gpu-{engine}.h5")]
    gpu = compute(tmp_path, tiny_npz, f"gpu-{engine}", *gpu_args)
    np.testing.assert_allclose(
        read_surface(gpu).values["train_loss"], read_surface(cpu).values["train_loss"], rtol=1e-4
    )


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cuda_reduced_precision_is_close(tmp_path: Path, tiny_npz: Path, dtype: str) -> None:
    full = compute(
        tmp_path, tiny_npz, "gf32", "--device", "cuda", "--out", str(tmp_path / "gf32.h5")
    )
    half = compute(
        tmp_path,
        tiny_npz,
        dtype,
        "--device",
        "cuda",
        "--dtype",
        dtype,
        "--out",
        str(tmp_path / f"{dtype}.h5"),
    )
    np.testing.assert_allclose(
        read_surface(half).values["train_loss"], read_surface(full).values["train_loss"], rtol=5e-2
    )


def test_auto_on_a_cpu_conv_net_times_layouts_and_races_batch_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    npz = tmp_path / "img.npz"
    np.savez(
        npz, x=rng.normal(size=(300, 1, 28, 28)).astype(np.float32), y=rng.integers(0, 10, 300)
    )
    base = ["compute", "--model", "lenet", "--data", f"npz:{npz}", "--x=-1:1:3", "--y=-1:1:3",
            "--device", "cpu", "--quiet"]  # fmt: skip
    auto, ref = tmp_path / "auto.h5", tmp_path / "ref.h5"
    for out, extra in (
        (auto, []),
        (ref, ["--engine", "reference", "--memory-format", "contiguous"]),
    ):
        result = CliRunner().invoke(main, [*base, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
    report = json.loads(read_surface(auto).attrs["engine"])
    timed = set(report["timings"])
    assert not any(t.startswith("batched") for t in timed)  # never timed on a CPU conv net
    assert timed == {"reference@128", "reference+channels-last@128"}  # layouts at one size
    # the better layout's batch sizes raced on the run's first points (which the file keeps
    # like any other), walked out from 128; the fastest point's arm ran the rest
    race = report["race"]
    raced = race["point_seconds"]
    assert race["chosen"] == min(report["timings"], key=report["timings"].get) in raced
    assert (
        len(raced) >= 2
        and 2 <= race["points"] <= 8
        and race["points"] == sum(len(ts) for ts in raced.values())
    )
    assert race["kept"] == min(raced, key=lambda label: min(raced[label]))
    assert race["kept"].endswith(f"@{report['batch_size']}")
    assert report["channels_last"] == ("channels-last" in race["kept"])
    np.testing.assert_allclose(
        read_surface(auto).values["train_loss"], read_surface(ref).values["train_loss"], rtol=1e-6
    )


def test_the_choice_and_its_first_points_run_under_the_runs_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto times candidates and evaluates the run's first points inside the run's numerics
    (--threads here; TF32 on a GPU), not under the process's defaults."""
    import torch

    from landscape.engine import select

    seen: list[int] = []
    timed, raced = select._seconds_per_point, select._race

    def timing(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return timed(*args, **kwargs)

    def race(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return raced(*args, **kwargs)

    monkeypatch.setattr(select, "_seconds_per_point", timing)
    monkeypatch.setattr(select, "_race", race)
    rng = np.random.default_rng(0)
    npz = tmp_path / "img.npz"
    np.savez(
        npz, x=rng.normal(size=(150, 1, 28, 28)).astype(np.float32), y=rng.integers(0, 10, 150)
    )
    threads = 2 if torch.get_num_threads() == 1 else 1  # other than the default
    before = torch.get_num_threads()
    result = CliRunner().invoke(main, [
        "compute", "--model", "lenet", "--data", f"npz:{npz}", "--x=-1:1:3", "--y=-1:1:3",
        "--device", "cpu", "--quiet", "--out", str(tmp_path / "t.h5"), "--threads", str(threads),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {threads}
    assert torch.get_num_threads() == before  # restored afterwards
