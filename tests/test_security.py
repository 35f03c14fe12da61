"""Files we are handed run no code; results survive --overwrite, full disks and second runs.

Each test reproduces one item of the security issue as an attacker or an unlucky user would:
a crafted surface file, a CIFAR batch that pickles a call, a SIGKILL mid-run, two runs on one
file, a full or read-only file system, a FIFO and a device node as --out, a killed parent of
--workers, and input that used to give silently wrong numbers.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from landscape.cli import main
from landscape.store import read_surface

MLP = ["--model", "mlp", "--model-arg", "in_features=6", "--model-arg", "hidden=8",
       "--model-arg", "num_classes=3"]  # fmt: skip
LANDSCAPE = [sys.executable, "-m", "landscape"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def one_error_line(code: int, stderr: str) -> str:
    """The run failed with exactly one ``Error: ...`` line and no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1, stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def surface(tmp_path: Path, npz: Path, ckpt: Path, name: str = "s.h5", *extra: str) -> Path:
    out = tmp_path / name
    code, _, err = run(
        "compute", *MLP, "--checkpoint", str(ckpt), "--data", f"npz:{npz}",
        "--x=-1:1:3", "--y=-1:1:3", "--engine", "reference", "--out", str(out), "--quiet", *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


def two_run_sweep(tmp_path: Path, npz: Path) -> Path:
    """A sweep file of two tiny runs (seeds 0 and 1) over ``npz``."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "model": {"name": "mlp", "args": {"in_features": 6, "hidden": 8, "num_classes": 3}},
        "data": {"name": f"npz:{npz}"}, "grid": {"x": "-1:1:3"},
        "out": str(tmp_path / "run.h5"), "sweep": {"direction.seed": [0, 1]},
    }))  # fmt: skip
    return sweep


def set_stored_config(path: Path, change) -> None:
    with h5py.File(path, "r+") as f:
        cfg = yaml.safe_load(f.attrs["config"])
        change(cfg)
        f.attrs["config"] = yaml.safe_dump(cfg, sort_keys=False)


class Evil:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# --- 1. a surface file's stored config runs no code ---------------------------------------------


def test_curvature_refuses_a_stored_model_that_runs_code(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    marker = tmp_path / "pwned"

    def evil(cfg):
        cfg["model"] = {"name": "os:system", "args": {"command": f"touch {marker}"}}

    set_stored_config(path, evil)
    line = one_error_line(*run("curvature", str(path), "--x=-1:1:2", "--y=-1:1:2")[::2])
    assert "'os:system', which imports and runs Python code" in line
    assert "--model os:system" in line and "--trust-config" in line
    assert not marker.exists()
    for command in (["info", str(path)], ["plot", str(path), "--out", str(tmp_path / "p")],
                    ["export", str(path), "--out", str(tmp_path / "s.html")]):  # fmt: skip
        code, _, err = run(*command)
        assert code == 0, err
    assert not marker.exists()
    assert not (tmp_path / "s_curvature.h5").exists()


def test_a_factory_named_by_the_file_runs_only_when_given_again(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    marker = tmp_path / "factory-ran"
    factory = tmp_path / "net.py"
    factory.write_text(
        "from pathlib import Path\n"
        "from landscape.models import build_model\n"
        f"def make(**kw):\n    Path({str(marker)!r}).touch()\n    return build_model('mlp', kw)\n"
    )
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    set_stored_config(path, lambda cfg: cfg["model"].update(name=f"{factory}:make"))
    args = ["curvature", str(path), "--x=-1:1:2", "--y=-1:1:2", "--samples", "20", "--quiet"]
    line = one_error_line(*run(*args)[::2])
    assert f"--model {factory}:make" in line and not marker.exists()
    code, _, err = run(*args, "--model", f"{factory}:make")
    assert code == 0, err
    assert marker.exists()  # the user said so: the factory ran, and the map was computed
    marker.unlink()
    code, _, err = run(*args, "--trust-config", "--out", str(tmp_path / "c2.h5"))
    assert code == 0, err
    assert marker.exists()


def test_a_stored_unsafe_pickle_is_not_honoured(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    marker = tmp_path / "unpickled"
    bomb = tmp_path / "bomb.pt"
    torch.save(Evil(f"touch {marker}"), bomb)

    def evil(cfg):
        cfg["model"].update(checkpoint=str(bomb), unsafe_pickle=True)

    set_stored_config(path, evil)
    line = one_error_line(*run("curvature", str(path), "--x=-1:1:2", "--y=-1:1:2")[::2])
    assert "pickled Python objects" in line and "--unsafe-pickle" in line
    assert not marker.exists()


# --- 2. data folders are read as data ---------------------------------------------------------


def write_cifar(folder: Path, poison: str | None = None) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, size=4).tolist(),
            "batch_label": "training batch",
        }
        if poison and name == "data_batch_2":
            batch["filenames"] = Evil(poison)
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def test_a_cifar_batch_that_pickles_a_call_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = write_cifar(tmp_path / "cifar", poison=f"touch {marker}")
    for command in (
        ["compute", "--model", "resnet20", "--data", f"cifar10:{data}", "--x=-1:1:2",
         "--out", str(tmp_path / "s.h5")],
        ["inspect", "--model", "resnet20", "--data", f"cifar10:{data}"],
    ):  # fmt: skip
        line = one_error_line(*run(*command)[::2])
        assert "data_batch_2" in line and "system, which is code, not data" in line
    assert not marker.exists()
    assert not (tmp_path / "s.h5").exists()


def test_plain_cifar_batches_still_read(tmp_path: Path) -> None:
    from landscape.config import DataSpec
    from landscape.data import load_data

    data = load_data(DataSpec(f"cifar10:{write_cifar(tmp_path / 'cifar')}"))
    assert len(data) == 20 and data.describe()["sample_shape"] == [3, 32, 32]


def exported_mlp(path: Path) -> Path:
    """The built-in mlp for tiny_npz as a ``torch.export`` program of any batch size."""
    from landscape.models import build_model

    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3}).eval()
    batch = ({0: torch.export.Dim("batch")},)  # any batch size
    torch.export.save(torch.export.export(model, (torch.zeros(2, 6),), dynamic_shapes=batch), path)
    return path


def rewritten_program(clean: Path, path: Path, edit, extra: dict[str, bytes] = {}) -> Path:  # noqa: B006
    """``clean`` with each entry's bytes passed through ``edit(name, data)`` and ``extra``
    entries (names under the archive's folder) added."""
    import zipfile

    with zipfile.ZipFile(clean) as z:
        items = [(info, z.read(info.filename)) for info in z.infolist()]
    root = items[0][0].filename.split("/", 1)[0]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in items:
            z.writestr(info, edit(info.filename, data))
        for name, data in extra.items():
            z.writestr(f"{root}/{name}", data)
    return path


def poisoned_program(path: Path, command: str) -> Path:
    """A ``torch.export`` program whose first weight is a pickle that runs ``command``."""
    import io
    import zipfile

    clean = exported_mlp(path.with_name("clean.pt2"))
    with zipfile.ZipFile(clean) as z:
        config_name = next(n for n in z.namelist() if n.endswith("weights_config.json"))
        config = json.loads(z.read(config_name))
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True  # torch.export.load then unpickles it with weights_only=False
    weight = "/data/weights/" + first["path_name"]
    bomb = io.BytesIO()
    torch.save(Evil(command), bomb)

    def edit(name: str, data: bytes) -> bytes:
        if name == config_name:
            return json.dumps(config).encode()
        return bomb.getvalue() if name.endswith(weight) else data

    return rewritten_program(clean, path, edit)


def opaque_constant_program(path: Path, command: str) -> Path:
    """A program with an opaque constant: torch reads it with plain ``pickle.loads``."""
    entry = {
        "path_name": "opaque_obj_0",
        "is_param": False,
        "use_pickle": True,
        "tensor_meta": None,
    }
    config = json.dumps({"config": {"evil": entry}}).encode()

    def edit(name: str, data: bytes) -> bytes:
        return config if name.endswith("constants_config.json") else data

    pickled = {"data/constants/opaque_obj_0": pickle.dumps(Evil(command))}
    return rewritten_program(exported_mlp(path.with_name("clean.pt2")), path, edit, pickled)


def code_expression_program(path: Path, command: str) -> Path:
    """A program whose batch size expression is Python: torch evaluates it with sympy.sympify."""
    code = f"__import__('os').system('{command}') or Symbol("

    def edit(name: str, data: bytes) -> bytes:
        if not name.endswith("models/model.json"):
            return data
        return data.decode().replace('"expr_str": "Symbol(', f'"expr_str": "{code}', 1).encode()

    return rewritten_program(exported_mlp(path.with_name("clean.pt2")), path, edit)


def test_an_exported_program_that_pickles_a_call_is_refused(tmp_path: Path, tiny_npz: Path) -> None:
    marker = tmp_path / "pwned"
    program = poisoned_program(tmp_path / "evil.pt2", f"touch {marker}")
    for model in (["--model", str(program)], [*MLP, "--checkpoint", str(program)]):
        line = one_error_line(*run("compute", *model, "--data", f"npz:{tiny_npz}", "--x=-1:1:3",
                                   "--out", str(tmp_path / "s.h5"))[::2])  # fmt: skip
        assert "pickled parts hold Python objects" in line and "--unsafe-pickle" in line
    assert not marker.exists()
    code, _, err = run("compute", "--model", str(tmp_path / "clean.pt2"), "--data",
                       f"npz:{tiny_npz}", "--x=-1:1:3", "--out", str(tmp_path / "s.h5"))  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize("craft", [opaque_constant_program, code_expression_program])
def test_every_way_in_refuses_a_program_that_runs_code_as_it_loads(
    tmp_path: Path, tiny_npz: Path, craft
) -> None:
    marker = tmp_path / "pwned"
    program = str(craft(tmp_path / "evil.pt2", f"touch {marker}"))
    clean = str(tmp_path / "clean.pt2")
    data = ["--data", f"npz:{tiny_npz}", "--out", str(tmp_path / "s.h5"), "--quiet"]
    stored = tmp_path / "stored.h5"
    code, _, err = run("compute", "--model", clean, "--data", f"npz:{tiny_npz}", "--x=-1:1:3",
                       "--y=-1:1:3", "--bn", "eval", "--out", str(stored), "--quiet")  # fmt: skip
    assert code == 0, err
    set_stored_config(stored, lambda cfg: cfg["model"].update(name=program))
    for command in (
        ["compute", "--model", program, "--x=-1:1:3", *data],
        ["compute", *MLP, "--checkpoint", program, "--x=-1:1:3", *data],
        ["compute", *MLP, "--direction", "trajectory", "--trajectory", program, clean, clean,
         "--x=-1:1:3", *data],
        ["compute", *MLP, "--checkpoint", clean, "--direction", "interpolate", "--target",
         program, "--x=0:1:3", *data],
        ["inspect", "--model", program, "--data", f"npz:{tiny_npz}"],
        ["curvature", str(stored), "--x=-1:1:2", "--y=-1:1:2", "--quiet"],
    ):  # fmt: skip
        line = one_error_line(*run(*command)[::2])
        assert "evil.pt2' is a torch.export program that" in line, (command, line)
        assert "loading it would run code" in line and "--unsafe-pickle" in line
        assert not marker.exists(), command
    assert not (tmp_path / "s.h5").exists()


def test_programs_torch_exports_pass_the_check_and_code_does_not(tmp_path: Path) -> None:
    from landscape._safe_program import UnsafeProgram, check_program, safe_expression

    class Shapes(torch.nn.Module):  # shape arithmetic: sums, floor division, modulo, floats
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(6, 3)

        def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            y = torch.cat([x, z]).reshape(-1, 2, 3).flatten(1)
            return self.fc(y)[: x.shape[0] // 2 + 1] * (x.shape[0] % 3 + 1.5)

    dims = ({0: torch.export.Dim("b", min=2)}, {0: torch.export.Dim("c")})
    program = torch.export.export(Shapes(), (torch.zeros(4, 6), torch.zeros(5, 6)),
                                  dynamic_shapes=dims)  # fmt: skip
    torch.export.save(program, tmp_path / "shapes.pt2")
    check_program(str(tmp_path / "shapes.pt2"))  # no error: torch's own expressions are arithmetic
    for code in (
        "__import__('os').system('true')",
        "Max('__import__(\"os\")', 1)",  # Max sympifies a string: eval
        "Symbol('s0').__class__",
        "eval(chr(49))",
        "Integer(s0, **{'a': 1})",
        "[x for x in ()]",
    ):
        assert not safe_expression(code), code
    aot = rewritten_program(tmp_path / "shapes.pt2", tmp_path / "aot.pt2", lambda n, d: d,
                            {"data/aotinductor/model/model.so": b"\x7fELF"})  # fmt: skip
    with pytest.raises(UnsafeProgram, match="native code"):
        check_program(str(aot))
    code = b'{"graph": {"expr_str": "__import__(\'os\').getpid()"}}'  # torch reads any models/*
    hidden = rewritten_program(tmp_path / "shapes.pt2", tmp_path / "hidden.pt2", lambda n, d: d,
                               {"models/notes.txt": code})  # fmt: skip
    with pytest.raises(UnsafeProgram, match="shape expression that is Python code"):
        check_program(str(hidden))


# --- 3, 4. --overwrite replaces only complete files; one run per file ----------------------------


def slow_compute(model: Path, npz: Path, out: Path, *extra: str) -> list[str]:
    return [*LANDSCAPE, "compute", "--model", f"{model}:make", "--data", f"npz:{npz}",
            "--batch-size", "20", "--engine", "reference", "--x=-1:1:10", "--y=-1:1:10",
            "--out", str(out), "--quiet", *extra]  # fmt: skip


def wait_for(check, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def points_done(path: Path) -> int:
    return int(read_surface(path).done.sum()) if path.exists() else 0


@pytest.mark.slow
def test_a_killed_overwrite_run_keeps_the_old_file_and_resumes(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    out = tmp_path / "s.h5"
    subprocess.run(slow_compute(slow_model, tiny_npz, out, "--seed", "0"), check=True)
    old = out.read_bytes()
    partial = tmp_path / ".s.h5.partial"
    command = slow_compute(slow_model, tiny_npz, out, "--seed", "1", "--overwrite")
    proc = subprocess.Popen(command)
    wait_for(lambda: points_done(partial) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == old  # the complete old surface is untouched
    assert 3 <= points_done(partial) < 100
    done = subprocess.run(command, capture_output=True, text=True)  # the same command again
    assert done.returncode == 0, done.stderr
    s = read_surface(out)
    assert s.attrs["seed"] == 1 and s.done.all() and "train_loss" in s.stored_analysis
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".s.h5")) == []


@pytest.mark.slow
def test_a_second_run_on_a_live_output_is_refused(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    out = tmp_path / "s.h5"
    big = ("--x=-1:1:20", "--y=-1:1:20")  # long enough to outlive two refused runs
    first = subprocess.Popen(slow_compute(slow_model, tiny_npz, out, *big))
    try:
        wait_for(lambda: out.exists() and (tmp_path / ".s.h5.lock").exists())
        for extra in ([], ["--overwrite"]):
            second = subprocess.run(
                slow_compute(slow_model, tiny_npz, out, *big, *extra),
                capture_output=True,
                text=True,
            )
            line = one_error_line(second.returncode, second.stderr)
            assert f"is being written by another run (pid {first.pid} on " in line
            assert "--overwrite" not in line
        first.send_signal(signal.SIGKILL)  # the holder dies: its lock goes with it
        first.wait()
        third = subprocess.run(slow_compute(slow_model, tiny_npz, out, *big), capture_output=True)
        assert third.returncode == 0, third.stderr
        assert read_surface(out).done.all()
        assert not (tmp_path / ".s.h5.lock").exists()
    finally:
        first.kill()


def test_lock_is_exclusive_within_a_process_and_released(tmp_path: Path) -> None:
    from landscape._files import OutputBusy, OutputLock

    target = tmp_path / "s.h5"
    with OutputLock(target) as lock:
        assert f"pid {os.getpid()} on " in lock.path.read_text()
        with pytest.raises(OutputBusy, match=rf"pid {os.getpid()} on "):
            OutputLock(target).acquire()
    assert not lock.path.exists()
    OutputLock(target).acquire().release()


# --- 5. a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(where: Path, size: str, options: str = "") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only); skips the test where none can be."""
    where.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    opts = f"size={size}" + (f",{options}" if options else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)


def test_a_full_disk_is_one_error_and_leaves_nothing(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    with small_filesystem(tmp_path / "full", "64k") as disk:
        command = [*LANDSCAPE, "compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt),
                   "--data", f"npz:{tiny_npz}", "--x=-1:1:5", "--y=-1:1:5",
                   "--out", str(disk / "s.h5")]  # fmt: skip
        fill(disk)
        (disk / "filler").unlink()
        (disk / "big").write_bytes(b"\0" * 40_000)  # leave room for less than the file
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        line = one_error_line(done.returncode, done.stderr)
        assert "No space left on device" in line and "nothing was written" in line
        assert sorted(p.name for p in disk.iterdir()) == ["big"]


def test_injected_enospc_is_one_error(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no tmpfs can be mounted: the same failure, injected into the file's writes."""
    from landscape import _files

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files.os, "write", no_space)
    code, _, err = run("compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt),
                       "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--out", str(tmp_path / "s.h5"))  # fmt: skip
    assert "No space left on device" in one_error_line(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz", "tiny_mlp.pt"]


@pytest.mark.slow
def test_resuming_on_a_full_disk_finishes_the_run(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    with small_filesystem(tmp_path / "disk", "2m") as disk:
        out = disk / "s.h5"
        command = slow_compute(slow_model, tiny_npz, out)
        proc = subprocess.Popen(command)
        wait_for(lambda: points_done(out) >= 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fill(disk)  # the kill left the lock file: the next run takes it over
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        s = read_surface(out)
        assert s.done.all() and "train_loss" in s.stored_analysis  # finished with no byte to spare
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "s.h5"]


# --- 6. outputs that cannot be written ------------------------------------------------------------


def chattr(flag: str, path: Path) -> None:
    if shutil.which("chattr") is None or os.geteuid() != 0:
        pytest.skip("chattr needs root")
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr is not supported here: {done.stderr.decode().strip()}")


def test_unwritable_outputs_are_one_error(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    before = path.read_bytes()
    locked = tmp_path / "locked"
    locked.mkdir()
    chattr("+i", locked)
    try:
        compute = ["compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data",
                   f"npz:{tiny_npz}", "--x=-1:1:3"]  # fmt: skip
        line = one_error_line(*run(*compute, "--out", str(locked / "s.h5"))[::2])
        assert "cannot write into folder" in line and "immutable" in line
        line = one_error_line(*run("plot", str(path), "--out", str(locked / "plots"))[::2])
        assert "cannot create folder" in line
        line = one_error_line(*run("export", str(path), "--out", str(locked / "s.vtp"))[::2])
        assert "cannot write into folder" in line
        chattr("+i", path)
        try:
            line = one_error_line(*run(*compute, "--y=-1:1:3", "--seed", "5", "--overwrite",
                                       "--out", str(path))[::2])  # fmt: skip
            assert "cannot be written" in line
        finally:
            chattr("-i", path)
        assert path.read_bytes() == before
    finally:
        chattr("-i", locked)
    line = one_error_line(*run(*compute, "--out", "")[::2])
    assert "--out is empty" in line


def test_a_read_only_file_system_is_one_error(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    with small_filesystem(tmp_path / "ro", "1m", "ro") as ro:
        line = one_error_line(*run("compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt),
                                   "--data", f"npz:{tiny_npz}", "--x=-1:1:3",
                                   "--out", str(ro / "s.h5"))[::2])  # fmt: skip
        assert "read-only file system" in line
        line = one_error_line(*run("plot", str(path), "--out", str(ro))[::2])
        assert "read-only file system" in line
        line = one_error_line(*run("export", str(path), "--out", str(ro / "s.html"))[::2])
        assert "read-only file system" in line


def test_fifo_and_device_outputs_are_refused(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    compute = [*LANDSCAPE, "compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt),
               "--data", f"npz:{tiny_npz}", "--x=-1:1:3"]  # fmt: skip
    for command in ([*compute, "--out", str(fifo)], [*LANDSCAPE, "info", str(fifo)],
                    [*LANDSCAPE, "plot", str(fifo)]):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)  # no hang
        assert "a FIFO (named pipe), not a file" in one_error_line(done.returncode, done.stderr)
    done = subprocess.run([*compute, "--out", "/dev/null", "--overwrite"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert "is a character device" in one_error_line(done.returncode, done.stderr)
    assert Path("/dev/null").is_char_device()


# --- 7. --workers die with their parent ---------------------------------------------------------


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_when_their_parent_is_killed(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    out = tmp_path / "s.h5"
    command = slow_compute(slow_model, tiny_npz, out, "--x=-1:1:20", "--y=-1:1:20")
    proc = subprocess.Popen([*command, "--workers", "3"])
    try:
        wait_for(lambda: points_done(out) >= 2 and len(children(proc.pid)) >= 2, timeout=120)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not any(alive(p) for p in workers), timeout=30)
    finally:
        proc.kill()
        for pid in children(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# --- 8. input that gave silently wrong numbers ----------------------------------------------------


def test_integer_or_bool_checkpoint_tensors_are_refused(tmp_path: Path, tiny_npz: Path) -> None:
    from landscape.models import build_model

    model = build_model("mlp", {"in_features": 6, "hidden": 8, "num_classes": 3})
    state = {k: (v > 0) for k, v in model.state_dict().items()}
    ckpt = tmp_path / "bool.pt"
    torch.save(state, ckpt)
    line = one_error_line(*run("compute", *MLP, "--checkpoint", str(ckpt), "--data",
                               f"npz:{tiny_npz}", "--x=-1:1:3",
                               "--out", str(tmp_path / "s.h5"))[::2])  # fmt: skip
    assert "tensor layers.0.weight (8, 6) is bool, but the model's is float32" in line


def test_complex_checkpoint_tensors_are_refused_not_cast_to_real(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    from safetensors.torch import save_file

    state = torch.load(tiny_mlp_ckpt, weights_only=True)["state_dict"]
    ckpt = tmp_path / "complex.safetensors"
    save_file({k: v * (1 + 1j) for k, v in state.items()}, str(ckpt))
    data = ["--data", f"npz:{tiny_npz}", "--out", str(tmp_path / "s.h5")]
    for where in (["--checkpoint", str(ckpt), "--x=-1:1:3"],
                  ["--checkpoint", str(tiny_mlp_ckpt), "--direction", "interpolate",
                   "--target", str(ckpt), "--x=0:1:3"]):  # fmt: skip
        line = one_error_line(*run("compute", *MLP, *where, *data)[::2])
        assert (
            "checkpoint tensor layers.0.bias (8) is complex64, but the model's is float32" in line
        )
        assert "would drop its imaginary part" in line
    assert not (tmp_path / "s.h5").exists()


def test_grid_mistakes_are_refused(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path) -> None:
    base = ["compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
            "--out", str(tmp_path / "s.h5")]  # fmt: skip
    line = one_error_line(*run(*base, "--y=-1:1:3")[::2])
    assert "--y) is given without grid.x (--x)" in line
    code, _, err = run(*base, "--x=-1e308:1e308:3")
    assert code == 2 and "wider than float64 can hold" in err and "Traceback" not in err
    line = one_error_line(*run(*base, "--x=-1:1:3000000", "--y=-1:1:3000000")[::2])
    assert "has 9,000,000,000,000 points" in line and "of memory, more than the" in line
    assert not (tmp_path / "s.h5").exists()


def test_labels_out_of_range_name_both_ranges(tmp_path: Path, tiny_mlp_ckpt: Path) -> None:
    rng = np.random.default_rng(0)
    npz = tmp_path / "twelve.npz"
    np.savez(npz, x=rng.normal(size=(30, 6)).astype(np.float32), y=np.arange(30) % 13)
    line = one_error_line(*run("compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt),
                               "--data", f"npz:{npz}", "--x=-1:1:3",
                               "--out", str(tmp_path / "s.h5"))[::2])  # fmt: skip
    assert "has class labels 0..12, but the model has 3 outputs" in line
    assert "--model-arg num_classes=13" in line and "--loss" not in line


def test_nan_in_the_data_is_named(tmp_path: Path, tiny_mlp_ckpt: Path) -> None:
    x = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    x[7, 2] = np.nan
    npz = tmp_path / "nan.npz"
    np.savez(npz, x=x, y=np.arange(30) % 3)
    line = one_error_line(*run("compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt),
                               "--data", f"npz:{npz}", "--x=-1:1:3",
                               "--out", str(tmp_path / "s.h5"))[::2])  # fmt: skip
    assert "holds NaN or infinite inputs in 1 of 30 samples (the first is sample 7" in line


def test_a_random_initialization_is_said(tmp_path: Path, tiny_npz: Path) -> None:
    out = tmp_path / "s.h5"
    code, _, err = run("compute", *MLP, "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--seed",
                       "4", "--out", str(out), "--quiet")  # fmt: skip
    assert code == 0
    assert err.strip() == (
        "warning: no --checkpoint: evaluating a random initialization of 'mlp' (seed 4), "
        "not a trained network"
    )
    code, text, _ = run("info", str(out))
    assert "model:       mlp, random initialization (seed 4), no checkpoint" in text


# --- 9. damaged values are an error, not a number -------------------------------------------------


def test_a_damaged_value_block_is_an_error(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    with h5py.File(path, "r") as f:
        ds = f["train_loss"]
        assert ds.fletcher32 and ds.chunks is not None
        chunk = ds.id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[chunk.byte_offset + 3] ^= 0x40  # one flipped bit inside the first value
    path.write_bytes(bytes(raw))
    for command in (["info", str(path)], ["plot", str(path)], ["curvature", str(path)]):
        line = one_error_line(*run(*command)[::2])
        assert "is damaged: a block of train_loss fails its checksum" in line


def test_files_without_checksums_still_read(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    expected = read_surface(path).values["train_loss"]
    with h5py.File(path, "r+") as f:  # as files of earlier versions: contiguous, no filter
        for name in ("train_loss", "train_acc", "done", "xcoordinates", "ycoordinates"):
            data = f[name][()]
            del f[name]
            f.create_dataset(name, data=data)
    np.testing.assert_array_equal(read_surface(path).values["train_loss"], expected)


# --- 10. the HTML view escapes what it embeds -----------------------------------------------------


def test_html_export_escapes_markup_in_names(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    name = "x<!--<script>&_loss"
    with h5py.File(path, "r+") as f:
        f[name] = f["train_loss"][()]
    from landscape.plot.export import html_text

    page = html_text(read_surface(path), name)
    start = page.index('id="surface-data">') + len('id="surface-data">')
    payload = page[start : page.index("</script>", start)]
    assert "<" not in payload and ">" not in payload and "&" not in payload
    assert json.loads(payload)["label"].startswith(name)
    assert page.count("<!--") == 0


# --- 11. resume by content, not by the checkpoint's spelling --------------------------------------


def test_resume_accepts_the_same_checkpoint_by_another_path(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["compute", *MLP, "--data", f"npz:{tiny_npz}", "--x=-1:1:3", "--out", "s.h5"]
    code, _, err = run(*base, "--checkpoint", tiny_mlp_ckpt.name, "--quiet")
    assert code == 0, err
    code, out, err = run(*base, "--checkpoint", str(tiny_mlp_ckpt.resolve()))
    assert code == 0, err
    assert out.startswith("s.h5 is complete: all 3 points")  # found before loading anything
    other = tmp_path / "other.pt"
    state = torch.load(tiny_mlp_ckpt, weights_only=True)
    state["state_dict"]["layers.0.bias"] += 1
    torch.save(state, other)
    line = one_error_line(*run(*base, "--checkpoint", str(other))[::2])
    assert "was made from other weights" in line


def test_sweep_reads_a_crafted_file_as_data(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt, "run0.h5")
    marker = tmp_path / "pwned"

    def evil(cfg):
        cfg["model"] = {"name": "os:system", "args": {"command": f"touch {marker}"}}
        cfg["data"]["name"] = f"{tmp_path / 'evil.py'}:load"

    set_stored_config(path, evil)
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    os.mkfifo(tmp_path / "run1.h5")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "name": "mlp",
                    "checkpoint": str(tiny_mlp_ckpt),
                    "args": {"in_features": 6, "hidden": 8, "num_classes": 3},
                },
                "data": {"name": f"npz:{tiny_npz}"},
                "grid": {"x": "-1:1:3", "y": "-1:1:3"},
                "out": str(tmp_path / "run{direction.seed}.h5"),
                "sweep": {"direction.seed": [0, 1]},
            }
        )
    )
    code, text, err = run("sweep", str(sweep), "--dry-run")
    assert code == 0, err
    assert text.count("conflict") == 2 and not marker.exists()
    line = one_error_line(*run("sweep", str(sweep))[::2])
    assert "would replace a file of another config" in line and not marker.exists()


# --- 12. files that are not ours are neither written through nor replaced -------------------------


def device_node(path: Path) -> Path | None:
    """A character device like /dev/null at ``path``, or None where none can be made."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        return None
    return path


def inspect_args(npz: Path, ckpt: Path) -> list[str]:
    return ["inspect", *MLP, "--checkpoint", str(ckpt), "--data", f"npz:{npz}", "--no-fail"]


def test_links_planted_as_lock_or_temporary_files_are_not_followed(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / ".s.h5.lock").symlink_to(victim)
    compute = ["compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
               "--x=-1:1:3", "--engine", "reference", "--quiet"]  # fmt: skip
    line = one_error_line(*run(*compute, "--out", str(tmp_path / "s.h5"))[::2])
    assert ".s.h5.lock" in line and "a symbolic link" in line and "remove it" in line
    assert victim.read_text() == "precious\n" and not (tmp_path / "s.h5").exists()
    # export and inspect --json named their temporaries .NAME.tmp-PID: a name one can plant
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt, "t.h5")
    for name in ("t.html", "r.json"):
        (tmp_path / f".{name}.tmp-{os.getpid()}").symlink_to(victim)
    code, _, err = run("export", str(path), "--out", str(tmp_path / "t.html"))
    assert code == 0, err
    code, _, err = run(*inspect_args(tiny_npz, tiny_mlp_ckpt), "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert "findings" in json.loads((tmp_path / "r.json").read_text())
    for name in ("t.html", "r.json"):  # regular files, with a new file's usual permissions
        mode = os.lstat(tmp_path / name).st_mode
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o666 & ~current_umask()
    # --overwrite resumes .NAME.partial: a link there would be written through, then renamed
    (tmp_path / ".t.h5.partial").symlink_to(victim)
    line = one_error_line(*run(*compute, "--out", str(path), "--seed", "3", "--overwrite")[::2])
    assert ".t.h5.partial' is a symbolic link, not a partial file landscape made" in line
    assert victim.read_text() == "precious\n" and read_surface(path).attrs["seed"] == 0


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_outputs_that_are_not_regular_files_are_refused(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    targets = [fifo, *filter(None, [device_node(tmp_path / "null")])]
    sweep = two_run_sweep(tmp_path, tiny_npz)
    for target in targets:
        kind = "a FIFO (named pipe)" if target == fifo else "a character device"
        line = one_error_line(*run(*inspect_args(tiny_npz, tiny_mlp_ckpt),
                                   "--json", str(target))[::2])  # fmt: skip
        assert f"--json {str(target)!r} is {kind}, not a file" in line
        done = subprocess.run([*LANDSCAPE, "sweep", str(sweep), "--slurm", str(target)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert f"--slurm {str(target)!r} is {kind}" in one_error_line(done.returncode, done.stderr)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # neither replaced nor written
    assert all(stat.S_ISCHR(os.lstat(t).st_mode) for t in targets[1:])
    assert not (tmp_path / "sweep_configs").exists()


def test_a_surface_named_as_another_commands_output_is_not_replaced(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    surface = tmp_path / "s.h5"
    code, _, err = run("compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data",
                       f"npz:{tiny_npz}", "--x=-1:1:3", "--out", str(surface), "--quiet")  # fmt: skip
    assert code == 0, err
    other = tmp_path / "other.h5"  # a second surface, named by mistake as an output
    shutil.copy(surface, other)
    before = other.read_bytes()
    sweep = two_run_sweep(tmp_path, tiny_npz)
    for command in (
        ["export", str(surface), "--out", str(other), "--format", "csv"],
        [*inspect_args(tiny_npz, tiny_mlp_ckpt), "--json", str(other)],
        ["sweep", str(sweep), "--slurm", str(other)],
    ):
        line = one_error_line(*run(*command)[::2])
        assert "other.h5' is an HDF5 file (a surface or curvature file?)" in line, line
        assert other.read_bytes() == before, command
    assert not (tmp_path / "sweep_configs").exists()


def test_plot_files_are_not_written_through_links_or_fifos(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    plots = tmp_path / "plots"
    code, _, err = run("plot", str(path), "--out", str(plots), "--kind", "contour")
    assert code == 0, err
    first = sorted(plots.iterdir())[0]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    first.unlink()
    first.symlink_to(victim)
    line = one_error_line(*run("plot", str(path), "--out", str(plots), "--kind", "contour")[::2])
    assert f"{str(first)!r} is a symbolic link" in line
    assert victim.read_text() == "precious\n" and first.is_symlink()
    first.unlink()
    os.mkfifo(first)
    done = subprocess.run([*LANDSCAPE, "plot", str(path), "--out", str(plots), "--kind",
                           "contour"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "is a FIFO (named pipe)" in one_error_line(done.returncode, done.stderr)
    assert stat.S_ISFIFO(os.lstat(first).st_mode)


def test_the_lock_is_on_the_file_whatever_its_name(tmp_path: Path) -> None:
    from landscape._files import OutputBusy, OutputLock

    target = tmp_path / "s.h5"
    target.write_bytes(b"a result")
    (tmp_path / "other").mkdir()
    hard, soft = tmp_path / "other" / "hard.h5", tmp_path / "soft.h5"
    os.link(target, hard)
    soft.symlink_to(target)
    with OutputLock(target):
        with pytest.raises(OutputBusy, match=rf"pid {os.getpid()} on "):
            OutputLock(soft).acquire()  # the link's file: the same lock file
        with pytest.raises(OutputBusy, match="reached it by another name"):
            OutputLock(hard).acquire()
    for name in (soft, hard, target):  # free again once released, and nothing left behind
        OutputLock(name).acquire().release()
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


def test_an_output_that_is_a_symbolic_link_is_refused_not_followed(
    tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path
) -> None:
    """A link planted where an output goes leads to a file that is not ours: every command that
    writes a named output refuses it and leaves the link's file as it was; a linked folder is
    followed."""
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    victim = tmp_path / "victim.txt"
    victim.write_text("not landscape's")
    before = {p: p.read_bytes() for p in (path, victim)}
    for name, target in (("latest.h5", path.name), ("planted.h5", victim.name),
                         ("planted.csv", victim.name), ("dangling.h5", "nowhere.h5")):  # fmt: skip
        (tmp_path / name).symlink_to(target)
    computes = (("latest.h5", "--overwrite"), ("planted.h5", "--overwrite"), ("dangling.h5",))
    runs = [
        ["compute", *MLP, "--checkpoint", str(tiny_mlp_ckpt), "--data", f"npz:{tiny_npz}",
         "--x=-1:1:3", "--y=-1:1:3", "--out", str(tmp_path / name), *extra]
        for name, *extra in computes
    ]  # fmt: skip
    runs.append(["export", str(path), "--out", str(tmp_path / "planted.csv")])
    for command in runs:
        code, _, err = run(*command)
        assert "is a symbolic link" in one_error_line(code, err)
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "nowhere.h5").exists()
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to("real")
    surface(tmp_path / "linked", tiny_npz, tiny_mlp_ckpt)
    assert (tmp_path / "real" / "s.h5").is_file()


@pytest.mark.slow
def test_a_second_overwrite_through_a_link_is_refused(
    tmp_path: Path, tiny_npz: Path, slow_model: Path
) -> None:
    out = tmp_path / "s.h5"
    subprocess.run(slow_compute(slow_model, tiny_npz, out, "--x=-1:1:3", "--y=-1:1:3"), check=True)
    hard, soft = tmp_path / "hard.h5", tmp_path / "soft.h5"
    os.link(out, hard)
    soft.symlink_to(out)
    big = ("--x=-1:1:20", "--y=-1:1:20", "--overwrite")  # long enough to outlive two refusals
    first = subprocess.Popen(slow_compute(slow_model, tiny_npz, out, *big, "--seed", "1"))
    try:
        wait_for(lambda: points_done(tmp_path / ".s.h5.partial") >= 1)
        for other, said in ((soft, "is a symbolic link"), (hard, "by another name")):
            second = subprocess.run(slow_compute(slow_model, tiny_npz, other, *big, "--seed", "2"),
                                    capture_output=True, text=True)  # fmt: skip
            assert said in one_error_line(second.returncode, second.stderr)
        assert soft.is_symlink() and hard.samefile(out)  # neither name was replaced
    finally:
        first.kill()
        first.wait()


# --- 13. what a flag may make the tool allocate is bounded -----------------------------------------


def limited(command: list[str]) -> subprocess.CompletedProcess:
    """``command`` in a process allowed 3 GB of address space and two minutes."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    return subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=limit)


def test_plot_levels_and_dpi_are_bounded(tmp_path: Path, tiny_npz: Path, tiny_mlp_ckpt: Path):
    path = surface(tmp_path, tiny_npz, tiny_mlp_ckpt)
    plots = tmp_path / "plots"
    for flag, said in (("--levels", "levels must be between 2 and 1,000, got 10,000,000"),
                       ("--dpi", "dpi must be between 30 and 1,200, got 10,000,000")):  # fmt: skip
        done = limited([*LANDSCAPE, "plot", str(path), "--out", str(plots), flag, "10000000"])
        assert said in one_error_line(done.returncode, done.stderr)
    code, _, err = run("plot", str(path), "--out", str(plots), "--dpi", "10")  # the lower bound
    assert "dpi must be between 30 and 1,200, got 10" in one_error_line(code, err)
    assert not any(plots.iterdir())  # refused before the first figure


def test_files_a_writer_names_itself_land_only_on_free_or_regular_names(tmp_path: Path) -> None:
    from landscape._files import staged_into
    from landscape.errors import ConfigError

    os.mkfifo(tmp_path / "events.out")  # the name a writer (TensorBoard, save_pretrained) picks
    with pytest.raises(ConfigError, match="is a FIFO"), staged_into(tmp_path) as private:
        (private / "config.json").write_text("{}")
        (private / "events.out").write_bytes(b"histograms")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "events.out").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.out"]  # nothing moved, no stage
    with staged_into(tmp_path) as private:
        (private / "config.json").write_text("{}")
    assert (tmp_path / "config.json").read_text() == "{}"
