"""The command line end to end, on tiny models written to real temporary files."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import click
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.cli import FileList, main
from landscape.store import read_surface

TINY = [
    "--model",
    "mlp",
    "--model-arg",
    "in_features=6",
    "--model-arg",
    "hidden=8",
    "--model-arg",
    "num_classes=3",
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in stderr


def tiny_args(tiny_npz: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        "--checkpoint",
        str(ckpt),
        "--data",
        f"npz:{tiny_npz}",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_compute_imports_neither_scipy_nor_matplotlib(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """Start-up is part of every run: a 2-D compute, its analysis at close included, loads
    neither the plotting stack nor scipy (0.3 s of imports beside torch's)."""
    argv = ["compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, tmp_path / "s.h5", "--x=-1:1:5",
                                  "--y=-1:1:5")]  # fmt: skip
    code = (
        "import sys; from landscape.cli import main; "
        f"main({argv!r}, standalone_mode=False); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'matplotlib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout
    stored = read_surface(tmp_path / "s.h5").stored_analysis["train_loss"]
    assert stored["basin"]["area"] > 0  # the analysis that needs the connected region ran


def test_a_command_skips_the_last_collection_at_exit(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """A command owns its process: the collector runs rarely, and the interpreter's last cyclic
    collection at exit (0.35-0.4 s with torch loaded) is skipped by freezing what is alive from
    atexit; the file the command wrote is whole all the same. A second command in the same process
    (as tests run them) registers nothing more. glibc's allocator is tuned by then too, before the
    run starts (a run itself tunes nothing). LANDSCAPE_NO_GC_TUNING / LANDSCAPE_NO_MALLOPT: not."""
    from landscape._collector import THRESHOLDS

    out = tmp_path / "s.h5"
    argv = ["compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:3", "--y=-1:1:3",
                                  "--overwrite")]  # fmt: skip
    code = (
        "import atexit, gc, sys\n"
        "freezes, freeze = [], gc.freeze\n"
        "gc.freeze = lambda: freezes.append(freeze())  # counted, then done\n"
        # registered first, so it runs last: after the command's own exit handlers
        "atexit.register(lambda: print(len(freezes), gc.get_freeze_count() > 0, gc.get_threshold()))\n"
        "from landscape.cli import main\n"
        "import landscape.runs.surface, landscape._malloc as m\n"
        "run = sys.modules['landscape.runs.surface'].run_compute\n"
        "def entered(*a, **k):\n"
        "    print('allocator tuned', m._done)\n"
        "    return run(*a, **k)\n"
        "sys.modules['landscape.runs.surface'].run_compute = entered\n"
        f"main({argv!r}, standalone_mode=False)\n"
        f"main({argv!r}, standalone_mode=False)\n"
        "print('frozen while running', gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    assert lines[-2:] == ["frozen while running False", f"1 True {THRESHOLDS}"], done.stdout
    glibc = platform.libc_ver()[0] == "glibc"
    tuned = [line for line in lines if line.startswith("allocator tuned")]
    assert tuned == [f"allocator tuned {glibc}"] * 2, done.stdout  # at both runs' first line
    # LANDSCAPE_NO_GC_TUNING=1: the interpreter's own thresholds, no freeze at exit; and no mallopt
    env = {**os.environ, "LANDSCAPE_NO_GC_TUNING": "1", "LANDSCAPE_NO_MALLOPT": "1"}
    code = f"import gc; print('before', gc.get_threshold())\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == f"0 False {lines[0].removeprefix('before ')}", done.stdout
    assert [line for line in lines if line.startswith("allocator")] == ["allocator tuned False"] * 2
    assert read_surface(out).values["train_loss"].shape == (3, 3)  # written whole and closed


def test_compute_2d_info_and_plot(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    out = tmp_path / "s.h5"
    code, _, err = run(
        "compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:5", "--y=-1:1:4")
    )
    assert code == 0, err
    s = read_surface(out)
    assert s.shape == (5, 4) and s.done.all() and np.isfinite(s.values["train_loss"]).all()
    assert 0 <= s.values["train_acc"].min() <= s.values["train_acc"].max() <= 1
    code, text, _ = run("info", str(out))
    assert code == 0 and "2-D 5 x 4" in text and "20 of 20 points" in text and "filter-norm" in text
    code, text, _ = run("plot", str(out), "--out", str(tmp_path / "plots"), "--format", "svg")
    assert code == 0 and len(list((tmp_path / "plots").glob("*.svg"))) >= 8


def test_compute_1d_and_plot(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    out = tmp_path / "c.h5"
    assert run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-2:2:9"))[0] == 0
    s = read_surface(out)
    assert s.dims == 1 and s.shape == (9,)
    assert s.values["train_loss"][4] == pytest.approx(
        s.values["train_loss"].min()
    )  # trained centre
    code, text, _ = run("plot", str(out), "--out", str(tmp_path / "p"), "--linear")
    assert code == 0 and any("1d_linear.png" in line for line in text.splitlines())


def test_centre_value_is_the_model_loss(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """At (0, 0) the surface holds the checkpoint's own loss, computed here by hand."""
    from landscape.models import build_model

    out = tmp_path / "s.h5"
    run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:3", "--y=-1:1:3"))
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    model.load_state_dict(torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"])
    data = np.load(tiny_npz)
    with torch.no_grad():
        logits = model(torch.from_numpy(data["x"]))
    y = torch.from_numpy(data["y"])
    loss = torch.nn.functional.cross_entropy(logits.double(), y).item()
    acc = (logits.argmax(1) == y).double().mean().item()
    s = read_surface(out)
    assert s.values["train_loss"][1, 1] == pytest.approx(loss, rel=1e-6)
    assert s.values["train_acc"][1, 1] == pytest.approx(acc)


def test_yaml_config_and_flags_win(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model: {{name: mlp, checkpoint: {tiny_mlp_ckpt}, args: {{in_features: 6, hidden: 8, num_classes: 3}}}}\n"
        f"data: {{name: 'npz:{tiny_npz}', batch_size: 7}}\n"
        "direction: {name: filter-norm, seed: 3}\n"
        "grid: {x: '-1:1:3', y: '-1:1:3'}\n"
        f"out: {tmp_path / 'from_yaml.h5'}\n"
    )
    out = tmp_path / "flag.h5"
    code, _, err = run(
        "compute", "--config", str(cfg), "--seed", "5", "--x=-1:1:5", "--out", str(out), "-q"
    )
    assert code == 0, err
    s = read_surface(out)
    assert s.attrs["seed"] == 5 and s.shape == (5, 3)
    assert not (tmp_path / "from_yaml.h5").exists()
    code, _, err = run("compute", "--config", str(cfg), "--model-arg", "hidden=9", "-q")
    assert_one_line_error(code, err, 1, "checkpoint does not fit the model")


def test_directions_file_reuse_gives_identical_values(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    run(
        "compute",
        *tiny_args(tiny_npz, tiny_mlp_ckpt, first, "--x=-1:1:3", "--y=-1:1:3", "--seed", "11"),
    )
    code, _, err = run(
        "compute",
        *tiny_args(
            tiny_npz, tiny_mlp_ckpt, second, "--x=-1:1:3", "--y=-1:1:3", "--directions", str(first)
        ),
    )
    assert code == 0, err
    np.testing.assert_array_equal(
        read_surface(first).values["train_loss"], read_surface(second).values["train_loss"]
    )


def test_resume_computes_only_missing_points(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    full, part = tmp_path / "full.h5", tmp_path / "part.h5"
    args = ("--x=-1:1:4", "--y=-1:1:3")
    run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, full, *args))
    run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, part, *args))
    with h5py.File(part, "r+") as f:  # forget some points, as a killed run would
        done = f["done"][()]
        done[1:, 1] = False
        f["done"][...] = done
        f["train_loss"][2, 1] = np.nan
    loud = [a for a in tiny_args(tiny_npz, tiny_mlp_ckpt, part, *args) if a != "--quiet"]
    result = CliRunner().invoke(main, ["compute", *loud])
    assert (
        result.exit_code == 0 and "resumed" in result.stdout and "3 of 12 points" in result.stdout
    )
    np.testing.assert_array_equal(
        read_surface(full).values["train_loss"], read_surface(part).values["train_loss"]
    )


def test_nan_loss_is_stored_and_reported(tmp_path: Path, tiny_npz: Path) -> None:
    """log(w) turns NaN where w + a·d < 0: the run goes on and says how many points."""
    model_file = tmp_path / "logmodel.py"
    model_file.write_text(
        "import torch\n"
        "class LogNet(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.ones(3, 6))\n"
        "    def forward(self, x):\n"
        "        return x @ torch.log(self.w).T\n"
        "def make():\n"
        "    return LogNet()\n"
    )
    out = tmp_path / "nan.h5"
    result = CliRunner().invoke(
        main,
        [
            "compute",
            "--model",
            f"{model_file}:make",
            "--data",
            f"npz:{tiny_npz}",
            "--x=-3:3:7",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    loss = read_surface(out).values["train_loss"]
    assert math.isfinite(loss[3]) and np.isnan(loss).any()
    assert f"{int(np.isnan(loss).sum())} points have a NaN or infinite loss" in result.stdout
    assert "non-finite" in run("info", str(out))[1]


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--checkpoint", "{tmp}/missing.pt"], 1, "does not exist"),
        (["--model", "nonesuch"], 1, "unknown model 'nonesuch'"),
        (["--data", "imagenet:/x"], 1, "data"),
        (["--x=-1:1"], 2, "MIN:MAX:NUM"),
        (["--x", "1:-1:5"], 2, "MIN:MAX:NUM"),
        (["--x", "0:0:0"], 2, "MIN:MAX:NUM"),
        (["--out", "{tmp}/no/such/dir/s.h5"], 1, "output folder"),
        (["--ignore", "everything"], 2, "everything"),
        (["--direction", "sideways"], 2, "sideways"),
        (["--device", "tpu"], 1, "device"),
        (["--seed", str(2**70)], 1, f"--seed) must be an integer {-(2**63)}..{2**64 - 1}, got"),
        (["--repeat", "3", "--seed", str(2**64 - 2)], 1, f"integer {-(2**63)}..{2**64 - 3}"),
        (["--data-seed", "-1", "--max-samples", "5"], 1, "--data-seed) must be an integer 0.."),
        (["--memory-budget", "-5GB"], 1, "2GB, 512MB or a positive number of bytes"),
        (["--memory-budget", "1e400"], 1, "2GB, 512MB or a positive number of bytes"),
        (["--threads", "1025"], 1, "--threads) must be 1..1024, got 1025"),
        (
            ["--bn", "recalibrate", "--bn-batches", str(2**70)],
            1,
            f"--bn-batches) must be 1..{2**63 - 1}",
        ),
    ],
)
def test_bad_input_one_line_error(tmp_path, tiny_npz, tiny_mlp_ckpt, args, code, fragment) -> None:
    base = tiny_args(tiny_npz, tiny_mlp_ckpt, tmp_path / "s.h5", "--x=-1:1:3")
    patched = [a.replace("{tmp}", str(tmp_path)) for a in args]
    c, _, err = run("compute", *base, *patched)
    assert_one_line_error(c, err, code, fragment)


def test_checkpoint_problems(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    state = torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"]
    bad = dict(state)
    first = next(iter(bad))
    bad[first] = bad[first].clone()
    bad[first][0, 0] = float("nan")
    nan_ckpt = tmp_path / "nan.pt"
    torch.save(bad, nan_ckpt)
    c, _, err = run("compute", *tiny_args(tiny_npz, nan_ckpt, tmp_path / "s.h5"))
    assert_one_line_error(c, err, 1, first)
    wrong = tmp_path / "wrong.pt"
    torch.save({k + "_renamed": v for k, v in state.items()}, wrong)
    c, _, err = run("compute", *tiny_args(tiny_npz, wrong, tmp_path / "s.h5"))
    assert_one_line_error(c, err, 1, "_renamed")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("hello")
    c, _, err = run("compute", *tiny_args(tiny_npz, garbage, tmp_path / "s.h5"))
    assert_one_line_error(c, err, 1, "garbage.pt")


def test_refused_run_keeps_the_existing_file(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "s.h5"
    run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:3"))
    before = out.read_bytes()
    c, _, err = run(
        "compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:3", "--seed", "9")
    )
    assert_one_line_error(c, err, 1, "different config")
    c, _, err = run(
        "compute", *tiny_args(tiny_npz, tmp_path / "missing.pt", out, "--x=-1:1:3", "--overwrite")
    )
    assert c == 1
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros((4, 5), np.float32), y=np.zeros(4, np.int64))
    c, _, err = run("compute", *tiny_args(other, tiny_mlp_ckpt, out, "--x=-1:1:3", "--overwrite"))
    assert_one_line_error(c, err, 1, "cannot run on data")
    assert out.read_bytes() == before
    assert (
        run(
            "compute",
            *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:3", "--seed", "9", "--overwrite"),
        )[0]
        == 0
    )
    assert read_surface(out).attrs["seed"] == 9


def test_plot_and_info_errors(tmp_path: Path) -> None:
    c, _, err = run("plot", str(tmp_path / "none.h5"))
    assert_one_line_error(c, err, 1, "does not exist")
    junk = tmp_path / "junk.h5"
    junk.write_text("x")
    c, _, err = run("info", str(junk))
    assert_one_line_error(c, err, 1, "not a readable HDF5 file")


def test_every_command_has_help_with_an_example() -> None:
    for command in main.commands:
        code, text, _ = run(command, "--help")
        assert code == 0 and "Example" in text, command
    assert "Example" in run("--help")[1]


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "landscape.cli",
            "compute",
            "--model",
            "mlp",
            "--data",
            "digits",
            "--checkpoint",
            str(tmp_path / "absent.pt"),
            "--out",
            str(tmp_path / "s.h5"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("Error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_threads_past_the_bound_are_one_error_not_a_crash(tmp_path: Path, tiny_npz: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "landscape", "compute", *TINY, "--data", f"npz:{tiny_npz}",
         "--threads", "100000", "--x=-1:1:3", "--out", str(tmp_path / "s.h5")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a crash of torch's thread pool was -11
    assert proc.stderr.strip() == "Error: eval.threads (--threads) must be 1..1024, got 100000"


def test_inspect_seed_past_torchs_range_is_one_error(tiny_npz: Path) -> None:
    c, _, err = run("inspect", *TINY, "--data", f"npz:{tiny_npz}", "--seed", str(2**70))
    assert_one_line_error(c, err, 1, "--seed must be an integer")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_floating_inputs_are_cast_to_the_models_dtype_once(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, dtype: torch.dtype
) -> None:
    arrays = np.load(tiny_npz)
    x, y = torch.from_numpy(arrays["x"]).to(dtype), torch.from_numpy(arrays["y"])
    torch.save({"x": x, "y": y}, tmp_path / "other.pt")  # float64 as numpy makes it, or bfloat16
    torch.save({"x": x.float(), "y": y}, tmp_path / "same.pt")  # the float32 the model takes
    surfaces = {}
    for name in ("other", "same"):
        out = tmp_path / f"{name}.h5"
        c, _, err = run("compute", *TINY, "--checkpoint", str(tiny_mlp_ckpt), "--data",
                        f"pt:{tmp_path / name}.pt", "--x=-1:1:3", "--y=-1:1:3", "--out", str(out),
                        "--quiet")  # fmt: skip
        assert c == 0, err
        surfaces[name] = read_surface(out).values["train_loss"]
        warned = [line for line in err.splitlines() if "inputs; cast" in line]
        assert warned == ([] if name == "same" else [
            f"warning: data 'pt:{tmp_path / name}.pt' has {str(dtype)[6:]} inputs; cast to the "
            "model's float32 (save them as float32 to skip the cast)"
        ])  # fmt: skip
    np.testing.assert_array_equal(surfaces["other"], surfaces["same"])


def test_the_api_casts_float64_arrays_too(tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    import landscape
    from landscape.errors import LandscapeWarning
    from landscape.models import build_model

    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    model.load_state_dict(torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"])
    arrays = np.load(tiny_npz)
    with pytest.warns(LandscapeWarning, match="has float64 inputs; cast to the model's float32"):
        cast = landscape.compute(model, (arrays["x"].astype(np.float64), arrays["y"]), x=(-1, 1, 3))
    same = landscape.compute(model, (arrays["x"], arrays["y"]), x=(-1, 1, 3))
    np.testing.assert_array_equal(cast.values["train_loss"], same.values["train_loss"])


def test_a_split_of_a_file_that_holds_one_set_is_said(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    out = tmp_path / "s.h5"
    c, _, err = run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, out, "--x=-1:1:3", "--split",
                                          "test"))  # fmt: skip
    assert c == 0, err
    assert (
        f"warning: data 'npz:{tiny_npz}' holds one set, not splits: --split test evaluates " in err
    )
    assert "test_loss" in read_surface(out).values  # what the user asked to call it
    c, _, err = run("compute", *tiny_args(tiny_npz, tiny_mlp_ckpt, tmp_path / "t.h5", "--x=-1:1:3"))
    assert c == 0 and "holds one set" not in err  # train, the default, is no choice to question


def test_plot_reads_li_reference_surface(tmp_path: Path, li_fixture: Path) -> None:
    code, text, err = run(
        "plot", str(li_fixture / "surface_2d_11x11.h5"), "--out", str(tmp_path), "--kind", "contour"
    )
    assert code == 0, err
    assert len(text.splitlines()) == 2  # linear and log
    code, text, _ = run("info", str(li_fixture / "surface_2d_11x11.h5"))
    assert code == 0 and "Li et al." in text and "transposed" in text and "11 x 11" in text


def test_list_options_take_several_files_after_one_flag(tmp_path: Path) -> None:
    """``--trajectory runs/*.pt`` as a shell expands it: A B C after one flag, then more flags."""
    files = [str(tmp_path / f"e{k}.pt") for k in range(3)]
    seen = {}

    @click.command()
    @click.option("--trajectory", cls=FileList)
    @click.option("--target", "targets", cls=FileList)
    @click.option("--x")
    @click.pass_context
    def probe(ctx: click.Context, **_: object) -> None:
        seen.update(ctx.params)

    result = CliRunner().invoke(
        probe, ["--trajectory", *files, "--x=-1:1:3", "--target", "B", "C", "--target", "D"]
    )
    assert result.exit_code == 0, result.output
    assert seen["trajectory"] == tuple(files) and seen["targets"] == ("B", "C", "D")
    assert seen["x"] == "-1:1:3"


def test_compute_trajectory_of_files_after_one_flag(tmp_path: Path, tiny_npz: Path) -> None:
    from landscape.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    files = []
    for k in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        files.append(str(tmp_path / f"epoch{k}.pt"))
        torch.save(model.state_dict(), files[-1])
    out = tmp_path / "t.h5"
    result = CliRunner().invoke(main, [
        "compute", "--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
        "--model-arg", "num_classes=3", "--data", f"npz:{tiny_npz}", "--direction", "trajectory",
        "--trajectory", *files, "--x=-1:1:3", "--y=-1:1:3", "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(read_surface(out).trajectory["labels"]) == [Path(f).name for f in files]


def test_python_dash_m_landscape_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "landscape", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("landscape, version ")
