"""Sharded runs: local workers and MPI ranks write the file a serial run writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from landscape.cli import main
from landscape.store import read_surface

MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None, reason="mpiexec not found (pip install mpi4py mpich)"
)

SLOW_MODEL = """
import os, time, torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.fc2 = torch.nn.Linear(8, 3)
    def forward(self, x):
        time.sleep(float(os.environ.get("LANDSCAPE_TEST_SLEEP", "0")))
        worker = __import__("multiprocessing").current_process().name != "MainProcess"
        if worker and os.environ.get("LANDSCAPE_TEST_DIE"):
            os._exit(3)  # a worker process dies without a word
        if worker and os.environ.get("LANDSCAPE_TEST_RAISE"):
            raise RuntimeError("boom in a worker")
        return self.fc2(torch.relu(self.fc1(x)))
def make():
    return Net()
"""


def args(tmp_path: Path, npz: Path, out: str, *extra: str) -> list[str]:
    model = tmp_path / "net.py"
    model.write_text(SLOW_MODEL)
    return ["compute", "--model", f"{model}:make", "--data", f"npz:{npz}", "--batch-size", "16",
            "--x=-1:1:7", "--y=-1:1:5", "--engine", "reference", "--device", "cpu",
            "--out", str(tmp_path / out), "--quiet", *extra]  # fmt: skip


def serial(tmp_path: Path, npz: Path) -> np.ndarray:
    result = CliRunner().invoke(main, args(tmp_path, npz, "serial.h5"))
    assert result.exit_code == 0, result.output
    return read_surface(tmp_path / "serial.h5").values["train_loss"]


def test_local_workers_write_the_serial_file(tmp_path: Path, tiny_npz: Path) -> None:
    result = CliRunner().invoke(main, args(tmp_path, tiny_npz, "w.h5", "--workers", "3"))
    assert result.exit_code == 0, result.output
    s = read_surface(tmp_path / "w.h5")
    assert s.done.all()
    np.testing.assert_array_equal(s.values["train_loss"], serial(tmp_path, tiny_npz))
    assert '"processes": 3' in s.attrs["engine"]


def test_a_dying_worker_ends_the_run_clearly_and_rerun_resumes(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANDSCAPE_TEST_DIE", "1")
    result = CliRunner().invoke(main, args(tmp_path, tiny_npz, "d.h5", "--workers", "2"))
    assert result.exit_code == 1
    assert "worker 1 died" in result.stderr and "rerun the same command" in result.stderr
    done_before = int(read_surface(tmp_path / "d.h5").done.sum())
    assert 0 < done_before < 35  # rank 0's own share was written, the dead worker's was not
    monkeypatch.delenv("LANDSCAPE_TEST_DIE")
    result = CliRunner().invoke(main, args(tmp_path, tiny_npz, "d.h5", "--workers", "2"))
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(
        read_surface(tmp_path / "d.h5").values["train_loss"], serial(tmp_path, tiny_npz)
    )


def test_a_failing_worker_names_its_error(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANDSCAPE_TEST_RAISE", "1")
    result = CliRunner().invoke(main, args(tmp_path, tiny_npz, "e.h5", "--workers", "2"))
    assert result.exit_code == 1
    assert "rank 1 failed" in result.stderr and "boom in a worker" in result.stderr
    assert "Traceback" not in result.stderr


def test_more_workers_than_the_cores_can_take_are_refused_before_any_spawns(
    tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on a machine of one core 5 workers are beyond the bound (--workers 100000 spawned until the
    # machine ran out of processes); the stand-in core count keeps the test from spawning
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    result = CliRunner().invoke(main, args(tmp_path, tiny_npz, "w.h5", "--workers", "5"))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert (
        result.stderr.startswith("Error: --workers 5 is more than") and "at most 4" in result.stderr
    )
    assert not (tmp_path / "w.h5").exists()


def test_serial_runs_never_import_mpi4py(tmp_path: Path, tiny_npz: Path) -> None:
    code = (
        "import sys; from landscape.cli import main; "
        f"main({args(tmp_path, tiny_npz, 'n.h5')!r}, standalone_mode=False); "
        "print('mpi4py' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def kill_job(proc: subprocess.Popen, out: Path) -> None:
    """Kill mpiexec and every process of its job, as a cluster's job killer does.

    Hydra starts its proxies in sessions of their own, so a process-group kill misses the ranks;
    they are found by the output file on their command line instead.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if str(out).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
    proc.wait(timeout=30)


def finish(proc: subprocess.Popen, out: Path, timeout: float = 120) -> tuple[int, str]:
    """Wait for an mpiexec run; whatever happens, leave no rank behind."""
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err.decode()
    finally:
        kill_job(proc, out)


def mpi_run(
    tmp_path: Path, npz: Path, n: int, out: str, env: dict | None = None
) -> subprocess.Popen:
    command = [
        MPIEXEC,
        "-n",
        str(n),
        sys.executable,
        "-m",
        "landscape.cli",
        *args(tmp_path, npz, out),
    ]
    # a session of its own, so a kill reaches mpiexec and every rank, as a cluster's job killer does
    return subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,  # mpiexec forwards stdin to rank 0: give it none
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.mark.mpi
@needs_mpi
def test_mpiexec_writes_the_serial_file(tmp_path: Path, tiny_npz: Path) -> None:
    code, err = finish(mpi_run(tmp_path, tiny_npz, 2, "m.h5"), tmp_path / "m.h5")
    assert code == 0, err
    s = read_surface(tmp_path / "m.h5")
    assert s.done.all() and '"processes": 2' in s.attrs["engine"]
    np.testing.assert_array_equal(s.values["train_loss"], serial(tmp_path, tiny_npz))


@pytest.mark.mpi
@needs_mpi
def test_killed_mpi_run_resumes_under_another_process_count(tmp_path: Path, tiny_npz: Path) -> None:
    proc = mpi_run(tmp_path, tiny_npz, 2, "k.h5", {"LANDSCAPE_TEST_SLEEP": "0.05"})
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once some points are on disk
        time.sleep(0.5)
        if (tmp_path / "k.h5").exists() and read_surface(tmp_path / "k.h5").done.sum() > 0:
            break
    kill_job(proc, tmp_path / "k.h5")  # mpiexec and every rank at once
    time.sleep(1)
    partial = read_surface(tmp_path / "k.h5")
    assert 0 < partial.done.sum() < partial.done.size
    code, err = finish(
        mpi_run(tmp_path, tiny_npz, 3, "k.h5"), tmp_path / "k.h5"
    )  # resume with three
    assert code == 0, err
    np.testing.assert_array_equal(
        read_surface(tmp_path / "k.h5").values["train_loss"], serial(tmp_path, tiny_npz)
    )
